/**
 * The closed op table of the IR. Every op has a typed attribute record; rule
 * tables elsewhere (`{ [K in Op]: … }`) make a missing rule a type error.
 * Operands are listed per op as `inputs`: a number is a node id, a string is a
 * parameter name (printed `@name`).
 */

import type { Shape } from "./types.ts";

/** One line per op: what it computes. Grouped like tinygrad's op list. */
export const opDocs = {
  // ── leaves
  input: "a model input; the batch dimension is symbolic, the rest static",
  // ── elementwise (numpy broadcasting)
  add: "a + b",
  mul: "a · b",
  scale: "x · value, value a compile-time constant",
  gelu: "exact GELU: 0.5·x·(1 + erf(x/√2))",
  log: "natural logarithm",
  sigmoid: "1 / (1 + e^−x) (SiLU is x · sigmoid(x))",
  exp: "e^x",
  sin: "sine (radians)",
  cos: "cosine (radians)",
  gather: "rows of a parameter table [V, D] picked by i32 ids [...] → [..., D] (an embedding lookup)",
  // ── normalisation
  layer_norm: "(x − mean)/√(var + eps) · weight + bias over the last axis",
  softmax: "softmax over the last axis",
  // ── contraction
  linear: "x·W + b over the last axis; W is [in, out], b optional",
  matmul: "a·b over the last two axes, batched over the leading ones; no transposed operands",
  attention:
    "multi-head scaled dot-product attention of projected q [B,N,D], k and v [B,M,D]; with bias=true an additive bias broadcasting to [B,h,N,M] follows v; optional size [B,M,1] (last) adds log(size) to the logits",
  cls_attention:
    "the attention row of query `query` (default 0, the class token) over the keys of q [B,N,D], k [B,M,D] (softmax after the additive bias that follows k when bias=true, broadcasting to [B,h,N,M], and the optional log(size) bias, last), averaged over heads → [B,M]",
  // ── Turbo (spec/turbo.md)
  turbo_merge:
    "merges r tokens of x [B,N,D] by information degree; operands x, metric [B,N,d], size [B,N,1], then cls_attn [B,N] (unless ToMe-only), then sources [B,N,P] (when track)",
  merged_size: "the sizes [B,N',1] produced by the turbo_merge operand",
  merged_sources: "the provenance [B,N',P] produced by the turbo_merge operand; second operand: its sources input",
  window_merge:
    "generation mode: merges r of the N tokens of x [B,N,D] (a rows×cols grid) into one destination per window; operands x, metric [B,N,d], then semantic [B,N] (when semantic)",
  window_restore: "generation mode: y [B,N',D'] back to the `tokens` positions of the window_merge operand's input (a merged token gets its destination's row); operands y, the window_merge",
  fill: "a constant tensor of the given shape (e.g. initial sizes of 1)",
  eye: "identity matrices [.., n, n] (initial provenance: each token stands for itself)",
  // ── movement
  reshape: "same elements, new shape",
  transpose: "permute axes",
  concat: "join along an axis",
  slice: "the range [start, end) of one axis",
  broadcast: "repeat size-1 axes up to a shape (e.g. a parameter over the batch)",
  // ── reduction
  mean: "mean over the given axes, keeping them as size 1 when keepDims",
  sum: "sum over the given axes, keeping them as size 1 when keepDims",
  max: "maximum over the given axes, keeping them as size 1 when keepDims",
} as const;

export type Op = keyof typeof opDocs;
export const opNames = Object.keys(opDocs) as Op[];

