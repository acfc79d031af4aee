/**
 * The runtime's Web-standard entry: nothing here, nor anything it imports,
 * touches `node:` modules, so it runs in browsers, in Deno and in Node alike.
 * A compiled model comes from a URL (`fetch` + `import()`), or from the bytes
 * of `model.mjs` and of the weights that the caller already holds (a browser
 * upload, a bundle). The Node entry (runtime/mod.ts) adds loading from a
 * directory, onnxruntime and worker-thread parallelism on top of this file.
 *
 * @module
 */

import { loadModule, LoadError, type LoadOptions, type Model } from "./load.ts";

export { selectBackend, BackendError } from "./backend.ts";
export type { BackendChoice, BackendInfo, BackendName } from "./backend.ts";
export { isCompiledModule, LoadError, loadModule } from "./load.ts";
export type { CompiledModule, LoadOptions, Model, ModelInfo, WeightsSource } from "./load.ts";
export { predictedPeakBytes } from "../compiler/contract/plan.ts";
export { registerSimdMatmul } from "./kernels/simd_matmul.ts";
export type { Plan } from "../compiler/contract/plan.ts";
export * from "./weights/mod.ts";

/** A compiled model held in memory: `model.mjs` (its text or bytes) and the weights. */
export interface CompiledBytes {
  /** The text of model.mjs (turbo-compile --out), or its UTF-8 bytes. */
  readonly module: string | Uint8Array;
  /** The weights: .safetensors bytes, or any in-memory weights source. */
  readonly weights: Uint8Array | LoadOptions["weights"];
  /** Named in errors ("<bytes>" if not given). */
  readonly source?: string;
}

export interface LoadFromUrlOptions extends Omit<LoadOptions, "weights"> {
  /** A .safetensors URL (relative ones resolve against the compiled folder's URL), or any in-memory weights source. */
  weights: URL | string | LoadOptions["weights"];
}

/** Whether `x` is `{ module, weights }` held in memory (not a URL). */
export function isCompiledBytes(x: unknown): x is CompiledBytes {
  return typeof x === "object" && x !== null && !(x instanceof URL) && "module" in x;
}

/**
 * Imports a compiled module from its source text. The text becomes a `data:`
 * URL, which Node, Deno and browsers all import (a page whose Content Security
 * Policy forbids `data:` scripts must serve model.mjs and use a URL instead).
 * model.mjs imports nothing, so no specifier inside it needs resolving.
 */
export async function importModuleText(text: string, source = "<bytes>"): Promise<unknown> {
  if (typeof text !== "string" || text.trim() === "") throw new LoadError(`${source}: the module text is empty`);
  try {
    return await import(`data:text/javascript;charset=utf-8,${encodeURIComponent(text)}`);
  } catch (e) {
    const what = e instanceof Error ? `${e.name}: ${e.message.split("\n")[0]}` : String(e);
    throw new LoadError(`${source} cannot be imported as a module (${what}); give the text of model.mjs from turbo-compile`, { cause: e });
  }
}

async function fetchBytes(url: URL, what: string): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new LoadError(`Cannot fetch ${what} "${url.href}": ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  if (!response.ok) throw new LoadError(`Cannot fetch ${what} "${url.href}": HTTP ${response.status} ${response.statusText}`.trimEnd());
  return new Uint8Array(await response.arrayBuffer());
}

function toUrl(source: URL | string, base?: URL): URL {
  if (source instanceof URL) return source;
  const page = (globalThis as { location?: { href?: string } }).location?.href;
  try {
    return new URL(source, base ?? page);
  } catch {
    throw new LoadError(`"${source}" is not a URL${base === undefined && page === undefined ? " (a relative one needs a page to resolve against; give new URL(…, import.meta.url))" : ""}`);
  }
}

/** Loads a model held in memory (the browser form: no file system, no fetch). */
async function loadCompiledBytes(compiled: CompiledBytes, options: Omit<LoadOptions, "weights">): Promise<Model> {
  const source = compiled.source ?? "<bytes>";
  const text = compiled.module instanceof Uint8Array ? new TextDecoder().decode(compiled.module) : compiled.module;
  const module = await importModuleText(text, source);
  const weights = compiled.weights instanceof Uint8Array ? { safetensors: compiled.weights, source: `${source} weights` } : compiled.weights;
  return loadModule(module, { ...options, weights }, `The module ${source}`);
}

/**
 * Loads a compiled model from a URL: `source` is the compiled folder
 * (`…/compiled/`, its model.mjs is fetched and imported) or the module itself
 * (`…/model.mjs`); `options.weights` as a URL or string is fetched too.
 * In Deno, `file:` URLs work as well as `http(s):`.
 */
async function loadFromUrl(source: URL | string, options: LoadFromUrlOptions): Promise<Model> {
  if (typeof options !== "object" || options === null) throw new LoadError("load(): options { weights, backend? } must be given");
  const url = toUrl(source);
  const moduleUrl = /\.m?js$/.test(url.pathname) ? url : new URL("model.mjs", url.href.endsWith("/") ? url : new URL(`${url.href}/`));
  const text = new TextDecoder().decode(await fetchBytes(moduleUrl, "compiled module"));
  const given = options.weights;
  const weightsUrl = given instanceof URL || typeof given === "string" ? toUrl(given, moduleUrl) : undefined;
  const weights = weightsUrl === undefined ? given as LoadOptions["weights"] : { safetensors: await fetchBytes(weightsUrl, "weights"), source: weightsUrl.href };
  const module = await importModuleText(text, moduleUrl.href);
  return loadModule(module, { ...options, weights }, `The module ${moduleUrl.href}`);
}

/**
 * `load()` for web hosts: a URL (or URL string) of a compiled folder or module,
 * or the module and weights in memory (`{ module, weights }`).
 */
export function load(source: URL | string, options: LoadFromUrlOptions): Promise<Model>;
export function load(source: CompiledBytes, options?: Omit<LoadOptions, "weights">): Promise<Model>;
export function load(source: URL | string | CompiledBytes, options?: LoadFromUrlOptions | Omit<LoadOptions, "weights">): Promise<Model> {
  if (isCompiledBytes(source)) return loadCompiledBytes(source, options ?? {});
  return loadFromUrl(source, options as LoadFromUrlOptions);
}
