/**
 * `verify(graph)` checks the structural invariants every pass must keep:
 * ids equal positions, operands are defined before use, every parameter
 * operand is declared, every stored type equals the inferred one, outputs
 * exist. A violation is a compiler bug, reported as `internal:` with the IR
 * lines around the bad node.
 */

import { operandType, type Graph } from "./graph.ts";
import { arity } from "./ops.ts";
import { irContext } from "./print.ts";
import { inferType } from "./shape.ts";
import { formatType, shapeEq } from "./types.ts";

export class VerifyError extends Error {}

export function verify(g: Graph, after = "graph"): Graph {
  const fail = (id: number, msg: string): never => {
    throw new VerifyError(`internal: after ${after}: %${id}: ${msg}\n${irContext(g, id).join("\n")}`);
  };
  g.nodes.forEach((n, i) => {
    if (n.id !== i) fail(i, `id ${n.id} does not match its position ${i}`);
    const [lo, hi] = arity[n.op];
    if (n.inputs.length < lo || n.inputs.length > hi) fail(i, `${n.op} has ${n.inputs.length} operands`);
    for (const o of n.inputs) {
      if (typeof o === "number" && !(o >= 0 && o < i)) fail(i, `operand %${o} is not defined before use`);
      if (typeof o === "string" && !g.params.has(o)) fail(i, `parameter @${o} is not declared`);
    }
    if (n.op === "merged_size" || n.op === "merged_sources") {
      const src = g.nodes[n.inputs[0] as number];
      if (src?.op !== "turbo_merge") fail(i, `${n.op} must read a turbo_merge, not ${src?.op ?? "a parameter"}`);
      else if (n.op === "merged_sources" && !src.attrs.track) fail(i, "merged_sources reads a turbo_merge that does not track sources");
    }
    if (n.op === "window_restore") {
      const src = g.nodes[n.inputs[1] as number];
      if (src?.op !== "window_merge") fail(i, `window_restore must read a window_merge, not ${src?.op ?? "a parameter"}`);
      else if (operandType(g, src.inputs[0]!).shape[1] !== n.attrs.tokens) fail(i, `window_restore gives ${n.attrs.tokens} tokens but its merge read ${operandType(g, src.inputs[0]!).shape[1]}`);
    }
    if (n.op === "input") {
      if (n.inputs.length !== 0) fail(i, "input has operands");
      return;
    }
    let t;
    try {
      t = inferType(n.op, n.inputs.map((o) => operandType(g, o)), n.attrs as never, g.batch);
    } catch (e) {
      return fail(i, `type inference fails: ${(e as Error).message}`);
    }
    if (t.dtype !== n.type.dtype || !shapeEq(t.shape, n.type.shape)) {
      fail(i, `stored type ${formatType(n.type, g.batch)} differs from inferred ${formatType(t, g.batch)}`);
    }
  });
  const names = new Set<string>();
  for (const o of g.outputs) {
    if (!(o.id >= 0 && o.id < g.nodes.length)) throw new VerifyError(`internal: after ${after}: output ${o.name} refers to missing %${o.id}`);
    if (names.has(o.name)) throw new VerifyError(`internal: after ${after}: output ${o.name} appears twice`);
    names.add(o.name);
  }
  return g;
}
