/**
 * Turbo's merge step for understanding models (spec/turbo.md, "The merge").
 *
 * Given one encoder block's token states, a similarity metric, the token sizes
 * and the class token's attention row, `turboMerge()` removes r' tokens per
 * sample by bipartite soft matching ranked by the information degree E, and
 * returns the shorter sequence. Every sample loses the same number of tokens,
 * so the result stays rectangular and its shape is known before it runs.
 *
 * Only tfjs-core ops with kernels on both the cpu and wasm backends are used:
 * GatherNd, ScatterNd, BatchMatMul, Max, ArgMax, TopK, Sum, Square, Sqrt,
 * Maximum, Add, Sub, Mul, RealDiv, Neg, IsNan, Select, ClipByValue, Cast,
 * Slice, Concat, Reshape, Range, Identity (and Tile for default provenance).
 * Rows move with GatherNd, never GatherV2: on wasm GatherV2 copies element by
 * element and costs about a hundred times more. Select only ever picks
 * float32 values: the wasm Select kernel writes 4-byte floats whatever the
 * dtype, which corrupts the heap for bool outputs.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { assertCount, mergedCount, protectedSets } from "../../compiler/contract/merged_count.ts";
import { CLASS_DEGREE, DEGREE_LIMIT, NORM_EPSILON, S2_EPSILON } from "../../compiler/contract/merge_constants.ts";
import { rowTable, takeRows } from "./_rows.ts";

export { mergedCount };

/** How the redundancy R and the semantic value I combine into E. */
export type Fusion = "S1" | "S2" | "S3" | "S4";

/** The fusion strategies, in the paper's order. */
export const FUSIONS: readonly Fusion[] = ["S1", "S2", "S3", "S4"];

// The merge's constants are part of the contract: the ONNX rendering uses the same ones.
export { NORM_EPSILON, S2_EPSILON };

/** Options of {@linkcode turboMerge}. */
export interface TurboMergeOptions {
  /** Tokens to remove per sample (Υ of this block); clamped to what can merge. */
  r: number;
  /** Weight α of the semantic value. 0 gives ToMe. @default {5} */
  alpha?: number;
  /** Scale c that brings I (about 1/N) to the size of R. @default {30} */
  scale?: number;
  /** Fusion strategy. @default {"S1"} */
  fusion?: Fusion;
  /** Decay base β of S4. @default {1} */
  beta?: number;
  /** Block γ at which S4 weighs I fully. @default {0} */
  gamma?: number;
  /** Index ℓ of this merging block, counting from 0 (S4 only). @default {0} */
  layer?: number;
  /** Position 0 is a class token: it never merges. @default {true} */
  cls?: boolean;
  /** Position 1 is a distillation token: nothing merges into it. @default {false} */
  distill?: boolean;
  /**
   * Positions 0 … protect − 1 (class, distillation and register tokens) never
   * merge, never receive a token and keep their positions. @default {0}
   */
  protect?: number;
  /**
   * Return `sources`, the provenance matrix reduced like the tokens.
   * @default {inputs.sources !== undefined}
   */
  trackSources?: boolean;
}

/** Inputs of {@linkcode turboMerge}. */
export interface TurboMergeInputs {
  /** Token states [B, N, D]. */
  x: tf.Tensor3D;
  /** Similarity metric [B, N, d] (keys averaged over heads, by default). */
  metric: tf.Tensor3D;
  /** How many original patches each token stands for [B, N, 1]. */
  size: tf.Tensor3D;
  /** Class token's attention row [B, N], or null for plain ToMe. */
  clsAttn: tf.Tensor2D | null;
  /**
   * Provenance [B, N, P]: entry (b, i, p) is 1 when token i stands for
   * original patch p. Defaults to the identity (P = N) when tracking.
   */
  sources?: tf.Tensor3D;
}

/** Result of {@linkcode turboMerge}; the caller owns (and disposes) every tensor. */
export interface TurboMergeResult {
  /** Token states [B, N − r', D]. */
  x: tf.Tensor3D;
  /** Token sizes [B, N − r', 1]. */
  size: tf.Tensor3D;
  /** Provenance [B, N − r', P], only when `trackSources` is on. */
  sources?: tf.Tensor3D;
}

