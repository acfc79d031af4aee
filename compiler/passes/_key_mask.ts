/**
 * An additive attention mask over merged keys (spec/turbo.md, "Padding").
 *
 * A mask is traced with the stream's token count on its key axis (its last
 * axis), so after a merge it no longer lines up with the keys. It survives
 * when it is provably zero past the protected prefix: the protected tokens
 * keep their positions through every merge, and a zero term is the same for
 * every key whatever the merge did with it. Such a mask is rebuilt with the
 * new key count as [its first p entries, zeros]. Anything else is refused
 * with a located error by the caller, never computed wrong.
 */

import type { Graph, Operand } from "../ir/graph.ts";
import type { Dim } from "../ir/types.ts";
import type { RewriteContext } from "./_rewrite.ts";

const lastAxisKept = (perm: readonly number[]) => perm[perm.length - 1] === perm.length - 1;

/**
 * Whether the traced tensor `x` is zero at every index ≥ `start` of its
 * last axis, from its definition alone (constants, concats along that
 * axis, reshapes, broadcasts and transposes that keep it last, scales, and
 * sums or products of such tensors). Conservative: false when unsure.
 */
export function zeroPast(g: Graph, x: Operand, start: number): boolean {
  if (typeof x !== "number") return false;
  const n = g.nodes[x]!;
  const shape = n.type.shape;
  const last = shape[shape.length - 1];
  if (typeof last !== "number") return false;
  if (start >= last) return true;
  const sameLast = (o: Operand) => typeof o === "number" && g.nodes[o]!.type.shape.at(-1) === last;
  switch (n.op) {
    case "fill":
      return n.attrs.value === 0;
    case "concat": {
      const axis = n.attrs.axis < 0 ? n.attrs.axis + shape.length : n.attrs.axis;
      if (axis !== shape.length - 1) return n.inputs.every((p) => zeroPast(g, p, start));
      let offset = 0;
      for (const p of n.inputs) {
        if (typeof p !== "number") return false;
        const len = g.nodes[p]!.type.shape.at(-1);
        if (typeof len !== "number") return false;
        if (offset + len > start && !zeroPast(g, p, Math.max(0, start - offset))) return false;
        offset += len;
      }
      return true;
    }
    case "reshape":
    case "broadcast":
    case "scale":
      return sameLast(n.inputs[0]!) && zeroPast(g, n.inputs[0]!, start);
    case "transpose":
      return lastAxisKept(n.attrs.perm) && zeroPast(g, n.inputs[0]!, start);
    case "add":
      return n.inputs.every((o) => sameLast(o) && zeroPast(g, o, start));
    case "mul":
      return n.inputs.some((o) => sameLast(o) && zeroPast(g, o, start));
    default:
      return false;
  }
}

/** The mask `bias` (new graph, last axis of the traced length) rebuilt for `keys` keys: its first `protect` entries, then zeros. */
export function shrinkKeyMask(ctx: RewriteContext, bias: Operand, protect: number, keys: Dim): number {
  const shape = ctx.b.type(bias).shape;
  const axis = shape.length - 1;
  const zeros = ctx.add("fill", [], { shape: [...shape.slice(0, axis), keys as number - protect], value: 0 });
  if (protect === 0) return zeros;
  const kept = ctx.add("slice", [bias], { axis, start: 0, end: protect });
  return ctx.add("concat", [kept, zeros], { axis });
}
