/**
 * The onnxruntime backend: a compiled `model.onnx` (turbo-compile `--emit
 * onnx`) bound to weights and run by onnxruntime-node. The parameters, graph
 * inputs in the file, become initializers holding the weights before the
 * session is made, so onnxruntime can pre-pack them as it does any constant.
 *
 * The contract is `load()`'s: weights and inputs are checked against the plan
 * (carried in the model's metadata) with the same LoadErrors, inputs and
 * outputs are tf.Tensors that the caller owns. onnxruntime runs
 * asynchronously, so `run()` returns a promise. onnxruntime-node and the
 * protobuf library are imported on first use, so the runtime entry works
 * without them.
 */

import * as tf from "@tensorflow/tfjs-core";
import type * as Ort from "onnxruntime-node";
import { dimValue, predictedPeakBytes, type Plan } from "../compiler/contract/plan.ts";
import { BackendError } from "./backend.ts";
import { checkFinite, checkInputs, checkTokenIds, checkWeights, LoadError, resolveWeights, type WeightsSource } from "./load.ts";

/** The metadata key under which turbo-compile stores the plan in model.onnx. */
const PLAN_KEY = "turbograph.plan";

export interface OnnxLoadOptions {
  /** Weights: a parsed map, safetensors bytes (turbograph or Hugging Face ViT names), or `{ random: seed }`. */
  weights: WeightsSource;
  /** Intra-op threads (onnxruntime's `intraOpNumThreads`); default: onnxruntime's choice (one per core). */
  threads?: number;
  /**
   * Execution providers in order of preference, e.g. `["cuda", "cpu"]`; default `["cpu"]`.
   * Only the CPU provider ships with onnxruntime-node on Linux; others are untested here.
   */
  executionProviders?: readonly string[];
  /** Further onnxruntime session options (e.g. `enableProfiling`), applied last. */
  sessionOptions?: Ort.InferenceSession.SessionOptions;
}

export interface OnnxModelInfo {
  readonly backend: { readonly name: "onnxruntime"; readonly reason: string };
  readonly plan: Plan;
  readonly threads: number | undefined;
  readonly executionProviders: readonly string[];
}

export interface OnnxModel {
  readonly info: OnnxModelInfo;
  /** Runs the program on onnxruntime; the caller owns (and disposes) the returned tensors. */
  run(inputs: Readonly<Record<string, tf.Tensor>>): Promise<Record<string, tf.Tensor>>;
  /** Predicted peak activation bytes of the tfjs program for a batch size (onnxruntime plans its own memory). */
  predictedPeakBytes(batch: number): number;
  /** The onnxruntime session, for profiling. */
  readonly session: Ort.InferenceSession;
  /** Releases the session. */
  dispose(): Promise<void>;
}

async function importOrt(): Promise<typeof Ort> {
  try {
    return await import("onnxruntime-node");
  } catch (e) {
    const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new BackendError(`Backend "onnxruntime" was requested but onnxruntime-node cannot be loaded (${why}); install it with \`npm install onnxruntime-node@1.31.1\` (an optional peer dependency; set ONNXRUNTIME_NODE_INSTALL=skip to keep its install script from downloading the CUDA provider)`);
  }
}

type OnnxNamespace = typeof import("onnx-proto").onnx;

async function importProto(): Promise<OnnxNamespace> {
  // A CommonJS module: its exports object is the ESM default.
  const mod = (await import("onnx-proto")) as unknown as { default: { onnx: OnnxNamespace } };
  return mod.default.onnx;
}

/** Decodes model.onnx and reads the plan from its metadata. */
function readModel(onnx: OnnxNamespace, bytes: Uint8Array, source: string) {
  let model;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new LoadError(`${source} is not an ONNX model (${(e as Error).message})`);
  }
  const entry = model.metadataProps.find((p) => p.key === PLAN_KEY);
  if (entry === undefined) throw new LoadError(`${source} was not written by turbo-compile --emit onnx (no "${PLAN_KEY}" metadata)`);
  let plan: Plan;
  try {
    plan = JSON.parse(entry.value ?? "") as Plan;
  } catch (e) {
    throw new LoadError(`${source}: the plan in its metadata is not JSON (${(e as Error).message})`);
  }
  if (plan.format !== "turbograph.plan/1") throw new LoadError(`${source}: plan format ${JSON.stringify(plan.format)} is not turbograph.plan/1`);
  return { model, plan };
}

