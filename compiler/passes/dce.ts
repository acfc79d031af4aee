/**
 * dce — requires: a verified graph. Ensures: only nodes that an output
 * depends on (plus every model input) remain, and only parameters in use.
 */

import { GraphBuilder, type Graph, type Operand } from "../ir/graph.ts";

export function dce(g: Graph): Graph {
  const live = new Set<number>(g.outputs.map((o) => o.id));
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i]!;
    if (n.op === "input") live.add(i);
    if (!live.has(i)) continue;
    for (const o of n.inputs) if (typeof o === "number") live.add(o);
  }
  const usedParams = new Set<string>();
  for (const n of g.nodes) if (live.has(n.id)) for (const o of n.inputs) if (typeof o === "string") usedParams.add(o);

  const b = new GraphBuilder(g.name, g.batch);
  for (const [name, p] of g.params) if (usedParams.has(name)) b.param(name, p.shape);
  const mapping = new Map<number, number>();
  const map = (o: Operand): Operand => (typeof o === "number" ? mapping.get(o)! : o);
  for (const n of g.nodes) {
    if (!live.has(n.id)) continue;
    const id = b.nodes.length;
    b.nodes.push({ ...n, id, inputs: n.inputs.map(map) } as typeof n);
    const meta = g.meta.get(n.id);
    if (meta !== undefined) b.meta.set(id, meta);
    mapping.set(n.id, id);
  }
  for (const o of g.outputs) b.output(o.name, mapping.get(o.id)!);
  return b.build();
}
