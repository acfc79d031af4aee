/**
 * decompose_attention — requires: Turbo already inserted (it needs the
 * high-level `attention` op). Ensures: no `attention` op remains; each became
 *
 *   q·(1/√d) → heads [B·h, N, d];  k → [B·h, d, M];  v → [B·h, M, d]
 *   logits = q·kᵀ  (+ log(size) along the key axis when a size operand is given)
 *   o = softmax(logits)·v → [B, N, D]
 *
 * with kᵀ produced by an explicit transpose, so no matmul has a transposed operand.
 */

import type { Operand } from "../ir/graph.ts";
import type { Dim } from "../ir/types.ts";
import { rewrite } from "./_rewrite.ts";
import type { Graph } from "../ir/graph.ts";

export function decomposeAttention(g: Graph): Graph {
  return rewrite(g, (n, ctx) => {
    if (n.op !== "attention") return undefined;
    const [q0, k0, v0, size0] = n.inputs.map(ctx.map) as [Operand, Operand, Operand, Operand | undefined];
    const [bq, nq, width] = ctx.b.type(q0).shape as [Dim, Dim, number];
    const m = ctx.b.type(k0).shape[1]!;
    const h = n.attrs.heads;
    const d = width / h;
    const bk = typeof bq === "number" ? bq * h : { batch: bq.batch * h };
    const heads = (x: Operand, tokens: Dim, perm: number[], last: [Dim, Dim]) => {
      const split = ctx.add("reshape", [x], { shape: [bq, tokens, h, d] });
      const moved = ctx.add("transpose", [split], { perm });
      return ctx.add("reshape", [moved], { shape: [bk, ...last] });
    };
    const q = heads(ctx.add("scale", [q0], { value: 1 / Math.sqrt(d) }), nq, [0, 2, 1, 3], [nq, d]);
    const kT = heads(k0, m, [0, 2, 3, 1], [d, m]);
    const v = heads(v0, m, [0, 2, 1, 3], [m, d]);
    let logits = ctx.add("matmul", [q, kT], {});
    if (size0 !== undefined) {
      const bias = ctx.add("reshape", [ctx.add("log", [size0], {})], { shape: [bq, 1, 1, m] });
      const split = ctx.add("reshape", [logits], { shape: [bq, h, nq, m] });
      logits = ctx.add("reshape", [ctx.add("add", [split, bias], {})], { shape: [bk, nq, m] });
    }
    const o = ctx.add("matmul", [ctx.add("softmax", [logits], {}), v], {});
    const merged = ctx.add("transpose", [ctx.add("reshape", [o], { shape: [bq, h, nq, d] })], { perm: [0, 2, 1, 3] });
    return ctx.add("reshape", [merged], { shape: [bq, nq, width] });
  });
}
