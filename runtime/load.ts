/**
 * `load()` binds a compiled module to weights on a tfjs backend and returns a
 * model whose `run()` executes the static program. Every weight name, shape
 * and dtype, and every input, is checked against the plan first; a mismatch
 * is a `LoadError` naming the parameter or input and both shapes.
 */

import * as tf from "@tensorflow/tfjs-core";
import { selectBackend, type BackendChoice, type BackendInfo } from "./backend.ts";
import { dimValue, formatPlanShape, predictedPeakBytes, type Plan } from "../compiler/contract/plan.ts";
import { planProblem } from "./check_plan.ts";
import { registerSimdMatmul } from "./kernels/simd_matmul.ts";
import { gelu } from "./kernels/gelu.ts";
import { turboMerge } from "./kernels/turbo_merge.ts";
import { restore, windowMerge, type WindowMergeInputs, type WindowMergeOptions } from "./kernels/window_merge.ts";
import { fromHfVit, isHfVit, parseSafetensors, randomWeights, type WeightTensor } from "./weights/mod.ts";

/** What turbo-compile's module exports. */
export interface CompiledModule {
  readonly plan: Plan;
  readonly forward: (
    tfApi: typeof tf,
    w: Readonly<Record<string, tf.Tensor>>,
    inputs: Readonly<Record<string, tf.Tensor>>,
    kernels: Kernels,
  ) => Record<string, tf.Tensor>;
}

/** Generation mode's merge as a compiled program calls it: its tensors only. */
function windowMergeStep(inputs: WindowMergeInputs, options: WindowMergeOptions): { x: tf.Tensor3D; restoreRows: tf.Tensor1D } {
  const { x, restoreRows } = windowMerge(inputs, options);
  return { x, restoreRows };
}

/** Runtime kernels a compiled program may call besides tfjs ops. */
export const kernels = { turboMerge, windowMerge: windowMergeStep, restore, gelu } as const;
export type Kernels = typeof kernels;

/** A problem with what the caller gave load() or run(): the compiled folder, the weights, an input. */
export class LoadError extends Error {
  override name = "LoadError";
}

export type WeightsSource =
  | { readonly random: number }
  | { readonly safetensors: Uint8Array; readonly source?: string }
  | ReadonlyMap<string, WeightTensor | tf.Tensor>;

export interface LoadOptions {
  /**
   * Weights: a parsed map, safetensors bytes (turbograph or Hugging Face ViT names), or `{ random: seed }`.
   * tf.Tensors in a map are borrowed, not copied (a copy on wasm costs the model's size
   * in the 4 GiB heap again for every load): the model never disposes them, and run()
   * refuses to start when one has been disposed.
   */
  weights: WeightsSource;
  backend?: BackendChoice;
  /**
   * On wasm, replace the stock batched matmul (a scalar loop) with turbograph's
   * WebAssembly SIMD kernel (runtime/kernels/simd_matmul.ts). Default true.
   */
  simdMatmul?: boolean;
  /** Replacements for runtime kernels the program calls (e.g. an instrumented turboMerge). */
  kernels?: Partial<Kernels>;
  /**
   * Accept weights holding NaN or ±Infinity. By default such a weight is a
   * LoadError naming it: one of them turns every output into NaN.
   */
  allowNonFinite?: boolean;
}

export interface ModelInfo {
  readonly backend: BackendInfo;
  /** Kernels turbograph installed on the backend (e.g. "simd BatchMatMul"). */
  readonly kernels: readonly string[];
  readonly plan: Plan;
}

export interface Model {
  readonly info: ModelInfo;
  /** Runs the program; the caller owns (and disposes) the returned tensors. */
  run(inputs: Readonly<Record<string, tf.Tensor>>): Record<string, tf.Tensor>;
  /**
   * run() whose input checks read token ids with `await data()`: the form to
   * use on WebGPU, where synchronous reads of GPU tensors fail. The outputs
   * are the same tensors run() returns; read them with `await t.data()`.
   */
  runAsync(inputs: Readonly<Record<string, tf.Tensor>>): Promise<Record<string, tf.Tensor>>;
  /** Predicted peak activation bytes for a batch size, from the plan. */
  predictedPeakBytes(batch: number): number;
  /** Frees the weights it uploaded (borrowed tf.Tensor weights stay the caller's). */
  dispose(): void;
}

export function isCompiledModule(m: unknown): m is CompiledModule {
  const c = m as CompiledModule;
  return typeof m === "object" && m !== null && typeof c.forward === "function" && planProblem(c.plan) === undefined;
}

