/**
 * cse — requires: a verified graph. Ensures: no two nodes compute the same op
 * on the same operands with the same attributes (all ops are pure), so e.g.
 * the q, k and v projections share one flattening reshape.
 */

import type { Graph, Operand } from "../ir/graph.ts";
import { rewrite } from "./_rewrite.ts";

export function cse(g: Graph): Graph {
  const seen = new Map<string, Operand>();
  return rewrite(g, (n, ctx) => {
    const key = `${n.op}|${n.inputs.map((o) => { const m = ctx.map(o); return typeof m === "number" ? `%${m}` : `@${m}`; }).join(",")}|${JSON.stringify(n.attrs)}`;
    const known = seen.get(key);
    if (known !== undefined) return known;
    const id = ctx.add(n.op, n.inputs.map(ctx.map), n.attrs as never);
    seen.set(key, id);
    return id;
  });
}
