/**
 * The runtime's only Node-specific code: reading files and importing a
 * compiled module from a directory. Everything else in runtime/ uses web
 * APIs, so the same compiled graph can run under Deno.
 */

import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

export async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw new Error(`Cannot read "${path}": ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Imports `model.mjs` (or `model.js`, or `model.ts` when running under a TypeScript loader) from a compiled directory. */
export async function importCompiled(dir: string): Promise<unknown> {
  for (const file of ["model.mjs", "model.js", "model.ts"]) {
    const path = resolve(join(dir, file));
    const exists = await stat(path).then(() => true, () => false);
    if (exists) return import(pathToFileURL(path).href);
  }
  throw new Error(`"${dir}" holds no compiled model (model.mjs); compile one with turbo-compile --out ${dir}`);
}

/** Reads `model.onnx` (turbo-compile --emit onnx) from a compiled directory. */
export async function readCompiledOnnx(dir: string): Promise<{ bytes: Uint8Array; path: string }> {
  const path = join(dir, "model.onnx");
  const exists = await stat(path).then(() => true, () => false);
  if (!exists) throw new Error(`"${dir}" holds no model.onnx; compile it with turbo-compile --emit onnx --out ${dir}`);
  return { bytes: await readBytes(path), path };
}