/** Why `m` is not a compiled module ("plan.inputs is missing, …"), undefined when it is one. */
function moduleProblem(m: unknown): string | undefined {
  if (typeof m !== "object" || m === null) return "it is not a module object";
  const c = m as Partial<CompiledModule>;
  if (c.plan === undefined && c.forward === undefined) return "it exports neither `plan` nor `forward`";
  if (typeof c.forward !== "function") return "its `forward` export is not a function";
  return planProblem(c.plan);
}

/** `{ shape: number[], data: Float32Array }` with as many values as the shape holds. */
function weightTensorProblem(w: unknown): string | undefined {
  if (w instanceof tf.Tensor) return w.isDisposed ? "is a disposed tf.Tensor" : undefined;
  if (typeof w !== "object" || w === null) return `is ${w === null ? "null" : typeof w}, not a tf.Tensor or { shape, data }`;
  const t = w as Partial<WeightTensor>;
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return "has no valid `shape` (an array of counts)";
  if (!(t.data instanceof Float32Array)) return "has no `data` Float32Array";
  const size = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== size) return `has ${t.data.length} values but its shape [${t.shape.join(",")}] holds ${size}`;
  return undefined;
}

/** Counts NaN and ±Infinity in `data`; the index of the first. */
function nonFinite(data: ArrayLike<number>): { nan: number; inf: number; first: number } {
  let nan = 0;
  let inf = 0;
  let first = -1;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v - v === 0) continue;
    if (Number.isNaN(v)) nan++;
    else inf++;
    if (first < 0) first = i;
  }
  return { nan, inf, first };
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

export function resolveWeights(plan: Plan, source: WeightsSource): Map<string, WeightTensor | tf.Tensor> {
  const kinds = "a Map of tensors, { safetensors: bytes, source? } or { random: seed }";
  if (typeof source !== "object" || source === null) throw new LoadError(`weights: ${source === null ? "null" : typeof source} given; expected ${kinds}`);
  if (source instanceof Map) return new Map(source);
  if ("safetensors" in source && !(source.safetensors instanceof Uint8Array)) throw new LoadError(`weights: safetensors must be the file's bytes (a Uint8Array), not ${typeof source.safetensors === "object" ? "an object of another kind" : typeof source.safetensors}`);
  if (!("random" in source) && !("safetensors" in source)) throw new LoadError(`weights: an object with neither \`random\` nor \`safetensors\` given; expected ${kinds}`);
  if ("random" in source) return randomWeights(plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), source.random);
  if ("safetensors" in source) {
    const parsed = parseSafetensors(source.safetensors, source.source ?? "<weights>");
    return isHfVit(parsed.keys()) ? fromHfVit(parsed) : parsed;
  }
  return new Map(source);
}

/** Checks weight names, shapes and dtypes against the plan; a mismatch is a LoadError listing each problem. */
export function checkWeights(plan: Plan, given: ReadonlyMap<string, WeightTensor | tf.Tensor>, options: { source?: string } = {}): void {
  const problems: string[] = [];
  const wanted = new Map(plan.params.map((p) => [p.name, p]));
  for (const p of plan.params) {
    const w = given.get(p.name);
    if (w === undefined) {
      problems.push(`missing weight "${p.name}" (expected shape ${formatPlanShape(p.shape)})`);
      continue;
    }
    const kind = weightTensorProblem(w);
    if (kind !== undefined) {
      problems.push(`weight "${p.name}" ${kind}`);
      continue;
    }
    if (w instanceof tf.Tensor && w.dtype !== "float32") problems.push(`weight "${p.name}" has dtype ${w.dtype} but the plan expects float32`);
    const shape = w.shape as number[];
    if (shape.length !== p.shape.length || shape.some((d, i) => d !== p.shape[i])) {
      problems.push(`weight "${p.name}" has shape ${shapeText(shape)} but the plan expects ${formatPlanShape(p.shape)}`);
    }
  }
  for (const name of given.keys()) if (!wanted.has(name)) problems.push(`unexpected weight "${name}" is not a parameter of ${plan.model}`);
  if (problems.length > 0) {
    const shown = problems.slice(0, 12);
    if (problems.length > shown.length) shown.push(`… and ${problems.length - shown.length} more`);
    throw new LoadError(`Weights${options.source === undefined ? "" : ` from ${options.source}`} do not match the plan of "${plan.model}":\n  ${shown.join("\n  ")}`);
  }
}

/**
 * Refuses weights holding NaN or ±Infinity (one of them turns every output
 * into NaN) unless `allowNonFinite`. tf.Tensor weights are read with
 * `await data()`: synchronous reads fail on WebGPU.
 */
