/**
 * Importing a spec file: registers a TypeScript loader where none is active,
 * imports the file and picks its model export. Every failure is a located
 * `CompileError` naming the file. Runs inside the trace worker
 * (`trace_spec.ts`), so a spec whose top level never returns is stopped too.
 */

import { statSync } from "node:fs";
import { register } from "node:module";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { CompileError } from "./diagnostics.ts";
import { isModelSpec, type ModelSpec } from "./dsl/trace.ts";

let hooksRegistered = false;

/**
 * Lets Node import TypeScript specs. Running from source (tsx: development and
 * tests) a TypeScript loader is already active; the published JavaScript CLI
 * registers its own hooks (`ts_hooks.ts`) once, with source maps on so errors
 * point at the spec's lines.
 */
function registerTypeScriptHooks(): void {
  if (hooksRegistered || import.meta.url.endsWith(".ts")) return;
  hooksRegistered = true;
  process.setSourceMapsEnabled(true);
  register(new URL("./ts_hooks.js", import.meta.url));
}

/** Imports a spec file (TypeScript, through a TypeScript loader) and picks the model export. */
export async function loadSpec(path: string, exportName: string | undefined): Promise<ModelSpec> {
  const abs = resolve(path);
  const kind = statSync(abs, { throwIfNoEntry: false });
  if (kind === undefined) throw new CompileError(`Cannot read spec file "${path}"`);
  if (!kind.isFile()) throw new CompileError(`Spec file "${path}" is ${kind.isDirectory() ? "a directory" : "not a regular file"}; give a .ts spec or a .tir graph`);
  let mod: Record<string, unknown>;
  try {
    registerTypeScriptHooks();
    mod = (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof CompileError) throw e;
    const msg = (e as Error)?.message ?? String(e);
    if (/Cannot find module|ERR_MODULE_NOT_FOUND|ENOENT/.test(msg) && msg.includes(abs)) throw new CompileError(`Cannot read spec file "${path}"`);
    throw new CompileError(`Spec file "${path}" failed to load: ${msg.split("\n")[0]}`, { file: abs, line: 1, col: 1 });
  }
  const name = exportName ?? "default";
  const spec = mod[name];
  if (!isModelSpec(spec)) {
    const models = Object.entries(mod).filter(([, v]) => isModelSpec(v)).map(([k]) => k);
    throw new CompileError(
      `Spec file "${path}" has no model export "${name}"${models.length > 0 ? `; model exports: ${models.join(", ")}` : "; export a model(...) value"}`,
    );
  }
  return spec;
}
