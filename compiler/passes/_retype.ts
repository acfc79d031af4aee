/**
 * Re-typing the ops that follow a merge: an op traced with the old token
 * count of its stream (reshape, broadcast, slice, a broadcasting add or mul)
 * is copied with that count replaced by the new one, or refused with a
 * located error where the count cannot be re-derived (a reshape that folds
 * the token axis, a slice past the merged tokens, a per-position parameter).
 * Shared by understanding mode (insert_turbo.ts) and generation mode
 * (insert_generation.ts).
 */

import { CompileError } from "../diagnostics.ts";
import type { AnyNode, Graph, Operand } from "../ir/graph.ts";
import { formatShape, type Dim } from "../ir/types.ts";
import type { RewriteContext } from "./_rewrite.ts";
import type { StreamAxis } from "./_streams.ts";

/** The token count of `o` at its stream axis in the old graph and in the new one, when they differ. */
interface Stale {
  origin: number;
  axis: number;
  before: number;
  after: number;
}

/**
 * A function that copies an old-graph node `n` into the new graph with
 * `inputs` (already mapped), re-deriving its attributes where a stream
 * operand's token count changed. `pass` names the pass in errors;
 * `lastMerge` the scope of the latest merge.
 */
export function retyper(g: Graph, streams: readonly (StreamAxis | undefined)[], pass: string, lastMerge: () => string | undefined): (n: AnyNode, inputs: Operand[], ctx: RewriteContext) => number {
  /** Where a later op cannot follow the merged count: a located error naming the op. */
  const refuse = (n: AnyNode, ctx: RewriteContext, change: Stale, detail: string) =>
    new CompileError(
      `${pass}: ${n.op} traced with ${change.before} tokens, but after the merge in ${lastMerge() ?? "an earlier block"} the token stream has ${change.after}: ${detail}`,
      ctx.meta.loc,
    );

  /** Copies `n` with its attributes re-derived for the new token count of its stream operand. */
  return (n: AnyNode, inputs: Operand[], ctx: RewriteContext): number => {
    let change: Stale | undefined;
    n.inputs.forEach((x, i) => {
      const s = typeof x === "number" ? streams[x] : undefined;
      if (s === undefined || change !== undefined) return;
      const before = g.nodes[x as number]!.type.shape[s.axis];
      const after = ctx.b.type(inputs[i]!).shape[s.axis];
      if (typeof before === "number" && typeof after === "number" && before !== after) change = { origin: s.origin, axis: s.axis, before, after };
    });
    if (change === undefined) return ctx.add(n.op, inputs, n.attrs as never);
    const c: Stale = change;
    const own = streams[n.id];
    const withCount = (shape: readonly Dim[], axis: number) => shape.map((d, i) => (i === axis ? c.after : d));
    try {
      switch (n.op) {
        case "reshape":
          if (own === undefined) throw refuse(n, ctx, c, `this reshape to ${formatShape(n.attrs.shape, g.batch)} folds the token axis into another, so its new shape cannot be derived; keep the token axis whole (reshape only the width) or move the reshape before the first merge`);
          return ctx.add("reshape", inputs, { shape: withCount(n.attrs.shape, own.axis) });
        case "broadcast":
          return ctx.add("broadcast", inputs, { shape: own === undefined ? n.attrs.shape : withCount(n.attrs.shape, own.axis) });
        case "slice": {
          const rank = g.nodes[n.inputs[0] as number]!.type.shape.length;
          const axis = n.attrs.axis < 0 ? n.attrs.axis + rank : n.attrs.axis;
          // The tail x[:, s:N] follows the count; positions below the new count
          // stay (only the protected leading ones keep their tokens, spec/turbo.md).
          if (axis !== c.axis) return ctx.add("slice", inputs, n.attrs);
          if (n.attrs.end === c.before && n.attrs.start < c.after) return ctx.add("slice", inputs, { ...n.attrs, end: c.after });
          if (n.attrs.end <= c.after) return ctx.add("slice", inputs, n.attrs);
          throw refuse(n, ctx, c, `the slice [${n.attrs.start}, ${n.attrs.end}) of the token axis reaches past the ${c.after} merged tokens and is not the tail [s, ${c.before}), so its new range cannot be derived; slice within the first ${c.after} tokens or to the end`);
        }
        case "add":
        case "mul": {
          const rank = n.type.shape.length;
          const fixed = inputs.map((x, i) => {
            const old = n.inputs[i]!;
            if (typeof old === "number" && streams[old]?.origin === c.origin) return x;
            const shape = typeof old === "number" ? g.nodes[old]!.type.shape : g.params.get(old)!.shape;
            const at = c.axis + (shape.length - rank);
            if (at < 0 || shape[at] !== c.before) return x;
            const src = typeof old === "number" ? g.nodes[old]! : undefined;
            if (src?.op === "broadcast") {
              const inner = src.inputs[0]!;
              const innerShape = typeof inner === "number" ? g.nodes[inner]!.type.shape : g.params.get(inner)!.shape;
              if (innerShape[at] === 1) return ctx.add("broadcast", [ctx.map(inner)], { shape: withCount(src.attrs.shape, at) });
            }
            const what = typeof old === "string" ? `the parameter @${old} (a position embedding?)` : `%${old} (${src?.op})`;
            throw refuse(n, ctx, c, `${what} has one row per traced token, and merged tokens no longer have positions; add it before the first merge`);
          });
          return ctx.add(n.op, fixed, {});
        }
        default:
          return ctx.add(n.op, inputs, n.attrs as never);
      }
    } catch (e) {
      if (e instanceof CompileError && !e.message.startsWith(`${pass}:`)) throw refuse(n, ctx, c, e.message);
      throw e;
    }
  };
}
