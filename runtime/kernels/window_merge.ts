/**
 * Turbo's merge and restore for generation (spec/turbo.md, "Generation mode"):
 * the step around a diffusion transformer's self-attention, cross-attention or
 * MLP that shortens the image tokens before the sub-layer and gives every
 * token back after it,
 *
 *     x ← x + restore(f(merge(norm(x))))
 *
 * - {@linkcode windowPartition} picks the destinations: one token per full
 *   sy×sx window of the token grid, chosen by a seeded generator, so the same
 *   seed gives the same destinations for every sample, step and run.
 * - {@linkcode windowMerge} merges the r sources with the highest information
 *   degree E = R − α·c·I into their most similar destination (mean of the
 *   destination and what it receives) and returns the N − r tokens together
 *   with the rows that undo it.
 * - {@linkcode restore} gives every position its row back: a destination and
 *   an unmerged source their own output, a merged source a copy of its
 *   destination's.
 *
 * Only ops with kernels on the cpu, wasm and webgpu backends: GatherNd,
 * ScatterNd, BatchMatMul, Max, ArgMax, TopK, Sum, Square, Sqrt, Maximum, Add,
 * Sub, Mul, RealDiv, Neg, Cast, Slice, Concat, Reshape. Not yet wired into the
 * compiler: a spec cannot ask for it, so far only code can.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { NORM_EPSILON } from "../../compiler/contract/merge_constants.ts";
import { windowPartition, type WindowOptions, type WindowPartition } from "../../compiler/contract/window_partition.ts";
import { rowTable, takeRows } from "./_rows.ts";

export { windowPartition, type WindowOptions, type WindowPartition };

export interface WindowMergeInputs {
  /** Token states [B, N, D]. */
  x: tf.Tensor3D;
  /** Similarity metric [B, N, d] (the block's input hidden state). */
  metric: tf.Tensor3D;
  /** Semantic value I per token [B, N] (e.g. the visual-textual map), or null for α = 0. */
  semantic?: tf.Tensor2D | null;
}

export interface WindowMergeOptions extends WindowOptions {
  /** Sources to merge per sample; clamped to the number of sources. */
  r: number;
  /** Weight α of the semantic value; 0 gives tomesd's rule. @default {0} */
  alpha?: number;
  /** Scale c that brings I to the size of R. @default {30} */
  scale?: number;
}

export interface WindowMergeResult {
  /** The N − r' tokens: unmerged sources in position order, then the destinations in position order. */
  x: tf.Tensor3D;
  /** int32 [B·N]: row of the flattened [B·(N − r'), ·] merged output that each position takes back. */
  restoreRows: tf.Tensor1D;
  /** Sources merged per sample (r clamped). */
  merged: number;
}

/** Sources merged per sample: min(r, sources), never below 0. */
export function windowMergedCount(partition: WindowPartition, r: number): number {
  return Math.max(0, Math.min(Math.floor(r), partition.sources.length));
}