export async function checkFinite(plan: Plan, given: ReadonlyMap<string, WeightTensor | tf.Tensor>, options: { allowNonFinite?: boolean; source?: string } = {}): Promise<void> {
  if (options.allowNonFinite === true) return;
  for (const p of plan.params) {
    const w = given.get(p.name)!;
    const bad = nonFinite(w instanceof tf.Tensor ? await w.data() : w.data);
    if (bad.first < 0) continue;
    const counts = [bad.nan > 0 ? `${bad.nan} NaN` : "", bad.inf > 0 ? `${bad.inf} infinite` : ""].filter((x) => x !== "").join(" and ");
    throw new LoadError(
      `weight "${p.name}"${options.source === undefined ? "" : ` from ${options.source}`} holds ${counts} value${bad.nan + bad.inf === 1 ? "" : "s"} (the first at index ${bad.first}); ` +
        "every output would be NaN. Pass allowNonFinite: true to load it anyway",
    );
  }
}

/**
 * Checks names, shapes and dtypes against the plan and uploads the weights;
 * tf.Tensors given are borrowed as they are (LoadOptions.weights).
 */
async function bindWeights(plan: Plan, given: Map<string, WeightTensor | tf.Tensor>, options: { allowNonFinite?: boolean; source?: string }): Promise<{ tensors: Record<string, tf.Tensor>; owned: tf.Tensor[]; borrowed: [string, tf.Tensor][] }> {
  checkWeights(plan, given, options);
  await checkFinite(plan, given, options);
  const tensors: Record<string, tf.Tensor> = {};
  const owned: tf.Tensor[] = [];
  const borrowed: [string, tf.Tensor][] = [];
  for (const p of plan.params) {
    const w = given.get(p.name)!;
    if (w instanceof tf.Tensor) {
      tensors[p.name] = w;
      borrowed.push([p.name, w]);
    } else {
      const t = tf.tensor(w.data, w.shape, "float32");
      tensors[p.name] = t;
      owned.push(t);
    }
  }
  return { tensors, owned, borrowed };
}

/** Checks inputs against the plan; returns the batch size. */
export function checkInputs(plan: Plan, inputs: Readonly<Record<string, tf.Tensor>>): number {
  let batch: number | undefined;
  if (typeof inputs !== "object" || inputs === null || Array.isArray(inputs) || inputs instanceof tf.Tensor) {
    throw new LoadError(`run(): inputs must be an object of named tensors, { ${plan.inputs.map((i) => `${JSON.stringify(i.name)}: …`).join(", ")} }`);
  }
  for (const spec of plan.inputs) {
    const t = inputs[spec.name];
    if (t === undefined) throw new LoadError(`run(): missing input "${spec.name}" of shape ${formatPlanShape(spec.shape, plan.batchName)}`);
    if (!(t instanceof tf.Tensor)) throw new LoadError(`run(): input "${spec.name}" is not a tf.Tensor`);
    if (t.isDisposed) throw new LoadError(`run(): input "${spec.name}" was disposed before run() was called`);
    const dtype = spec.dtype ?? "float32";
    if (t.dtype !== dtype) {
      throw new LoadError(`run(): input "${spec.name}" has dtype ${t.dtype} but ${dtype} is expected${dtype === "int32" ? ` (token ids: tf.tensor(ids, shape, "int32"))` : ""}`);
    }
    const bad = () => new LoadError(`run(): input "${spec.name}" has shape ${shapeText(t.shape)} but the plan expects ${formatPlanShape(spec.shape, plan.batchName)}`);
    if (t.shape.length !== spec.shape.length) throw bad();
    spec.shape.forEach((d, i) => {
      const got = t.shape[i]!;
      if (typeof d === "number") {
        if (got !== d) throw bad();
        return;
      }
      if (got % d.batch !== 0 || got === 0) throw bad();
      const b = got / d.batch;
      if (batch !== undefined && b !== batch) throw new LoadError(`run(): input "${spec.name}" has batch ${b} but another input has batch ${batch}`);
      batch = b;
    });
  }
  for (const name of Object.keys(inputs)) {
    if (!plan.inputs.some((i) => i.name === name)) throw new LoadError(`run(): unexpected input "${name}"; the model takes ${plan.inputs.map((i) => `"${i.name}"`).join(", ")}`);
  }
  return batch ?? 1;
}

/** The error for a token id outside [0, vocab), or undefined when every id is inside. */
function tokenIdProblem(name: string, shape: readonly number[], ids: ArrayLike<number>, vocab: number): LoadError | undefined {
  let at = -1;
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i]!;
    if (!(v >= 0 && v < vocab)) {
      at = i;
      break;
    }
  }
  if (at < 0) return undefined;
  const index = shape.map((_, k) => Math.floor(at / shape.slice(k + 1).reduce((a, b) => a * b, 1)) % shape[k]!);
  return new LoadError(`run(): input "${name}" holds token id ${ids[at]} at [${index.join(",")}]; ids must be in [0, ${vocab}) (the embedding table has ${vocab} rows)`);
}