function assertFinite(name: string, value: number): void {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new RangeError(
      `Invalid argument "${name}": expected a finite number, got "${value}"`,
    );
  }
}

function formatShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

function validateInputs(inputs: TurboMergeInputs): [number, number] {
  const { x, metric, size, clsAttn, sources } = inputs;
  const tensors: [string, tf.Tensor | null | undefined][] = [
    ["x", x],
    ["metric", metric],
    ["size", size],
    ["clsAttn", clsAttn],
    ["sources", sources],
  ];
  for (const [name, t] of tensors) {
    if (name === "clsAttn" && t === null) continue;
    if (name === "sources" && t === undefined) continue;
    if (t === null || t === undefined) {
      const expected = name === "clsAttn" ? "a tensor or null" : "a tensor";
      throw new TypeError(`Invalid argument "${name}": expected ${expected}, got "${t}"`);
    }
    if (!(t instanceof tf.Tensor)) {
      throw new TypeError(`Invalid argument "${name}": expected a tensor, got "${typeof t}"`);
    }
    if (t.isDisposed) {
      throw new TypeError(`Invalid argument "${name}": the tensor is disposed`);
    }
    if (t.dtype !== "float32") {
      throw new TypeError(
        `Invalid argument "${name}": expected dtype float32, got "${t.dtype}"`,
      );
    }
  }
  if (x.rank !== 3) {
    throw new TypeError(
      `Invalid argument "x": expected shape [B, N, D], got ${formatShape(x.shape)}`,
    );
  }
  const [b, n] = x.shape;
  if (metric.rank !== 3 || metric.shape[0] !== b || metric.shape[1] !== n) {
    throw new TypeError(
      `Invalid argument "metric": expected shape [${b}, ${n}, d] to match "x" ${
        formatShape(x.shape)
      }, got ${formatShape(metric.shape)}`,
    );
  }
  if (size.rank !== 3 || size.shape[0] !== b || size.shape[1] !== n || size.shape[2] !== 1) {
    throw new TypeError(
      `Invalid argument "size": expected shape [${b}, ${n}, 1] to match "x" ${
        formatShape(x.shape)
      }, got ${formatShape(size.shape)}`,
    );
  }
  if (clsAttn && (clsAttn.rank !== 2 || clsAttn.shape[0] !== b || clsAttn.shape[1] !== n)) {
    throw new TypeError(
      `Invalid argument "clsAttn": expected shape [${b}, ${n}] to match "x" ${
        formatShape(x.shape)
      }, got ${formatShape(clsAttn.shape)}`,
    );
  }
  if (sources && (sources.rank !== 3 || sources.shape[0] !== b || sources.shape[1] !== n)) {
    throw new TypeError(
      `Invalid argument "sources": expected shape [${b}, ${n}, P] to match "x" ${
        formatShape(x.shape)
      }, got ${formatShape(sources.shape)}`,
    );
  }
  return [b, n];
}

/** An int32 scalar: a plain number would promote int32 arithmetic to float32. */
function int(value: number): tf.Scalar {
  return tf.scalar(value, "int32");
}

/** The identity provenance [B, N, N]: every token stands for itself. */
function identitySources(b: number, n: number): tf.Tensor3D {
  return tf.tidy(() => tf.tile(tf.reshape(tf.eye(n), [1, n, n]), [b, 1, 1]) as tf.Tensor3D);
}

