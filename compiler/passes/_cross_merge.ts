/**
 * Fusion-layer merging (spec/turbo.md, "Dual-stream"): which cross-attentions
 * merge their context, what that context is, and each one's Υ. The merge
 * itself is inserted by insert_turbo.ts with the same rule as a block's.
 */

import { CompileError } from "../diagnostics.ts";
import type { Graph, Operand } from "../ir/graph.ts";

function bad(message: string): CompileError {
  return new CompileError(`insertTurbo: option cross: ${message}`);
}

/**
 * The cross-attentions whose keys are on the merged stream (`merged`) and
 * that a later cross-attention over the same context follows, with the
 * context tensor their keys and values project.
 */
export function crossAttentions(g: Graph, merged: (x: Operand) => boolean): { attention: number; context: number; scope: string }[] {
  const found: { attention: number; context: number; scope: string }[] = [];
  for (const n of g.nodes) {
    if (n.op !== "attention" || !merged(n.inputs[1]!) || merged(n.inputs[0]!)) continue;
    const scope = g.meta.get(n.id)?.scope ?? `%${n.id}`;
    const [k, v] = [n.inputs[1]!, n.inputs[2]!].map((x) => (typeof x === "number" ? g.nodes[x]! : undefined));
    if (k?.op !== "linear" || v?.op !== "linear" || k.inputs[0] !== v.inputs[0] || typeof k.inputs[0] !== "number") {
      throw bad(`the keys and values of the cross-attention ${scope} are not linear projections of one context tensor, so there is no context to merge`);
    }
    found.push({ attention: n.id, context: k.inputs[0], scope });
  }
  // A merge pays only where a later cross-attention reads the same context.
  const merging = found.filter((s, i) => found.slice(i + 1).some((t) => t.context === s.context));
  if (merging.length === 0) throw bad("the model has no two cross-attentions reading the merged tokens, so no later one would read a merged context (fusion-layer merging needs a dual-stream model with at least two fusion blocks)");
  return merging;
}

/** Υ of each of `count` context merges. */
export function resolveCross(r: number | readonly number[], count: number): number[] {
  const list = typeof r === "number" ? Array.from({ length: count }, () => r) : [...r];
  if (list.length !== count) throw bad(`the list has ${list.length} entries but the model has ${count} cross-attentions over the merged tokens`);
  for (const v of list) if (!Number.isInteger(v) || v < 0) throw bad(`${v} must be a non-negative integer`);
  return list;
}
