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
  // ── normalisation
  layer_norm: "(x − mean)/√(var + eps) · weight + bias over the last axis",
  softmax: "softmax over the last axis",
  // ── contraction
  linear: "x·W + b over the last axis; W is [in, out], b optional",
  matmul: "a·b over the last two axes, batched over the leading ones; no transposed operands",
  attention:
    "multi-head scaled dot-product attention of projected q [B,N,D], k and v [B,M,D]; optional size [B,M,1] adds log(size) to the logits",
  // ── movement
  reshape: "same elements, new shape",
  transpose: "permute axes",
  concat: "join along an axis",
  slice: "the range [start, end) of one axis",
  broadcast: "repeat size-1 axes up to a shape (e.g. a parameter over the batch)",
  // ── reduction
  mean: "mean over the given axes, keeping them as size 1 when keepDims",
} as const;

export type Op = keyof typeof opDocs;
export const opNames = Object.keys(opDocs) as Op[];

/** Attributes of each op. */
export interface OpAttrs {
  input: { readonly name: string };
  add: Record<string, never>;
  mul: Record<string, never>;
  scale: { readonly value: number };
  gelu: Record<string, never>;
  log: Record<string, never>;
  layer_norm: { readonly eps: number };
  softmax: Record<string, never>;
  linear: Record<string, never>;
  matmul: Record<string, never>;
  attention: { readonly heads: number };
  reshape: { readonly shape: Shape };
  transpose: { readonly perm: readonly number[] };
  concat: { readonly axis: number };
  slice: { readonly axis: number; readonly start: number; readonly end: number };
  broadcast: { readonly shape: Shape };
  mean: { readonly axes: readonly number[]; readonly keepDims: boolean };
}

/** Operand counts: [min, max] inputs per op. */
export const arity: { readonly [K in Op]: readonly [number, number] } = {
  input: [0, 0],
  add: [2, 2],
  mul: [2, 2],
  scale: [1, 1],
  gelu: [1, 1],
  log: [1, 1],
  layer_norm: [3, 3],
  softmax: [1, 1],
  linear: [2, 3],
  matmul: [2, 2],
  attention: [3, 4],
  reshape: [1, 1],
  transpose: [1, 1],
  concat: [1, Infinity],
  slice: [1, 1],
  broadcast: [1, 1],
  mean: [1, 1],
};
