/**
 * Generation mode's merge and restore (`k.windowMerge`, `k.restore`,
 * runtime/kernels/window_merge.ts) as standard ONNX ops, batched over the
 * symbolic B, in the kernel's arithmetic order so both merge the same tokens:
 *
 *   split          the static destinations and sources (window_partition.ts):
 *                  Gather with constant positions on the token axis
 *   cosine, R, dst ReduceSum/Sqrt/Max/Div, MatMul, ReduceMax, ArgMax (first max)
 *   degree E       R − α·c·I (I gathered at the sources)
 *   selection      TopK (ties: lower index first); the staying sources back in
 *                  position order by a second, ascending TopK
 *   merge          MatMul with 0/1 matrices built by Equal: the staying rows,
 *                  and (x_d + Σ x_i) / count for each destination (the
 *                  kernel's x_d + Σ (x_i − x_d) / count up to float rounding;
 *                  both leave a destination that receives nothing exact)
 *   restore rows   ScatterElements of each position's row in the merged
 *                  output, offset by b·(N − r') and flattened to [B·N], the
 *                  kernel's `restoreRows`
 *   restore        Gather of those rows from the flattened sub-layer output
 *
 * Node names start with `window_merge/<step>` and `restore/<step>`.
 */

import { windowCounts } from "../contract/merged_count.ts";
import { NORM_EPSILON } from "../contract/merge_constants.ts";
import { windowPartition } from "../contract/window_partition.ts";
import type { Shape } from "../ir/types.ts";
import { attr, type OnnxGraphBuilder } from "./onnx_builder.ts";

/** onnx.TensorProto.DataType values. */
const FLOAT = 1;
const INT32 = 6;

export interface WindowMergeOptions {
  readonly r: number;
  readonly grid: readonly [number, number];
  readonly window: readonly [number, number];
  readonly seed: number;
  readonly alpha: number;
  readonly scale: number;
}

/** The option keys of `k.windowMerge` that this rendering implements. */
export const windowOptionKeys = ["r", "grid", "window", "seed", "alpha", "scale"] as const satisfies readonly (keyof WindowMergeOptions)[];

/**
 * Emits one merge of x [B, N, D]; writes the merged tokens [B, N − r', D]
 * and the restore rows [B·N] (int32, as the kernel's) into the given names. `batch` is the
 * symbolic batch dim of the step's shape.
 */
