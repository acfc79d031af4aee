/**
 * infer_shapes — requires: a graph whose node types may be stale or merely
 * declared (e.g. parsed from text). Ensures: every type is re-inferred from
 * the inputs' declared types; a declared type that disagrees, or an op whose
 * operands do not fit, is a located error naming the op and both shapes.
 */

import { GraphBuilder, type Graph } from "../ir/graph.ts";

export function inferShapes(g: Graph, options: { checkDeclared?: boolean } = {}): Graph {
  const b = new GraphBuilder(g.name, g.batch);
  for (const [name, p] of g.params) b.param(name, p.shape, undefined);
  for (const n of g.nodes) {
    const meta = g.meta.get(n.id) ?? {};
    if (n.op === "input") {
      b.nodes.push({ ...n, id: b.nodes.length });
      b.meta.set(n.id, meta);
      continue;
    }
    b.add(n.op, n.inputs, n.attrs as never, meta, options.checkDeclared ? n.type : undefined);
  }
  for (const o of g.outputs) b.output(o.name, o.id);
  return b.build();
}