/**
 * Token ids outside the table: tfjs would read past it (wasm) or throw from
 * inside. Reads the ids synchronously; on WebGPU, where ids computed on the GPU
 * cannot be read that way, the error points at `runAsync()`.
 */
export function checkTokenIds(plan: Plan, inputs: Readonly<Record<string, tf.Tensor>>): void {
  for (const spec of plan.inputs) {
    if (spec.vocab === undefined) continue;
    const t = inputs[spec.name]!;
    let ids: ArrayLike<number>;
    try {
      ids = t.dataSync();
    } catch (e) {
      throw new LoadError(
        `run(): token ids "${spec.name}" cannot be read synchronously on backend ${tf.getBackend()} (${e instanceof Error ? e.message : String(e)}); use \`await model.runAsync(inputs)\``,
        { cause: e },
      );
    }
    const problem = tokenIdProblem(spec.name, t.shape, ids, spec.vocab);
    if (problem !== undefined) throw problem;
  }
}

/** checkTokenIds with `await data()`: works on every backend. */
export async function checkTokenIdsAsync(plan: Plan, inputs: Readonly<Record<string, tf.Tensor>>): Promise<void> {
  for (const spec of plan.inputs) {
    if (spec.vocab === undefined) continue;
    const t = inputs[spec.name]!;
    const problem = tokenIdProblem(spec.name, t.shape, await t.data(), spec.vocab);
    if (problem !== undefined) throw problem;
  }
}

/** Loads a compiled module (the imported module object) with weights on a backend. */
export async function loadModule(compiled: unknown, options: LoadOptions, source = "The given module"): Promise<Model> {
  const problem = moduleProblem(compiled);
  if (problem !== undefined || !isCompiledModule(compiled)) throw new LoadError(`${source} is not a turbograph compiled model: ${problem ?? "it lacks `plan` or `forward`"}`);
  if (typeof options !== "object" || options === null) throw new LoadError("load(): options { weights, backend? } must be given");
  const backend = await selectBackend(options.backend ?? "auto");
  const installed = backend.name === "wasm" && options.simdMatmul !== false && registerSimdMatmul() ? ["simd BatchMatMul"] : [];
  const plan = compiled.plan;
  const programKernels: Kernels = { ...kernels, ...options.kernels };
  const weightsSource = typeof options.weights === "object" && options.weights !== null && "safetensors" in options.weights ? options.weights.source : undefined;
  const weights = await bindWeights(plan, resolveWeights(plan, options.weights), { allowNonFinite: options.allowNonFinite, source: weightsSource });
  let disposed = false;
  const start = (inputs: Readonly<Record<string, tf.Tensor>>): number => {
    if (disposed) throw new LoadError("run(): the model was disposed");
    const gone = weights.borrowed.find(([, t]) => t.isDisposed);
    if (gone !== undefined) throw new LoadError(`run(): weight "${gone[0]}" was disposed after load(); tf.Tensor weights are borrowed, so keep them alive as long as the model`);
    return checkInputs(plan, inputs);
  };
  const execute = (inputs: Readonly<Record<string, tf.Tensor>>, batch: number): Record<string, tf.Tensor> => {
    let out: Record<string, tf.Tensor>;
    try {
      out = compiled.forward(tf, weights.tensors, inputs, programKernels);
    } catch (e) {
      throw new LoadError(`run(): model "${plan.model}" failed at batch ${batch}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    for (const o of plan.outputs) {
      const t = out?.[o.name];
      if (!(t instanceof tf.Tensor)) throw new LoadError(`run(): the module's forward() returned no tensor for output "${o.name}"; was model.mjs edited?`);
      const want = o.shape.map((d) => dimValue(d, batch));
      if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
        throw new Error(`internal: output "${o.name}" has shape ${shapeText(t.shape)} but the plan promised ${shapeText(want)}`);
      }
    }
    return out;
  };
  return {
    info: { backend, kernels: installed, plan },
    run(inputs) {
      const batch = start(inputs);
      checkTokenIds(plan, inputs);
      return execute(inputs, batch);
    },
    async runAsync(inputs) {
      const batch = start(inputs);
      await checkTokenIdsAsync(plan, inputs);
      return execute(inputs, batch);
    },
    predictedPeakBytes: (batch) => predictedPeakBytes(plan, batch),
    dispose() {
      if (disposed) return;
      disposed = true;
      for (const t of weights.owned) t.dispose();
    },
  };
}