export function emitWindowMerge(
  g: OnnxGraphBuilder,
  step: string,
  inputs: { readonly x: string; readonly metric: string; readonly semantic: string | undefined },
  n: number,
  width: number,
  batch: Shape[number],
  o: WindowMergeOptions,
  out: { readonly x: string; readonly restoreRows: string },
): void {
  const name = `window_merge/${step}`;
  const { sources, destinations } = windowPartition({ grid: o.grid, window: o.window, seed: o.seed });
  const merged = windowCounts(o.grid, o.window, o.r).merged;
  const nA = sources.length;
  const nB = destinations.length;
  const kept = nA - merged;
  const outTokens = n - merged;
  const f = (v: number) => g.floats([v]);
  const onTokens = (t: string, positions: readonly number[]) => g.op("Gather", [t, g.ints(positions)], name, [attr.int("axis", 1)]);
  const range = (t: string, start: number, end: number) => g.op("Slice", [t, g.ints([start]), g.ints([end]), g.ints([1])], name);
  const unsqueeze = (t: string, axis: number) => g.op("Unsqueeze", [t, g.ints([axis])], name);
  /** A constant row [k] repeated for every sample: [B, k]. */
  const perSample = (values: readonly number[]) => g.op("Expand", [g.ints(values, [1, values.length]), g.shape([batch, values.length], name)], name);
  /** b·(N − r') for each sample b: [B, 1]. */
  const offsets = () => {
    const b = g.op("Slice", [g.op("Shape", [inputs.x], name), g.ints([0]), g.ints([1])], name);
    const index = g.op("Range", [g.ints([0], []), g.op("Squeeze", [b, g.ints([0])], name), g.ints([1], [])], name);
    return unsqueeze(g.op("Mul", [index, g.ints([outTokens], [])], name), 1);
  };
  // int32, as the kernel's restoreRows.
  const flatRows = (local: string) => g.op("Cast", [g.op("Reshape", [g.op("Add", [local, offsets()], name), g.ints([-1])], name)], name, [attr.int("to", INT32)], out.restoreRows);
  const iota = (k: number, from = 0) => Array.from({ length: k }, (_, i) => from + i);

  if (merged === 0) {
    g.op("Identity", [inputs.x], name, [], out.x);
    flatRows(perSample(iota(n)));
    return;
  }

  // Sources then destinations, by one static permutation of the token axis.
  const order = [...sources, ...destinations];
  const split = (t: string) => {
    const all = g.op("Gather", [t, g.ints(order)], name, [attr.int("axis", 1)]);
    return [range(all, 0, nA), range(all, nA, n)] as const;
  };

  // Cosine similarity of every source to every destination; R and dst (first max).
  const norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [inputs.metric, inputs.metric], name), g.ints([-1])], name, [attr.int("keepdims", 1)])], name);
  const [unitA, unitB] = split(g.op("Div", [inputs.metric, g.op("Max", [norm, f(NORM_EPSILON)], name)], name));
  const scores = g.op("MatMul", [unitA, g.op("Transpose", [unitB], name, [attr.ints("perm", [0, 2, 1])])], name);
  const redundancy = g.op("ReduceMax", [scores], name, [attr.ints("axes", [2]), attr.int("keepdims", 0)]);
  const destination = g.op("ArgMax", [scores], name, [attr.int("axis", 2), attr.int("keepdims", 0), attr.int("select_last_index", 0)]);
  let degree = redundancy;
  if (o.alpha !== 0 && inputs.semantic !== undefined) {
    degree = g.op("Sub", [redundancy, g.op("Mul", [onTokens(inputs.semantic, sources), f(o.alpha * o.scale)], name)], name);
  }

  // The r' sources of highest E merge; the others stay, in position order.
  const byDegree = g.node("TopK", [degree, g.ints([nA])], name, { attrs: [attr.int("axis", -1), attr.int("largest", 1), attr.int("sorted", 1)], outputs: 2 })[1]!;
  const moving = range(byDegree, 0, merged); // [B, r'], index into sources
  const staying = kept === 0
    ? undefined
    : g.node("TopK", [range(byDegree, merged, nA), g.ints([kept])], name, { attrs: [attr.int("axis", -1), attr.int("largest", 0), attr.int("sorted", 1)], outputs: 2 })[0]!;

  // The merge as products with 0/1 matrices (onnxruntime's MatMul is far
  // faster than its GatherND and ScatterElements over [B, ·, D]; a product
  // with a one-hot row copies exactly): Q[b, j, a] = 1 when source a merges
  // into destination j, so the destination becomes (x_j + Σ_a Q x_a) / count,
  // and a destination that receives nothing keeps x_j exactly.
  const [xA, xB] = split(inputs.x);
  /** [B, k, classes]: row i one-hot at index[b, i]. */
  const oneHot = (index: string, classes: number) => g.op("Cast", [g.op("Equal", [unsqueeze(index, 2), g.ints(iota(classes), [1, 1, classes])], name)], name, [attr.int("to", FLOAT)]);
  const ones = g.op("Expand", [f(1), g.shape([batch, merged], name)], name);
  const movingMask = g.op("ScatterElements", [g.op("ConstantOfShape", [g.shape([batch, nA], name)], name), moving, ones], name, [attr.int("axis", 1)]); // [B, nA]
  // [B, nB, nA]: column a one-hot at dst[b, a], zero when a stays.
  const q = g.op("Mul", [g.op("Cast", [g.op("Equal", [unsqueeze(destination, 1), g.ints(iota(nB), [1, nB, 1])], name)], name, [attr.int("to", FLOAT)]), unsqueeze(movingMask, 1)], name);
  const count = g.op("Add", [f(1), g.op("ReduceSum", [q, g.ints([-1])], name, [attr.int("keepdims", 1)])], name);
  const newXB = g.op("Div", [g.op("Add", [xB, g.op("MatMul", [q, xA], name)], name), count], name);
  const parts = staying === undefined ? [newXB] : [g.op("MatMul", [oneHot(staying, nA), xA], name), newXB];
  if (parts.length === 1) g.op("Identity", parts, name, [], out.x);
  else g.op("Concat", parts, name, [attr.int("axis", 1)], out.x);
  const target = g.op("GatherElements", [destination, moving], name, [attr.int("axis", 1)]); // [B, r'], index into destinations

  // Each position's row in the merged output: a staying source its slot, a
  // destination kept + j, a merged source its destination's kept + j.
  const sourcePositions = g.ints(sources);
  const positions: string[] = [];
  const slots: string[] = [];
  if (staying !== undefined) {
    positions.push(g.op("Gather", [sourcePositions, staying], name));
    slots.push(perSample(iota(kept)));
  }
  positions.push(perSample(destinations), g.op("Gather", [sourcePositions, moving], name));
  slots.push(perSample(iota(nB, kept)), g.op("Add", [target, g.ints([kept], [])], name));
  const local = g.op("ScatterElements", [
    g.op("Expand", [g.ints([0], [1, 1]), g.shape([batch, n], name)], name),
    g.op("Concat", positions, name, [attr.int("axis", 1)]),
    g.op("Concat", slots, name, [attr.int("axis", 1)]),
  ], name, [attr.int("axis", 1)]);
  flatRows(local);
}

/** Emits the restore of y [B, N', D'] to [B, n, D'] by the merge's rows. */
export function emitRestore(g: OnnxGraphBuilder, step: string, y: string, restoreRows: string, width: number, shape: Shape, out: string): void {
  const name = `restore/${step}`;
  const flat = g.op("Reshape", [y, g.ints([-1, width])], name);
  g.op("Reshape", [g.op("Gather", [flat, restoreRows], name, [attr.int("axis", 0)]), g.reshapeTarget(shape)], name, [], out);
}
