/**
 * The one graph-rebuilding loop every pass uses: walk the nodes in order,
 * let a rule replace a node (by adding new nodes and returning the operand
 * that stands for it) or copy it with remapped operands. Rules see the new
 * graph being built, so rewrites compose in a single forward walk.
 */

import { CompileError } from "../diagnostics.ts";
import { GraphBuilder, type AnyNode, type Graph, type NodeMeta, type Operand } from "../ir/graph.ts";
import { nodeError } from "../ir/print.ts";
import type { Op, OpAttrs } from "../ir/ops.ts";

export interface RewriteContext {
  /** The new graph being built. */
  readonly b: GraphBuilder;
  /** The meta (location, scope) of the node being rewritten. */
  readonly meta: NodeMeta;
  /** Maps an operand of the old graph to the new graph. */
  map(o: Operand): Operand;
  /** Adds a node in the new graph with the current node's meta. */
  add<K extends Op>(op: K, inputs: readonly Operand[], attrs: OpAttrs[K]): number;
  /** The node behind a new-graph operand, or undefined for a parameter. */
  node(o: Operand): AnyNode | undefined;
}

/** A rule returns the new operand for `n`, or undefined to copy `n` unchanged. */
export type RewriteRule = (n: AnyNode, ctx: RewriteContext) => Operand | undefined;

export function rewrite(g: Graph, rule: RewriteRule): Graph {
  const b = new GraphBuilder(g.name, g.batch);
  for (const [name, p] of g.params) b.param(name, p.shape);
  const mapping = new Map<number, Operand>();
  const map = (o: Operand): Operand => {
    if (typeof o === "string") return o;
    const m = mapping.get(o);
    if (m === undefined) throw new Error(`internal: operand %${o} used before it was rewritten`);
    return m;
  };
  for (const n of g.nodes) {
    const meta = g.meta.get(n.id) ?? {};
    const ctx: RewriteContext = {
      b,
      meta,
      map,
      add: (op, inputs, attrs) => b.add(op, inputs, attrs, meta),
      node: (o) => (typeof o === "number" ? b.nodes[o] : undefined),
    };
    try {
      let out = n.op === "input" ? undefined : rule(n, ctx);
      if (out === undefined) {
        if (n.op === "input") {
          const id = b.nodes.length;
          b.nodes.push({ ...n, id });
          b.meta.set(id, meta);
          out = id;
        } else {
          out = b.add(n.op, n.inputs.map(map), n.attrs as never, meta);
        }
      }
      mapping.set(n.id, out);
    } catch (e) {
      // A user error raised while rewriting a node shows the IR around that node.
      if (e instanceof CompileError && e.context.length === 0) throw nodeError(g, n.id, e.message, e.loc);
      throw e;
    }
  }
  for (const o of g.outputs) {
    const id = map(o.id);
    if (typeof id !== "number") throw new Error(`internal: output ${o.name} became a parameter`);
    b.output(o.name, id);
  }
  return b.build();
}