/**
 * Merge r' = {@linkcode mergedCount}(N, r) tokens of every sample into their
 * most similar partner, choosing the tokens with the highest information
 * degree E (spec/turbo.md):
 *
 * 1. m = metric / ‖metric‖; A = even positions, B = odd positions.
 * 2. R_a = max_b cos(m_a, m_b), dst_a = the first b reaching it.
 * 3. E_a from R_a and I_a = clsAttn at a by the fusion S1–S4
 *    (E = R when clsAttn is null, or when α = 0 for S1, S3 and S4).
 * 4. The r' tokens of A with the highest E (ties: lower position first; the
 *    class token never) merge into their dst by size-weighted average.
 * 5. Output: unmerged A in order, then B in order; every protected token
 *    (class, distillation, registers) keeps its original position for the next block.
 *
 * With r' = 0 the result equals the input in its original order. Inputs are
 * not disposed; every returned tensor is new and owned by the caller.
 *
 * @example
 * ```ts
 * const out = turboMerge({ x, metric, size, clsAttn }, { r: 16 });
 * out.x.shape; // [B, N − 16, D]
 * ```
 */
export function turboMerge(
  inputs: TurboMergeInputs,
  options: TurboMergeOptions,
): TurboMergeResult {
  const [batch, n] = validateInputs(inputs);
  if (options === null || typeof options !== "object") {
    throw new TypeError(`Invalid argument "options": expected an object, got "${options}"`);
  }
  const {
    r,
    alpha = 5,
    scale = 30,
    fusion = "S1",
    beta = 1,
    gamma = 0,
    layer = 0,
    cls = true,
    distill = false,
    protect = 0,
  } = options;
  assertCount("r", r);
  assertCount("protect", protect);
  assertFinite("alpha", alpha);
  assertFinite("scale", scale);
  assertFinite("beta", beta);
  assertFinite("gamma", gamma);
  assertFinite("layer", layer);
  if (!FUSIONS.includes(fusion)) {
    throw new TypeError(
      `Invalid argument "fusion": expected "S1", "S2", "S3" or "S4", got "${fusion}"`,
    );
  }
  const attentionWeight = Math.pow(beta, Math.abs(gamma - layer));
  if (!Number.isFinite(attentionWeight)) {
    throw new RangeError(
      `Invalid argument "beta": expected beta^|gamma − layer| to be finite, got "${attentionWeight}"`,
    );
  }
  const track = options.trackSources ?? inputs.sources !== undefined;
  const merged = mergedCount(n, r, { cls, distill, protect });
  const guarded = protectedSets({ cls, distill, protect });

  // tf.tidy keeps the returned tensors and disposes everything else.
  const [mergedX, mergedSize, mergedSources] = tf.tidy((): tf.Tensor3D[] => {
    if (merged === 0) {
      const copies = [tf.clone(inputs.x), tf.clone(inputs.size)];
      if (track) copies.push(inputs.sources ? tf.clone(inputs.sources) : identitySources(batch, n));
      return copies;
    }
    const sources = track ? (inputs.sources ?? identitySources(batch, n)) : null;
    if (batch === 0) {
      // Nothing to compare; only the shapes change.
      const empty = (channels: number) => tf.zeros([0, n - merged, channels]) as tf.Tensor3D;
      const out = [empty(inputs.x.shape[2]), empty(1)];
      if (sources) out.push(empty(sources.shape[2]));
      return out;
    }
    return mergeTokens({ ...inputs, sources }, {
      batch,
      n,
      merged,
      alpha,
      scale,
      fusion,
      attentionWeight,
      guardedA: guarded.a,
      guardedB: guarded.b,
    });
  });
  return mergedSources
    ? { x: mergedX, size: mergedSize, sources: mergedSources }
    : { x: mergedX, size: mergedSize };
}

interface MergePlan {
  batch: number;
  n: number;
  merged: number;
  alpha: number;
  scale: number;
  fusion: Fusion;
  /** β^|γ − ℓ| of S4. */
  attentionWeight: number;
  /** The first `guardedA` tokens of A and `guardedB` of B are protected. */
  guardedA: number;
  guardedB: number;
}

/**
 * The output rows: kept A then B, except that every protected token keeps its
 * original position (so the next block finds the class, distillation and
 * register tokens where it protects them). Protected tokens are the first
 * `guardedA` kept A rows and the first `guardedB` B rows.
 */
