/**
 * The plan: what a compiled module promises about itself. `turbo-compile`
 * writes it next to `forward()` and as plan.json; the runtime checks weights
 * and inputs against it and never computes a shape of its own.
 *
 * Dims are numbers, or `{ batch: k }` for k·B where B is the run's batch size.
 * Every per-batch figure is linear in B: `perBatch·B + fixed`.
 */

export type PlanDim = number | { readonly batch: number };

export interface PlanTensor {
  readonly name: string;
  readonly shape: readonly PlanDim[];
  /** float32, or int32 for token ids (inputs only). */
  readonly dtype: "float32" | "int32";
  /** For token ids: every id must be an integer in [0, vocab) (the smallest table they index). */
  readonly vocab?: number;
}

export interface PlanLinear {
  readonly perBatch: number;
  readonly fixed: number;
}

export interface PlanBlock {
  readonly name: string;
  readonly tokensIn: number | null;
  readonly tokensOut: number | null;
  /** Tokens the block's Turbo merge removes (0 without merging). */
  readonly merged: number;
  readonly flops: PlanLinear;
}

export interface Plan {
  readonly format: "turbograph.plan/1";
  readonly model: string;
  readonly batchName: string;
  readonly inputs: readonly PlanTensor[];
  readonly outputs: readonly PlanTensor[];
  readonly params: readonly PlanTensor[];
  readonly flops: PlanLinear;
  readonly blocks: readonly PlanBlock[];
  readonly memory: {
    /** Bytes of all parameters. */
    readonly weightBytes: number;
    /**
     * Bytes of live program tensors while each kernel step runs (its inputs
     * plus its output), excluding weights and the caller's inputs. tfjs counts
     * a reshaped view as its own tensor, and so does this table.
     */
    readonly liveBytes: readonly PlanLinear[];
  };
  readonly kernels: number;
  /**
   * What the compiler found and did not do, one line each (absent when there
   * is nothing to say): attention written from primitives that was raised,
   * or left as written and why (`block layer.3: no merge — softmax is over the query axis`).
   */
  readonly explain?: readonly string[];
  /** Turbo's settings and the FLOPs of the same model without merging; null when compiled without. */
  readonly turbo: {
    readonly options: unknown;
    readonly baselineFlops: PlanLinear;
    /** Baseline FLOPs / merged FLOPs, per sample. */
    readonly flopsRatio: number;
  } | null;
}

export function dimValue(d: PlanDim, batch: number): number {
  return typeof d === "number" ? d : d.batch * batch;
}

export function formatPlanShape(shape: readonly PlanDim[], batchName = "B"): string {
  return `[${shape.map((d) => (typeof d === "number" ? d : d.batch === 1 ? batchName : `${batchName}*${d.batch}`)).join(",")}]`;
}

export const linearAt = (e: PlanLinear, batch: number): number => e.perBatch * batch + e.fixed;

/** Predicted peak bytes of a run's activations (weights and inputs excluded). */
export function predictedPeakBytes(plan: Plan, batch: number): number {
  let peak = 0;
  for (const e of plan.memory.liveBytes) peak = Math.max(peak, linearAt(e, batch));
  return peak;
}
