/**
 * The runtime: load a compiled module with weights on a tfjs backend and run it.
 * `load()` reads from the file system (Node); `loadModule()` takes an already
 * imported module and weights in memory (any runtime with web APIs).
 */

import { loadModule, LoadError, type LoadOptions, type Model } from "./load.ts";
import { importCompiled, readBytes, readCompiledOnnx } from "./node_io.ts";
import { loadOnnx, type OnnxLoadOptions, type OnnxModel } from "./onnx_session.ts";

export { selectBackend, BackendError } from "./backend.ts";
export type { BackendChoice, BackendInfo, BackendName } from "./backend.ts";
export { isCompiledModule, LoadError, loadModule } from "./load.ts";
export type { CompiledModule, LoadOptions, Model, ModelInfo, WeightsSource } from "./load.ts";
export { predictedPeakBytes } from "../compiler/contract/plan.ts";
export { loadOnnx } from "./onnx_session.ts";
export type { OnnxLoadOptions, OnnxModel, OnnxModelInfo } from "./onnx_session.ts";
export { loadParallel } from "./parallel.ts";
export type { ParallelModel, ParallelOptions } from "./parallel.ts";
export { registerSimdMatmul } from "./kernels/simd_matmul.ts";
export type { Plan } from "../compiler/contract/plan.ts";
export * from "./weights/mod.ts";

export interface LoadFromDiskOptions extends Omit<LoadOptions, "weights"> {
  /** A .safetensors path, or `{ random: seed }`, or any in-memory weights source. */
  weights: string | LoadOptions["weights"];
}

/** `backend: "onnxruntime"`: run the directory's model.onnx on onnxruntime-node (runtime/onnx_session.ts). */
export interface OnnxLoadFromDiskOptions extends Omit<OnnxLoadOptions, "weights"> {
  backend: "onnxruntime";
  weights: string | LoadOptions["weights"];
}

/**
 * Loads a compiled directory (from `turbo-compile --out DIR`) with weights.
 * With `backend: "onnxruntime"` it loads the directory's model.onnx instead,
 * and the model's `run()` returns a promise.
 */
export async function load(compiledDir: string, options: OnnxLoadFromDiskOptions): Promise<OnnxModel>;
export async function load(compiledDir: string, options: LoadFromDiskOptions): Promise<Model>;
export async function load(compiledDir: string, options: LoadFromDiskOptions | OnnxLoadFromDiskOptions): Promise<Model | OnnxModel> {
  if (typeof options !== "object" || options === null) throw new LoadError("load(): options { weights, backend? } must be given");
  const weights = typeof options.weights === "string"
    ? { safetensors: await readBytes(options.weights), source: options.weights }
    : options.weights;
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