function outputOrder(
  keptRows: tf.Tensor,
  newBRows: tf.Tensor,
  o: { batch: number; kept: number; nB: number; guardedA: number; guardedB: number },
): tf.Tensor {
  if (o.guardedB === 0) return tf.concat([keptRows, newBRows], 1);
  // Fill output slots in order: a protected token at its own position, else
  // the next unprotected kept A token, then the unprotected B tokens.
  const runs: { from: "A" | "B"; start: number; length: number }[] = [];
  const take = (from: "A" | "B", start: number) => {
    const last = runs[runs.length - 1];
    if (last !== undefined && last.from === from && last.start + last.length === start) last.length++;
    else runs.push({ from, start, length: 1 });
  };
  let a = o.guardedA;
  let b = o.guardedB;
  for (let slot = 0; slot < o.kept + o.nB; slot++) {
    if (slot % 2 === 0 && slot / 2 < o.guardedA) take("A", slot / 2);
    else if (slot % 2 === 1 && (slot - 1) / 2 < o.guardedB) take("B", (slot - 1) / 2);
    else if (a < o.kept) take("A", a++);
    else take("B", b++);
  }
  return tf.concat(runs.map((r) => tf.slice(r.from === "A" ? keptRows : newBRows, [0, r.start], [o.batch, r.length])), 1);
}

