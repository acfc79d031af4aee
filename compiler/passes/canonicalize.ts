/**
 * canonicalize — requires: no `attention` op (run decompose_attention first).
 * Ensures the lowering-friendly forms (see design.md, the wasm matmul fact):
 *   - every `linear` has a 2-D input [B·N, in] (weights are already [in, out]);
 *   - unary elementwise ops sit before a reshape, not after it;
 *   - no reshape of a reshape, no reshape to the same shape.
 * Dead nodes left behind are removed by the dce that follows in the pipeline.
 */

import type { Graph, Operand } from "../ir/graph.ts";
import { dimProduct, shapeEq } from "../ir/types.ts";
import { rewrite, type RewriteContext } from "./_rewrite.ts";

const unary = new Set(["gelu", "scale", "log", "sigmoid", "exp", "sin", "cos"]);

/** reshape with the two simplifications applied. */
function reshapeTo(ctx: RewriteContext, x: Operand, shape: Graph["nodes"][number]["type"]["shape"]): Operand {
  const src = ctx.node(x);
  const base = src !== undefined && src.op === "reshape" ? src.inputs[0]! : x;
  if (shapeEq(ctx.b.type(base).shape, shape)) return base;
  return ctx.add("reshape", [base], { shape });
}

export function canonicalize(g: Graph): Graph {
  return rewrite(g, (n, ctx) => {
    if (n.op === "linear") {
      const [x, ...rest] = n.inputs.map(ctx.map) as [Operand, ...Operand[]];
      const shape = ctx.b.type(x).shape;
      if (shape.length === 2) return undefined;
      const rows = dimProduct(shape.slice(0, -1));
      if (rows === undefined) return undefined;
      const flat = reshapeTo(ctx, x, [rows, shape[shape.length - 1]!]);
      const y = ctx.add("linear", [flat, ...rest], {});
      return reshapeTo(ctx, y, n.type.shape);
    }
    if (n.op === "reshape") return reshapeTo(ctx, ctx.map(n.inputs[0]!), n.attrs.shape);
    if (unary.has(n.op)) {
      const src = ctx.node(ctx.map(n.inputs[0]!));
      if (src === undefined || src.op !== "reshape") return undefined;
      const inner = ctx.add(n.op as "gelu", [src.inputs[0]!], n.attrs as never);
      return reshapeTo(ctx, inner, n.type.shape);
    }
    return undefined;
  });
}
