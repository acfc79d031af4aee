/**
 * The runtime for hosts with a file system (Node, Deno): load a compiled
 * folder with weights on a tfjs backend, or on onnxruntime, and run it.
 * Everything that needs no file system lives in runtime/web.ts (URLs, bytes in
 * memory, `loadModule()`), which browsers import directly; this file adds the
 * folder form of `load()`, onnxruntime and worker-thread parallelism. The only
 * `node:` imports are in node_io.ts and parallel.ts.
 */

import { fileURLToPath } from "node:url";
import { loadModule, LoadError, type LoadOptions, type Model } from "./load.ts";
import { importCompiled, readBytes, readCompiledOnnx } from "./node_io.ts";
import { loadOnnx, type OnnxLoadOptions, type OnnxModel } from "./onnx_session.ts";
import { isCompiledBytes, load as loadWeb, type CompiledBytes } from "./web.ts";

// Everything the web entry exports, but its load(): the one below (declared here) shadows it.
export * from "./web.ts";
export { loadOnnx } from "./onnx_session.ts";
export type { OnnxLoadOptions, OnnxModel, OnnxModelInfo } from "./onnx_session.ts";
export { loadParallel } from "./parallel.ts";
export type { ParallelModel, ParallelOptions } from "./parallel.ts";

export interface LoadFromDiskOptions extends Omit<LoadOptions, "weights"> {
  /** A .safetensors path (or `file:` URL), or `{ random: seed }`, or any in-memory weights source. */
  weights: string | URL | LoadOptions["weights"];
}

/** `backend: "onnxruntime"`: run the directory's model.onnx on onnxruntime-node (runtime/onnx_session.ts). */
export interface OnnxLoadFromDiskOptions extends Omit<OnnxLoadOptions, "weights"> {
  backend: "onnxruntime";
  weights: string | URL | LoadOptions["weights"];
}

/**
 * Loads a compiled directory (from `turbo-compile --out DIR`) with weights.
 * With `backend: "onnxruntime"` it loads the directory's model.onnx instead,
 * and the model's `run()` returns a promise.
 *
 * The folder may be given as a path or a `file:` URL; an `http(s):` URL, or
 * the module and weights in memory (`{ module, weights }`), go to the web
 * loader (runtime/web.ts), which is what a browser calls.
 */
export async function load(compiledDir: string | URL, options: OnnxLoadFromDiskOptions): Promise<OnnxModel>;
export async function load(compiledDir: string | URL, options: LoadFromDiskOptions): Promise<Model>;
export async function load(compiled: CompiledBytes, options?: Omit<LoadOptions, "weights">): Promise<Model>;
export async function load(
  source: string | URL | CompiledBytes,
  options?: LoadFromDiskOptions | OnnxLoadFromDiskOptions | Omit<LoadOptions, "weights">,
): Promise<Model | OnnxModel> {
  const onnx = (options as { backend?: string } | undefined)?.backend === "onnxruntime";
  if (isCompiledBytes(source)) {
    if (onnx) throw new LoadError("load(): backend \"onnxruntime\" loads a compiled folder's model.onnx; { module, weights } in memory runs on tfjs backends only");
    return loadWeb(source, options as Omit<LoadOptions, "weights">);
  }
  if (source instanceof URL && source.protocol !== "file:") {
    if (onnx) throw new LoadError(`load(): backend "onnxruntime" needs a compiled folder on disk, not ${source.href}`);
    return loadWeb(source, options as LoadFromDiskOptions);
  }
  const compiledDir = source instanceof URL ? fileURLToPath(source) : source;
  if (typeof options !== "object" || options === null) throw new LoadError("load(): options { weights, backend? } must be given");
  const given = (options as LoadFromDiskOptions).weights;
  const weightsPath = given instanceof URL ? (given.protocol === "file:" ? fileURLToPath(given) : undefined) : typeof given === "string" ? given : undefined;
  if (given instanceof URL && weightsPath === undefined) throw new LoadError(`load(): weights ${given.href} is not a file; a compiled folder on disk takes weights from disk or in memory`);
  const weights = weightsPath !== undefined
    ? { safetensors: await readBytes(weightsPath), source: weightsPath }
    : given as LoadOptions["weights"];
  if (weights === undefined) throw new LoadError("load(): no weights given");
  if (options.backend === "onnxruntime") {
    const { bytes, path } = await readCompiledOnnx(compiledDir).catch((e: Error) => {
      throw new LoadError(e.message);
    });
    return loadOnnx(bytes, { ...(options as OnnxLoadFromDiskOptions), weights, source: path });
  }
  const module = await importCompiled(compiledDir);
  return loadModule(module, { ...(options as LoadFromDiskOptions), weights }, `Compiled folder "${compiledDir}"`);
}
