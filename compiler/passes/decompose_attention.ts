/**
 * decompose_attention — requires: Turbo already inserted (it needs the
 * high-level `attention` and `cls_attention` ops). Ensures: neither remains;
 * each attention became
 *
 *   q·(1/√d) → heads [B·h, N, d];  k → [B·h, d, M];  v → [B·h, M, d]
 *   logits = q·kᵀ  (+ the bias when bias=true, + log(size) along the key axis when a size operand is given)
 *   o = softmax(logits)·v → [B, N, D]
 *
 * with kᵀ produced by an explicit transpose, so no matmul has a transposed
 * operand; a class-attention row is the same computation for query 0 only,
 * averaged over heads (its kᵀ is shared with the block's attention by cse).
 */

import type { Graph, Operand } from "../ir/graph.ts";
import type { Dim } from "../ir/types.ts";
import { rewrite, type RewriteContext } from "./_rewrite.ts";

interface Heads {
  b: Dim;
  bh: Dim;
  h: number;
  d: number;
  width: number;
}

function headsOf(ctx: RewriteContext, q: Operand, heads: number): Heads {
  const [b, , width] = ctx.b.type(q).shape as [Dim, Dim, number];
  const d = width / heads;
  return { b, bh: typeof b === "number" ? b * heads : { batch: b.batch * heads }, h: heads, d, width };
}

/** [B, T, D] → [B·h, …last] through [B, T, h, d] and a transpose by `perm`. */
function split(ctx: RewriteContext, x: Operand, hs: Heads, tokens: Dim, perm: number[], last: [Dim, Dim]): number {
  const parts = ctx.add("reshape", [x], { shape: [hs.b, tokens, hs.h, hs.d] });
  return ctx.add("reshape", [ctx.add("transpose", [parts], { perm })], { shape: [hs.bh, ...last] });
}

/**
 * Softmax of logits [B·h, N, M], with the additive bias (broadcasting to
 * [B, h, N, M]) and then log(size) of the keys added first when given.
 */
function probabilities(ctx: RewriteContext, logits: number, size: Operand | undefined, hs: Heads, n: Dim, m: Dim, bias?: Operand): number {
  if (size === undefined && bias === undefined) return ctx.add("softmax", [logits], {});
  const sizeBias = size === undefined ? undefined : ctx.add("reshape", [ctx.add("log", [size], {})], { shape: [hs.b, 1, 1, m] });
  let perHead = ctx.add("reshape", [logits], { shape: [hs.b, hs.h, n, m] });
  if (bias !== undefined) perHead = ctx.add("add", [perHead, bias], {});
  if (sizeBias !== undefined) perHead = ctx.add("add", [perHead, sizeBias], {});
  return ctx.add("softmax", [ctx.add("reshape", [perHead], { shape: [hs.bh, n, m] })], {});
}

/** The bias's row for query `row` when it varies over the queries (axis −2 not 1); else the bias as is. */
function queryRow(ctx: RewriteContext, bias: Operand, row: number): Operand {
  const shape = ctx.b.type(bias).shape;
  if (shape.length < 2 || shape[shape.length - 2] === 1) return bias;
  return ctx.add("slice", [bias], { axis: shape.length - 2, start: row, end: row + 1 });
}

export function decomposeAttention(g: Graph): Graph {
  return rewrite(g, (node, ctx) => {
    if (node.op === "attention") {
      const [q0, k0, v0, ...rest] = node.inputs.map(ctx.map) as [Operand, Operand, Operand, ...Operand[]];
      const bias = node.attrs.bias === true ? rest[0] : undefined;
      const size = rest[node.attrs.bias === true ? 1 : 0];
      const hs = headsOf(ctx, q0, node.attrs.heads);
      const n = ctx.b.type(q0).shape[1]!;
      const m = ctx.b.type(k0).shape[1]!;
      const q = split(ctx, ctx.add("scale", [q0], { value: 1 / Math.sqrt(hs.d) }), hs, n, [0, 2, 1, 3], [n, hs.d]);
      const kT = split(ctx, k0, hs, m, [0, 2, 3, 1], [hs.d, m]);
      const v = split(ctx, v0, hs, m, [0, 2, 1, 3], [m, hs.d]);
      const p = probabilities(ctx, ctx.add("matmul", [q, kT], {}), size, hs, n, m, bias);
      const o = ctx.add("reshape", [ctx.add("matmul", [p, v], {})], { shape: [hs.b, hs.h, n, hs.d] });
      return ctx.add("reshape", [ctx.add("transpose", [o], { perm: [0, 2, 1, 3] })], { shape: [hs.b, n, hs.width] });
    }
    if (node.op === "cls_attention") {
      const [q0, k0, ...rest] = node.inputs.map(ctx.map) as [Operand, Operand, ...Operand[]];
      const size = rest[node.attrs.bias === true ? 1 : 0];
      const hs = headsOf(ctx, q0, node.attrs.heads);
      const m = ctx.b.type(k0).shape[1]!;
      const row = node.attrs.query ?? 0;
      const bias = node.attrs.bias === true ? queryRow(ctx, rest[0]!, row) : undefined;
      const first = ctx.add("scale", [ctx.add("slice", [q0], { axis: 1, start: row, end: row + 1 })], { value: 1 / Math.sqrt(hs.d) });
      const q = split(ctx, first, hs, 1, [0, 2, 1, 3], [1, hs.d]);
      const kT = split(ctx, k0, hs, m, [0, 2, 3, 1], [hs.d, m]);
      const p = probabilities(ctx, ctx.add("matmul", [q, kT], {}), size, hs, 1, m, bias);
      return ctx.add("mean", [ctx.add("reshape", [p], { shape: [hs.b, hs.h, m] })], { axes: [1], keepDims: false });
    }
    return undefined;
  });
}