/** The weight's float32 values as little-endian bytes (every platform onnxruntime-node ships for is little-endian). */
function weightBytes(w: { data: Float32Array } | tf.Tensor): Uint8Array {
  const data = w instanceof tf.Tensor ? (w.dataSync() as Float32Array) : w.data;
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The session options load() uses (before `sessionOptions` of its caller): full graph optimisation, one sequential inter-op thread. */
export function sessionOptions(executionProviders: readonly string[], threads: number | undefined): Ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [...executionProviders],
    graphOptimizationLevel: "all",
    executionMode: "sequential",
    interOpNumThreads: 1,
    ...(threads === undefined ? {} : { intraOpNumThreads: threads }),
  };
}

/** Loads model.onnx bytes with weights into an onnxruntime session. */
export async function loadOnnx(bytes: Uint8Array, options: OnnxLoadOptions & { source?: string }): Promise<OnnxModel> {
  const source = options.source ?? "model.onnx";
  const [ort, onnx] = [await importOrt(), await importProto()];
  // Inputs and outputs are tf.Tensors: make sure tfjs has a backend to hold them
  // (the cpu one registers at a low priority; a backend already chosen stays).
  await import("@tensorflow/tfjs-backend-cpu");
  await tf.ready();
  const { model, plan } = readModel(onnx, bytes, source);
  if (options.threads !== undefined && (!Number.isInteger(options.threads) || options.threads < 1)) {
    throw new LoadError(`load(): threads must be a positive integer, got ${options.threads}`);
  }
  const given = resolveWeights(plan, options.weights);
  checkWeights(plan, given);
  await checkFinite(plan, given);
  const graph = model.graph;
  if (graph === null || graph === undefined) throw new LoadError(`${source} has no graph`);
  const params = new Set(plan.params.map((p) => p.name));
  const graphInputs = graph.input ?? [];
  const missing = plan.params.filter((p) => !graphInputs.some((i) => i.name === p.name));
  if (missing.length > 0) throw new LoadError(`${source} does not take parameter "${missing[0]!.name}" as an input; recompile it with turbo-compile --emit onnx`);
  graph.input = graphInputs.filter((i) => !params.has(i.name ?? ""));
  const initializers = (graph.initializer ??= []);
  for (const p of plan.params) {
    initializers.push(onnx.TensorProto.create({
      name: p.name,
      dims: p.shape as number[],
      dataType: onnx.TensorProto.DataType.FLOAT,
      rawData: weightBytes(given.get(p.name)! as { data: Float32Array } | tf.Tensor),
    }));
  }
  const bound = onnx.ModelProto.encode(model).finish();
  const executionProviders = options.executionProviders ?? ["cpu"];
  let session: Ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bound, {
      ...sessionOptions(executionProviders, options.threads),
      ...options.sessionOptions,
    });
  } catch (e) {
    throw new LoadError(`onnxruntime cannot load ${source}: ${(e as Error).message.split("\n")[0]}`);
  }
  let disposed = false;
  const reason = `requested; onnxruntime-node ${ort.env.versions?.node ?? ""}`.trim();
  return {
    info: { backend: { name: "onnxruntime", reason }, plan, threads: options.threads, executionProviders },
    session,
    async run(inputs) {
      if (disposed) throw new LoadError("run(): the model was disposed");
      const batch = checkInputs(plan, inputs);
      checkTokenIds(plan, inputs);
      const feeds: Record<string, Ort.Tensor> = {};
      for (const spec of plan.inputs) {
        const t = inputs[spec.name]!;
        feeds[spec.name] = spec.dtype === "int32"
          ? new ort.Tensor("int32", t.dataSync() as Int32Array, t.shape)
          : new ort.Tensor("float32", t.dataSync() as Float32Array, t.shape);
      }
      const results = await session.run(feeds);
      const out: Record<string, tf.Tensor> = {};
      for (const o of plan.outputs) {
        const r = results[o.name];
        if (r === undefined) throw new Error(`internal: onnxruntime returned no output "${o.name}"`);
        const want = o.shape.map((d) => dimValue(d, batch));
        if (r.dims.length !== want.length || r.dims.some((d, i) => d !== want[i])) {
          throw new Error(`internal: output "${o.name}" has shape [${r.dims.join(",")}] but the plan promised [${want.join(",")}]`);
        }
        out[o.name] = tf.tensor(r.data as Float32Array, want, "float32");
        r.dispose();
      }
      return out;
    },
    predictedPeakBytes: (batch) => predictedPeakBytes(plan, batch),
    async dispose() {
      if (disposed) return;
      disposed = true;
      await session.release();
    },
  };
}