/** Attributes of a Turbo merge: the block's scheduled r' and the rule's constants. */
export interface TurboMergeAttrs {
  /** Tokens this merge removes (already clamped by the schedule and threshold). */
  readonly r: number;
  readonly alpha: number;
  readonly scale: number;
  readonly fusion: "S1" | "S2" | "S3" | "S4";
  readonly beta: number;
  readonly gamma: number;
  /** Index ℓ of this merging block, from 0. */
  readonly layer: number;
  readonly cls: boolean;
  readonly distill: boolean;
  /** Positions 0 … protect − 1 (class, distillation, register tokens) never merge or receive and keep their places. */
  readonly protect: number;
  /** A cls_attn operand is present (semantic value); false for plain ToMe. */
  readonly semantic: boolean;
  /** A sources operand is present and merged_sources may read the result. */
  readonly track: boolean;
}

/** Attributes of a generation-mode merge (spec/turbo.md, "Generation mode"). */
export interface WindowMergeAttrs {
  /** Sources merged per sample (already clamped to the sources). */
  readonly r: number;
  /** The token grid [rows, columns]; rows·columns = N. */
  readonly grid: readonly number[];
  /** The window [sy, sx] that holds one destination. */
  readonly window: readonly number[];
  /** Seed of the destination inside each window. */
  readonly seed: number;
  readonly alpha: number;
  readonly scale: number;
  /** A semantic operand is present. */
  readonly semantic: boolean;
}

/** Attributes of each op. */
export interface OpAttrs {
  input: { readonly name: string };
  add: Record<string, never>;
  mul: Record<string, never>;
  scale: { readonly value: number };
  gelu: Record<string, never>;
  log: Record<string, never>;
  sigmoid: Record<string, never>;
  exp: Record<string, never>;
  sin: Record<string, never>;
  cos: Record<string, never>;
  gather: Record<string, never>;
  layer_norm: { readonly eps: number };
  softmax: Record<string, never>;
  linear: Record<string, never>;
  matmul: Record<string, never>;
  /** `bias`: operand 3 is an additive bias on the logits (present only when true). */
  attention: { readonly heads: number; readonly bias?: boolean };
  /** `query`: the position whose row is taken (default 0, the class token). */
  cls_attention: { readonly heads: number; readonly query?: number; readonly bias?: boolean };
  turbo_merge: TurboMergeAttrs;
  merged_size: Record<string, never>;
  merged_sources: Record<string, never>;
  window_merge: WindowMergeAttrs;
  /** `tokens`: N, the merge's input token count. */
  window_restore: { readonly tokens: number };
  fill: { readonly shape: Shape; readonly value: number };
  eye: { readonly shape: Shape };
  reshape: { readonly shape: Shape };
  transpose: { readonly perm: readonly number[] };
  concat: { readonly axis: number };
  slice: { readonly axis: number; readonly start: number; readonly end: number };
  broadcast: { readonly shape: Shape };
  mean: { readonly axes: readonly number[]; readonly keepDims: boolean };
  sum: { readonly axes: readonly number[]; readonly keepDims: boolean };
  max: { readonly axes: readonly number[]; readonly keepDims: boolean };
}

/** Operand counts: [min, max] inputs per op. */
export const arity: { readonly [K in Op]: readonly [number, number] } = {
  input: [0, 0],
  add: [2, 2],
  mul: [2, 2],
  scale: [1, 1],
  gelu: [1, 1],
  log: [1, 1],
  sigmoid: [1, 1],
  exp: [1, 1],
  sin: [1, 1],
  cos: [1, 1],
  gather: [2, 2],
  layer_norm: [3, 3],
  softmax: [1, 1],
  linear: [2, 3],
  matmul: [2, 2],
  attention: [3, 5],
  cls_attention: [2, 4],
  turbo_merge: [3, 5],
  merged_size: [1, 1],
  merged_sources: [2, 2],
  window_merge: [2, 3],
  window_restore: [2, 2],
  fill: [0, 0],
  eye: [0, 0],
  reshape: [1, 1],
  transpose: [1, 1],
  concat: [1, Infinity],
  slice: [1, 1],
  broadcast: [1, 1],
  mean: [1, 1],
  sum: [1, 1],
  max: [1, 1],
};
