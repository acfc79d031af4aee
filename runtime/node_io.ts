/**
 * The runtime's only Node-specific code: reading files and importing a
 * compiled module from a directory. Everything else in runtime/ uses web
 * APIs, so the same compiled graph can run under Deno.
 */

import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { LoadError } from "./load.ts";

export async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why: Record<string, string> = { ENOENT: "no such file", EISDIR: "it is a folder, not a file", EACCES: "permission denied" };
    throw new LoadError(`Cannot read "${path}": ${(code !== undefined ? (why[code] === undefined ? code : `${why[code]} (${code})`) : undefined) ?? (e as Error).message}`);
  }
}

/** Imports `model.mjs` (or `model.js`, or `model.ts` when running under a TypeScript loader) from a compiled directory. */
export async function importCompiled(dir: string): Promise<unknown> {
  if (typeof dir !== "string" || dir === "") throw new LoadError(`load(): the compiled folder must be a path, not ${JSON.stringify(dir) ?? String(dir)}`);
  const kind = await stat(dir).catch(() => undefined);
  if (kind === undefined) throw new LoadError(`Compiled folder "${dir}" does not exist; compile one with turbo-compile --out ${dir}`);
  if (!kind.isDirectory()) throw new LoadError(`Compiled folder "${dir}" is a file; give the folder turbo-compile --out wrote`);
  for (const file of ["model.mjs", "model.js", "model.ts"]) {
    const path = resolve(join(dir, file));
    const exists = await stat(path).then((s) => s.isFile(), () => false);
    if (!exists) continue;
    try {
      return await import(pathToFileURL(path).href);
    } catch (e) {
      const what = e instanceof Error ? `${e.name}: ${e.message.split("\n")[0]}` : String(e);
      throw new LoadError(`"${join(dir, file)}" cannot be imported (${what}); is it truncated or edited? Compile it again with turbo-compile`, { cause: e });
    }
  }
  throw new LoadError(`"${dir}" holds no compiled model (model.mjs); compile one with turbo-compile --out ${dir}`);
}

/** Reads `model.onnx` (turbo-compile --emit onnx) from a compiled directory. */
export async function readCompiledOnnx(dir: string): Promise<{ bytes: Uint8Array; path: string }> {
  const path = join(dir, "model.onnx");
  const exists = await stat(path).then(() => true, () => false);
  if (!exists) throw new Error(`"${dir}" holds no model.onnx; compile it with turbo-compile --emit onnx --out ${dir}`);
  return { bytes: await readBytes(path), path };
}