/** Merges r' sources of every sample into destinations (see the module comment). Disposes nothing it was given. */
export function windowMerge(inputs: WindowMergeInputs, options: WindowMergeOptions): WindowMergeResult {
  const { x, metric } = inputs;
  const semantic = inputs.semantic ?? null;
  if (x.rank !== 3) throw new RangeError(`windowMerge: x must be [B, N, D], got [${x.shape}]`);
  const [batch, n, width] = x.shape;
  if (metric.rank !== 3 || metric.shape[0] !== batch || metric.shape[1] !== n) {
    throw new RangeError(`windowMerge: metric must be [${batch}, ${n}, d] like x, got [${metric.shape}]`);
  }
  const partition = windowPartition(options);
  if (partition.n !== n) throw new RangeError(`windowMerge: grid ${options.grid[0]}×${options.grid[1]} has ${partition.n} tokens, but x has ${n}`);
  const alpha = options.alpha ?? 0;
  const scale = options.scale ?? 30;
  if (!Number.isFinite(alpha) || !Number.isFinite(scale)) throw new RangeError(`windowMerge: alpha ${alpha} and scale ${scale} must be finite`);
  if (alpha !== 0 && semantic === null) throw new RangeError(`windowMerge: alpha ${alpha} needs the semantic value (inputs.semantic [B, N])`);
  if (semantic !== null && (semantic.rank !== 2 || semantic.shape[0] !== batch || semantic.shape[1] !== n)) {
    throw new RangeError(`windowMerge: semantic must be [${batch}, ${n}], got [${semantic.shape}]`);
  }
  if (!Number.isInteger(options.r) || options.r < 0) throw new RangeError(`windowMerge: r ${options.r} must be a non-negative integer`);
  const merged = windowMergedCount(partition, options.r);
  const out = n - merged;

  return tf.tidy(() => {
    if (merged === 0) {
      const rows = rowTable(batch, n, (b, p) => b * n + p);
      return { x: tf.clone(x), restoreRows: tf.reshape(rows, [batch * n]) as tf.Tensor1D, merged };
    }
    const { sources, destinations } = partition;
    const nA = sources.length;
    const nB = destinations.length;
    const kept = nA - merged;
    const rowsA = rowTable(batch, nA, (b, a) => b * n + sources[a]!);
    const rowsB = rowTable(batch, nB, (b, j) => b * n + destinations[j]!);

    // Cosine similarity of every source to every destination; R and dst (first max).
    const metricRows = tf.reshape(metric, [batch * n, metric.shape[2]]);
    const unit = tf.div(metricRows, tf.maximum(tf.sqrt(tf.sum(tf.square(metricRows), 1, true)), NORM_EPSILON));
    const unitA = tf.reshape(takeRows(unit, rowsA), [batch, nA, -1]);
    const unitB = tf.reshape(takeRows(unit, rowsB), [batch, nB, -1]);
    const scores = tf.matMul(unitA, unitB, false, true) as tf.Tensor3D; // [B, nA, nB]
    const redundancy = tf.max(scores, 2) as tf.Tensor2D;
    const destination = tf.argMax(scores, 2) as tf.Tensor2D; // index into destinations
    let degree = redundancy;
    if (alpha !== 0 && semantic !== null) {
      const value = tf.reshape(takeRows(tf.reshape(semantic, [batch * n]), rowsA), [batch, nA]);
      degree = tf.sub(redundancy, tf.mul(value, alpha * scale));
    }

    // The r' sources of highest E merge; the others stay, in position order.
    const byDegree = tf.topk(degree, nA, true).indices; // [B, nA], index into sources
    const moving = tf.slice(byDegree, [0, 0], [batch, merged]);
    const staying = kept === 0 ? tf.zeros([batch, 0], "int32") : tf.cast(
      tf.neg(tf.topk(tf.neg(tf.cast(tf.slice(byDegree, [0, merged], [batch, kept]), "float32")), kept, true).values),
      "int32",
    );

    // Mean of each destination and its sources, as x_d + Σ (x_i − x_d) / count,
    // so that a destination that receives nothing keeps its x exactly.
    const xRows = tf.reshape(x, [batch * n, width]);
    // Offsets b·k as full tables: int32 adds of equal shapes (a broadcasting
    // int32 add takes the wasm backend's slow generic path, ~10× slower).
    const movingSource = tf.add(rowTable(batch, merged, (b) => b * nA), moving); // into [B·nA]
    const movingRows = takeRows(tf.reshape(rowsA, [batch * nA]), movingSource); // rows of x
    const target = tf.reshape(takeRows(tf.reshape(destination, [batch * nA]), movingSource), [batch, merged]); // [B, r'], index into destinations
    const targetRows = tf.reshape(tf.add(rowTable(batch, merged, (b) => b * nB), target), [-1, 1]); // into [B·nB]
    const xB = takeRows(xRows, rowsB); // [B·nB, D]
    const pull = tf.sub(takeRows(xRows, movingRows), tf.gatherND(xB, targetRows));
    const count = tf.add(tf.ones([batch * nB, 1]), tf.scatterND(targetRows, tf.ones([batch * merged, 1]), [batch * nB, 1]));
    const newXB = tf.add(xB, tf.div(tf.scatterND(targetRows, pull, [batch * nB, width]), count));

    // Output: unmerged sources in position order (sources are listed in raster
    // order, so sorting their indices sorts their positions), then destinations.
    const stayingRows = takeRows(tf.reshape(rowsA, [batch * nA]), tf.add(rowTable(batch, kept, (b) => b * nA), staying)); // rows of x
    const mergedX = tf.concat([
      tf.reshape(takeRows(xRows, stayingRows), [batch, kept, width]),
      tf.reshape(newXB, [batch, nB, width]),
    ], 1) as tf.Tensor3D;

    // Restore rows: every position written exactly once into a [B·N] table.
    const stayingOut = rowTable(batch, kept, (b, t) => b * out + t); // [B, kept]
    const destinationOut = rowTable(batch, nB, (b, j) => b * out + kept + j); // [B, nB]
    const movingOut = tf.add(rowTable(batch, merged, (b) => b * out + kept), target); // [B, r']
    const positions = tf.concat([tf.reshape(stayingRows, [-1]), tf.reshape(rowsB, [-1]), tf.reshape(movingRows, [-1])], 0);
    const values = tf.concat([tf.reshape(stayingOut, [-1]), tf.reshape(destinationOut, [-1]), tf.reshape(movingOut, [-1])], 0);
    const restoreRows = tf.scatterND(tf.reshape(positions, [-1, 1]), values, [batch * n]) as tf.Tensor1D;
    return { x: mergedX, restoreRows, merged };
  });
}

/**
 * Undoes {@linkcode windowMerge} on a sub-layer's output y [B, N − r', D']:
 * [B, N, D'] with every position's row (a merged source gets its
 * destination's). Pure copies, no arithmetic.
 */
export function restore(y: tf.Tensor3D, restoreRows: tf.Tensor1D, n: number): tf.Tensor3D {
  const [batch, , width] = y.shape;
  if (restoreRows.size !== batch * n) throw new RangeError(`restore: restoreRows has ${restoreRows.size} rows, expected ${batch}·${n}`);
  return tf.tidy(() => tf.reshape(takeRows(tf.reshape(y, [-1, width]), restoreRows), [batch, n, width]) as tf.Tensor3D);
}