/** Body of {@linkcode turboMerge} for r' > 0; runs inside its tf.tidy. */
function mergeTokens(
  inputs: Omit<TurboMergeInputs, "sources"> & { sources: tf.Tensor3D | null },
  plan: MergePlan,
): tf.Tensor3D[] {
  const { x, metric, size, clsAttn, sources } = inputs;
  const { batch, n, merged, alpha, scale, fusion, guardedA, guardedB } = plan;
  const nA = Math.ceil(n / 2);
  const nB = Math.floor(n / 2);
  const kept = nA - merged;
  const width = x.shape[2];

  // Row numbers into the [B·N, ·] views of the inputs, int32 [B, ·]; those
  // that depend only on the shapes are built here rather than by kernels.
  const rowBase = rowTable(batch, 1, (b) => b * n); // first row of each sample
  const rowsA = rowTable(batch, nA, (b, a) => b * n + 2 * a);
  const rowsB = rowTable(batch, nB, (b, j) => b * n + 2 * j + 1);

  // 1–2. Cosine similarity between the sets; best partner in B (first max).
  const metricRows = tf.reshape(metric, [batch * n, metric.shape[2]]);
  const norm = tf.sqrt(tf.sum(tf.square(metricRows), 1, true));
  const unit = tf.div(metricRows, tf.maximum(norm, NORM_EPSILON));
  const unitA = tf.reshape(takeRows(unit, rowsA), [batch, nA, -1]);
  const unitB = tf.reshape(takeRows(unit, rowsB), [batch, nB, -1]);
  let scores: tf.Tensor3D = tf.matMul(unitA, unitB, false, true); // [B, nA, nB]
  if (guardedB > 0) {
    const column = new Float32Array(nB);
    column.fill(-Infinity, 0, guardedB); // protected tokens of B are never destinations
    scores = tf.add(scores, tf.tensor1d(column));
  }
  const redundancy: tf.Tensor2D = tf.max(scores, 2); // R, [B, nA]
  const destination: tf.Tensor2D = tf.argMax(scores, 2); // dst, [B, nA]

  // 3. Information degree E.
  let degree = redundancy;
  if (clsAttn !== null && (fusion === "S2" || alpha !== 0)) {
    const value = tf.reshape(takeRows(tf.reshape(clsAttn, [batch * n]), rowsA), [batch, nA]); // I
    switch (fusion) {
      case "S1":
        degree = tf.sub(redundancy, tf.mul(value, alpha * scale));
        break;
      case "S2":
        degree = tf.div(redundancy, tf.add(tf.mul(value, scale), S2_EPSILON));
        break;
      case "S3":
        degree = tf.mul(redundancy, tf.sub(1, tf.mul(value, alpha * scale)));
        break;
      case "S4":
        degree = tf.sub(redundancy, tf.mul(value, plan.attentionWeight * alpha * scale));
        break;
    }
  }
  degree = tf.where(tf.isNaN(degree), -DEGREE_LIMIT, degree);
  degree = tf.clipByValue(degree, -DEGREE_LIMIT, DEGREE_LIMIT);
  if (guardedA > 0) {
    const column = new Float32Array(nA);
    column.fill(1, 0, guardedA); // protected tokens of A (the class token) never merge
    const isClass = tf.tensor1d(column);
    degree = tf.add(tf.mul(degree, tf.sub(1, isClass)), tf.mul(isClass, CLASS_DEGREE));
  }

  // 4. A in order of E, highest first. TopK breaks ties by lower index on the
  // cpu and wasm backends (checked by the tests); E is finite, so it sorts totally.
  const byDegree = tf.topk(degree, nA, true).indices; // [B, nA]
  const sourceA = tf.slice(byDegree, [0, 0], [batch, merged]);
  // The kept A tokens back in position order: sort their positions ascending.
  // With nothing kept (no protected token, even N, r' = N/2) there is nothing
  // to sort: TopK with k = 0 divides by zero on the wasm backend.
  const keptA = kept === 0 ? tf.zeros([batch, 0], "int32") : tf.cast(
    tf.neg(tf.topk(tf.neg(tf.cast(tf.slice(byDegree, [0, merged], [batch, kept]), "float32")), kept, true).values),
    "int32",
  );

  // 5. Size-weighted average into each destination, written as
  // x_d + Σ s_i (x_i − x_d) / S so that a destination that receives nothing
  // keeps its x exactly.
  const xRows = tf.reshape(x, [batch * n, width]);
  const sizeRows = tf.reshape(size, [batch * n, 1]);
  const sourceRows = tf.add(rowBase, tf.mul(sourceA, int(2))); // [B, r']
  const destinationRows = tf.add(rowTable(batch, 1, (b) => b * nA), sourceA);
  const target = tf.reshape(
    takeRows(tf.reshape(destination, [batch * nA]), destinationRows),
    [batch, merged],
  ); // [B, r'], index into B
  // Rows of the [B·nB, ·] B side that receive the sources.
  const targetRows = tf.add(rowTable(batch, 1, (b) => b * nB), target);
  const xB = takeRows(xRows, rowsB); // [B·nB, D]
  const sizeB = takeRows(sizeRows, rowsB); // [B·nB, 1]
  const movingSize = takeRows(sizeRows, sourceRows); // [B·r', 1]
  const movingX = takeRows(xRows, sourceRows); // [B·r', D]
  const pull = tf.mul(movingSize, tf.sub(movingX, takeRows(xB, targetRows)));
  const scatterRows = tf.reshape(targetRows, [-1, 1]);
  const newSizeB = tf.add(sizeB, tf.scatterND(scatterRows, movingSize, [batch * nB, 1]));
  const newXB = tf.add(xB, tf.div(tf.scatterND(scatterRows, pull, [batch * nB, width]), newSizeB));

  // Output rows: kept A then B, read from [original rows; new B rows].
  const keptRows = tf.add(rowBase, tf.mul(keptA, int(2))); // [B, kept]
  const newBRows = rowTable(batch, nB, (b, j) => batch * n + b * nB + j);
  const outRows = outputOrder(keptRows, newBRows, { batch, kept, nB, guardedA, guardedB });
  const shape = (channels: number): [number, number, number] => [batch, n - merged, channels];
  const out = [
    tf.reshape(takeRows(tf.concat([xRows, newXB], 0), outRows), shape(width)) as tf.Tensor3D,
    tf.reshape(takeRows(tf.concat([sizeRows, newSizeB], 0), outRows), shape(1)) as tf.Tensor3D,
  ];
  if (sources) {
    const p = sources.shape[2];
    const provenance = tf.reshape(sources, [batch * n, p]);
    const newSourcesB = tf.add(
      takeRows(provenance, rowsB),
      tf.scatterND(scatterRows, takeRows(provenance, sourceRows), [batch * nB, p]),
    );
    const allSources = tf.concat([provenance, newSourcesB], 0);
    out.push(tf.reshape(takeRows(allSources, outRows), shape(p)) as tf.Tensor3D);
  }
  return out;
}
