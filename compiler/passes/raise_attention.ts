/**
 * raise_attention — requires: a shape-inferred graph without dead nodes.
 * Ensures: every multi-head attention a user wrote from the DSL's primitives
 * is the one high-level `attention` op the later passes know (insert_turbo
 * places its merges by it), with the same meaning; anything that only looks
 * like attention is left exactly as written, with a note saying why.
 *
 * Recognised (spec/turbo.md, "Attention recognised from primitives"): from a
 * `softmax` back to a `matmul` (q·kᵀ) through movement ops, `scale`s and
 * additive biases, forward to a `matmul` with the probabilities on the left
 * (·v). Each of q, k and v is followed back through movement ops (and, for q
 * and k, `scale`s) to its source [B, T, D]. Every movement is replayed on a
 * symbolic *layout*: each axis is a list of atoms, an atom being a strided
 * piece of one axis of a source. So `einsum`/`rearrange` spellings, an
 * explicit transpose of k before or after the head split, heads batched into
 * [B·h, …], and sizes read from `x.shape` all come down to the same checks:
 *
 * - q·kᵀ contracts the stride-1 piece d of both widths (the head width);
 *   the head atom (stride d) and the batch pair up on both sides;
 * - the product of the scales is 1/√d (before, after, split between q and k);
 * - softmax runs over the key tokens, and ·v contracts exactly those;
 * - the result is joined back into [B, N, (h d)] with the heads outermost;
 * - no intermediate value is used outside the attention.
 */

import type { AnyNode, Graph, Operand } from "../ir/graph.ts";
import { users } from "../ir/graph.ts";
import { shapeEq, type Dim, type Shape } from "../ir/types.ts";
import { dce } from "./dce.ts";
import { rewrite, type RewriteContext } from "./_rewrite.ts";

/** `size` consecutive indices, `stride` apart, of axis `axis` of the source node `src`; the batch atom has size "B". */
interface Atom {
  readonly src: number;
  readonly axis: number;
  readonly size: number | "B";
  readonly stride: number;
}

/** A tensor's axes, each the atoms it is made of, outermost first (size-1 atoms are left out). */
type Layout = readonly (readonly Atom[])[];

/** Raised: the output node, its attention operands and the bias terms to add. */
interface Raised {
  readonly output: number;
  readonly q: Operand;
  readonly k: Operand;
  readonly v: Operand;
  readonly heads: number;
  readonly biases: readonly BiasTerm[];
}

/** An additive term on the logits: the operand, the logits' shape and layout where it was added, its coefficient. */
interface BiasTerm {
  readonly operand: Operand;
  readonly shape: Shape;
  readonly layout: Layout;
  readonly coefficient: number;
  /** Canonical position of each flattened atom of `layout`: 0 batch, 1 heads, 2 query, 3 key. */
  readonly roles: readonly number[];
}

class Miss extends Error {}
const miss = (why: string): never => {
  throw new Miss(why);
};

const movement = new Set(["reshape", "transpose"]);

/** Merges neighbouring atoms that are contiguous pieces of one axis. */
function normalise(axis: readonly Atom[]): Atom[] {
  const out: Atom[] = [];
  for (const a of axis) {
    const last = out[out.length - 1];
    if (last !== undefined && last.src === a.src && last.axis === a.axis && typeof last.size === "number" && typeof a.size === "number" && last.stride === a.stride * a.size) {
      out[out.length - 1] = { ...a, size: last.size * a.size };
    } else out.push(a);
  }
  return out;
}

/** The layout after a reshape to `target`, or undefined when an axis would cut an atom unevenly. */
function reshapeLayout(layout: Layout, target: Shape): Layout | undefined {
  const queue = layout.flat();
  const out: Atom[][] = [];
  for (const d of target) {
    const axis: Atom[] = [];
    let needBatch = typeof d !== "number";
    let need = typeof d === "number" ? d : d.batch;
    while (need > 1 || needBatch) {
      const a = queue.shift();
      if (a === undefined) return undefined;
      if (a.size === "B") {
        if (!needBatch) return undefined;
        needBatch = false;
        axis.push(a);
      } else if (need === 1) {
        return undefined;
      } else if (a.size <= need) {
        if (need % a.size !== 0) return undefined;
        need /= a.size;
        axis.push(a);
      } else {
        if (a.size % need !== 0) return undefined;
        const inner = a.size / need;
        axis.push({ ...a, size: need, stride: a.stride * inner });
        queue.unshift({ ...a, size: inner });
        need = 1;
      }
    }
    out.push(normalise(axis));
  }
  return queue.length === 0 ? out : undefined;
}

function sourceLayout(g: Graph, src: number): Layout {
  const [, t, d] = g.nodes[src]!.type.shape as [Dim, number, number];
  const axes: Atom[][] = [[{ src, axis: 0, size: "B", stride: 1 }], [], []];
  if (t > 1) axes[1]!.push({ src, axis: 1, size: t, stride: 1 });
  if (d > 1) axes[2]!.push({ src, axis: 2, size: d, stride: 1 });
  return axes;
}

const isStream = (g: Graph, id: number) => {
  const s = g.nodes[id]!.type.shape;
  return s.length === 3 && typeof s[0] !== "number" && s[0]!.batch === 1 && typeof s[1] === "number" && typeof s[2] === "number";
};

/** One of q, k, v: its source [B, T, D], the chain of nodes from it to the matmul operand, the product of its scales. */
interface Side {
  readonly source: Operand;
  readonly chain: readonly number[];
  readonly factor: number;
  readonly layout: Layout;
}

/** Follows a matmul operand back through movement ops (and scales, when allowed) to a [B, T, D] source. */
function side(g: Graph, operand: Operand, name: string, scales: boolean): Side {
  const back: number[] = [];
  let cur = operand;
  while (typeof cur === "number") {
    const n = g.nodes[cur]!;
    if (!movement.has(n.op) && !(scales && n.op === "scale")) break;
    back.push(cur);
    cur = n.inputs[0]!;
  }
  // The source is the first [B, T, D] value on the way from where the walk stopped.
  let chain = back.reverse();
  if (typeof cur !== "number" || !isStream(g, cur)) {
    const at = chain.findIndex((id) => isStream(g, id));
    if (at < 0) miss(`${name} is not a [batch, tokens, width] tensor before its head split`);
    cur = chain[at]!;
    chain = chain.slice(at + 1);
  }
  let layout = sourceLayout(g, cur);
  let factor = 1;
  for (const id of chain) {
    const n = g.nodes[id]!;
    if (n.op === "scale") factor *= n.attrs.value;
    else layout = replay(g, n, layout, `the head split of ${name}`);
  }
  return { source: cur, chain, factor, layout };
}

/** The layout after a movement node. */
function replay(g: Graph, n: AnyNode, layout: Layout, what: string): Layout {
  if (n.op === "transpose") return n.attrs.perm.map((p) => layout[p]!);
  if (n.op === "reshape") {
    const out = reshapeLayout(layout, n.attrs.shape);
    if (out === undefined) miss(`${what} cannot be followed: reshape %${n.id} to ${JSON.stringify(n.attrs.shape.map((d) => (typeof d === "number" ? d : "B")))} cuts an axis`);
    return out!;
  }
  return miss(`internal: ${n.op} is not a movement op`);
}

const same = (a: readonly Atom[], b: readonly Atom[]) =>
  a.length === b.length && a.every((x, i) => x.src === b[i]!.src && x.axis === b[i]!.axis && x.size === b[i]!.size && x.stride === b[i]!.stride);

/** Where a note says it is: the block scope, else the source line. */
function place(g: Graph, id: number): string {
  const meta = g.meta.get(id);
  if (meta?.scope !== undefined) return `block ${meta.scope}`;
  if (meta?.loc !== undefined) return `attention at ${meta.loc.file.split("/").pop()}:${meta.loc.line}`;
  return `attention at softmax %${id}`;
}

/** Whether a value is a matmul seen through movement ops, scales and adds (memoised: adds branch). */
function reachesMatmul(g: Graph, o: Operand, memo: Map<number, boolean>): boolean {
  if (typeof o !== "number") return false;
  const known = memo.get(o);
  if (known !== undefined) return known;
  const n = g.nodes[o]!;
  let r = n.op === "matmul";
  if (movement.has(n.op) || n.op === "scale") r = reachesMatmul(g, n.inputs[0]!, memo);
  else if (n.op === "add") r = n.inputs.some((i) => reachesMatmul(g, i, memo));
  memo.set(o, r);
  return r;
}

/** Walks back from a softmax to the q·kᵀ matmul: the chain in forward order (matmul first), or undefined when there is none. */
function logitsChain(g: Graph, softmax: AnyNode, memo: Map<number, boolean>): number[] | undefined {
  const chain: number[] = [];
  let cur: Operand = softmax.inputs[0]!;
  if (!reachesMatmul(g, cur, memo)) return undefined;
  for (;;) {
    const n = g.nodes[cur as number]!;
    chain.push(n.id);
    if (n.op === "matmul") return chain.reverse();
    cur = n.op === "add" ? n.inputs.find((i) => reachesMatmul(g, i, memo))! : n.inputs[0]!;
  }
}

/** Walks forward from the softmax through movement ops to a matmul that has the probabilities on its left. */
function probsChain(g: Graph, use: Map<number, number[]>, from: number): number[] | undefined {
  for (const u of use.get(from) ?? []) {
    const n = g.nodes[u]!;
    if (n.op === "matmul" && n.inputs[0] === from) return [u];
    if (movement.has(n.op)) {
      const rest = probsChain(g, use, u);
      if (rest !== undefined) return [u, ...rest];
    }
  }
  return undefined;
}

type Role = "b" | "h" | "n" | "m" | "d" | "?";

/** Recognises one attention around `softmax`; throws Miss with the reason when it is a near miss. */
function recognise(g: Graph, use: Map<number, number[]>, softmax: AnyNode, logits: number[], probs: number[]): { raised: Raised; note: string } {
  const m1 = g.nodes[logits[0]!]! as AnyNode & { op: "matmul" };
  const m2 = g.nodes[probs[probs.length - 1]!]! as AnyNode & { op: "matmul" };
  const x = side(g, m1.inputs[0]!, "the left operand of q·kᵀ", true);
  const y = side(g, m1.inputs[1]!, "the right operand of q·kᵀ", true);
  const v = side(g, m2.inputs[1]!, "v", false);
  const srcOf = (s: Side) => s.source as number;
  if (srcOf(x) === srcOf(y)) miss("q and k are the same value, so the query and key axes cannot be told apart");

  // q·kᵀ: the contracted axis is the stride-1 piece d of both widths.
  const rank = x.layout.length;
  const [inX, inY] = [x.layout[rank - 1]!, y.layout[rank - 2]!];
  const widthX = g.nodes[srcOf(x)]!.type.shape[2] as number;
  const widthY = g.nodes[srcOf(y)]!.type.shape[2] as number;
  const widthV = g.nodes[srcOf(v)]!.type.shape[2] as number;
  const contractsWidth = (axis: readonly Atom[], s: Side, width: number) =>
    (axis.length === 1 && axis[0]!.src === srcOf(s) && axis[0]!.axis === 2 && axis[0]!.stride === 1) || (axis.length === 0 && width === 1);
  if (!contractsWidth(inX, x, widthX) || !contractsWidth(inY, y, widthY)) miss("q·kᵀ does not contract the head width (the innermost piece of q's and k's width)");
  const d = inX.length === 0 ? 1 : (inX[0]!.size as number);
  if ((inY.length === 0 ? 1 : inY[0]!.size) !== d) miss("q and k are split into heads of different widths");
  if (widthX !== widthY || widthX !== widthV) miss(`q, k and v have different widths (${widthX}, ${widthY}, ${widthV})`);
  const width = widthX;
  const heads = width / d;
  if (!Number.isInteger(heads)) miss(`the head width ${d} does not divide the width ${width}`);

  const tokens = (s: Side) => g.nodes[srcOf(s)]!.type.shape[1] as number;
  const role = (a: Atom, key: number | undefined): Role => {
    if (a.size === "B") return "b";
    const s = g.nodes[a.src]!;
    if (a.axis === 1 && a.stride === 1 && a.size === s.type.shape[1]) return key === undefined ? "?" : a.src === key ? "m" : "n";
    if (a.axis === 2 && a.stride === d && a.size === heads) return "h";
    if (a.axis === 2 && a.stride === 1 && a.size === d) return "d";
    return "?";
  };
  const roles = (axes: readonly (readonly Atom[])[], key?: number) => axes.map((ax) => ax.map((a) => role(a, key)).join(" ")).join(",");
  const wantBatch = [["b"], ...(heads > 1 ? [["h"]] : [])];
  const batchOk = (axes: readonly (readonly Atom[])[]) => {
    const flat = axes.flatMap((ax) => ax.map((a) => role(a, undefined)));
    return flat.length === wantBatch.length && wantBatch.every(([r]) => flat.filter((f) => f === r).length === 1);
  };
  const batchX = x.layout.slice(0, rank - 2);
  const batchY = y.layout.slice(0, rank - 2);
  if (!batchOk(batchX) || roles(batchX) !== roles(batchY)) miss("q and k are not split into the same heads over the batch");
  const rowsX = x.layout[rank - 2]!;
  const colsY = y.layout[rank - 1]!;
  const tokenAxis = (axis: readonly Atom[], s: Side) => (tokens(s) === 1 ? axis.length === 0 : axis.length === 1 && role(axis[0]!, srcOf(s)) !== "?" && axis[0]!.src === srcOf(s) && axis[0]!.axis === 1);
  if (!tokenAxis(rowsX, x) || !tokenAxis(colsY, y)) miss("q·kᵀ does not pair every query token with every key token");

  // The logits, from q·kᵀ to the softmax: movement, scales and additive terms.
  let layout: Layout = [...batchX, rowsX, colsY];
  let factor = x.factor * y.factor;
  const terms: { operand: Operand; shape: Shape; layout: Layout; factor: number }[] = [];
  for (const id of logits.slice(1)) {
    const n = g.nodes[id]!;
    if (n.op === "scale") factor *= n.attrs.value;
    else if (n.op === "add") {
      const prev = logits[logits.indexOf(id) - 1]!;
      terms.push({ operand: n.inputs[0] === prev ? n.inputs[1]! : n.inputs[0]!, shape: n.type.shape, layout, factor });
    } else layout = replay(g, n, layout, "the logits");
  }
  const axisAt = layout[layout.length - 1]!;
  for (const id of probs.slice(0, -1)) layout = replay(g, g.nodes[id]!, layout, "the probabilities");
  const prank = layout.length;
  const contracted = layout[prank - 1]!;

  // Which side holds the keys: the tokens ·v contracts.
  const vTokens = v.layout[prank - 2]!;
  const keyIsY = same(contracted, colsY) && (colsY.length > 0 || tokens(y) === tokens(v));
  const keyIsX = !keyIsY && same(contracted, rowsX) && rowsX.length > 0;
  if (!keyIsY && !keyIsX) miss("·v does not contract the key tokens of q·kᵀ");
  const [q, k] = keyIsY ? [x, y] : [y, x];
  const [queryAxis, keyAxis] = keyIsY ? [rowsX, colsY] : [colsY, rowsX];
  if (!same(axisAt, keyAxis)) miss(same(axisAt, queryAxis) && queryAxis.length > 0 ? "softmax is over the query axis" : "softmax is not over the key axis");
  if (!batchOk(layout.slice(0, prank - 2)) || roles(layout.slice(0, prank - 2)) !== roles(v.layout.slice(0, prank - 2))) {
    miss("the probabilities and v are not batched over the same heads");
  }
  if (!same(layout[prank - 2]!, queryAxis)) miss("the probabilities' rows are not the query tokens");
  if (!tokenAxis(vTokens, v) || tokens(v) !== tokens(k)) miss("v's tokens are not the keys' tokens");
  if (!contractsWidth(v.layout[prank - 1]!, v, widthV) || (v.layout[prank - 1]!.length === 0 ? 1 : v.layout[prank - 1]![0]!.size) !== d) {
    miss("v is not split into the same heads as q and k");
  }
  const expected = 1 / Math.sqrt(d);
  if (Math.abs(factor / expected - 1) > 1e-5) miss(`the logits are scaled by ${+factor.toPrecision(6)}, not 1/√d_h = ${+expected.toPrecision(6)} (d_h = ${d})`);

  // The output, forward from ·v to [B, N, (h d)] with the heads outermost.
  let out: Layout = [...layout.slice(0, prank - 2), queryAxis, v.layout[prank - 1]!];
  const key = srcOf(k);
  const headJoin = [heads > 1 ? "h" : "", d > 1 ? "d" : ""].filter((r) => r !== "").join(" ");
  const joinedAs = (o: Layout) =>
    o.length === 3 && o[0]!.length === 1 && o[0]![0]!.size === "B" && same(o[1]!, queryAxis) ? o[2]!.map((a) => role(a, key)).join(" ") : undefined;
  let end = m2.id;
  const chainOut: number[] = [];
  for (;;) {
    if (joinedAs(out) === headJoin) break;
    const next = use.get(end) ?? [];
    const n = next.length === 1 ? g.nodes[next[0]!]! : undefined;
    if (n === undefined || !movement.has(n.op)) {
      if (heads > 1 && d > 1 && joinedAs(out) === "d h") miss("the heads are joined as (d h), not (h d)");
      miss(`the heads are not joined back into [batch, tokens, (h d)] (the result's axes are (${roles(out, key).replace(/,/g, ") (")}))`);
    }
    out = replay(g, n!, out, "the head join");
    end = n!.id;
    chainOut.push(end);
  }

  // No value inside may be used outside.
  const inside = new Set([...x.chain, ...y.chain, ...v.chain, ...logits, softmax.id, ...probs, ...chainOut]);
  const outputs = new Set(g.outputs.map((o) => o.id));
  for (const id of inside) {
    if (id === end) continue;
    const leak = (use.get(id) ?? []).find((u) => !inside.has(u));
    if (leak !== undefined || outputs.has(id)) {
      miss(`${g.nodes[id]!.op} %${id} inside the attention is also used outside it (${leak === undefined ? "as an output" : `by ${g.nodes[leak]!.op} %${leak}`})`);
    }
  }

  const position = (a: Atom) => (a.size === "B" ? 0 : role(a, key) === "h" ? 1 : same([a], queryAxis) ? 2 : same([a], keyAxis) ? 3 : -1);
  const biases = terms.map((t) => {
    const flatRoles = t.layout.flat().map(position);
    if (flatRoles.some((r) => r < 0 || r > 3)) miss("an additive term is added where the logits' axes cannot be followed");
    return { operand: t.operand, shape: t.shape, layout: t.layout, coefficient: factor / t.factor, roles: flatRoles };
  });
  const kind = sourceOf(g, q.source) !== undefined && sourceOf(g, q.source) === sourceOf(g, k.source) ? "self-attention" : "cross-attention";
  const extra = biases.length > 0 ? ` with ${biases.length === 1 ? "an additive bias" : `${biases.length} additive biases`}` : "";
  return {
    raised: { output: end, q: q.source, k: k.source, v: v.source, heads, biases },
    note: `${place(g, softmax.id)}: ${kind}${extra} written from primitives, raised to attention[heads=${heads}] (d_h = ${d})`,
  };
}

/** What a projection projects: the input of a `linear`, else the value itself. */
function sourceOf(g: Graph, o: Operand): Operand | undefined {
  if (typeof o !== "number") return o;
  const n = g.nodes[o]!;
  return n.op === "linear" ? n.inputs[0] : o;
}

/** The bias term in the canonical layout [B, h, N, M] (or as is, when it already broadcasts that way). */
function canonicalBias(ctx: RewriteContext, t: BiasTerm, heads: number, q: Operand, k: Operand): Operand {
  let b = ctx.map(t.operand);
  const shape = ctx.b.type(b).shape;
  const want: Shape = [{ batch: 1 }, heads, ctx.b.type(q).shape[1]!, ctx.b.type(k).shape[1]!];
  // As is: every axis of the bias that is not 1 lies on one logits axis of the canonical position it would broadcast to.
  const flat = t.layout.flat();
  const fits = shape.length <= 4 && shape.every((dim, i) => {
    const ax = t.layout[t.layout.length - shape.length + i]!;
    return dim === 1 || (ax.length === 1 && t.roles[flat.indexOf(ax[0]!)] === 4 - shape.length + i);
  });
  if (!fits) {
    // Spread to the logits' shape there, one axis per atom, reorder to [b, h, n, m], regroup.
    if (shape.length < t.shape.length) b = ctx.add("reshape", [b], { shape: [...Array(t.shape.length - shape.length).fill(1), ...shape] });
    if (!shapeEq(ctx.b.type(b).shape, t.shape)) b = ctx.add("broadcast", [b], { shape: t.shape });
    const atoms = t.layout.flat();
    b = ctx.add("reshape", [b], { shape: atoms.map((a) => (a.size === "B" ? { batch: 1 } : a.size)) });
    const perm = atoms.map((_, i) => i).sort((i, j) => t.roles[i]! - t.roles[j]!);
    if (perm.some((p, i) => p !== i)) b = ctx.add("transpose", [b], { perm });
    b = ctx.add("reshape", [b], { shape: want });
  }
  if (t.coefficient !== 1) b = ctx.add("scale", [b], { value: t.coefficient });
  return b;
}

export interface RaiseResult {
  readonly graph: Graph;
  /** One line per attention-like softmax: what was raised, or why it was left as written. */
  readonly notes: readonly string[];
}

export function raiseAttentionWithNotes(g: Graph): RaiseResult {
  const use = users(g);
  const raised = new Map<number, Raised>();
  const notes: string[] = [];
  const memo = new Map<number, boolean>();
  for (const n of g.nodes) {
    if (n.op !== "softmax") continue;
    const logits = logitsChain(g, n, memo);
    const probs = logits === undefined ? undefined : probsChain(g, use, n.id);
    if (logits === undefined || probs === undefined) continue; // not attention-shaped at all
    try {
      const r = recognise(g, use, n, logits, probs);
      raised.set(r.raised.output, r.raised);
      notes.push(r.note);
    } catch (e) {
      if (!(e instanceof Miss)) throw e;
      if (e.message.startsWith("internal:")) throw new Error(e.message);
      notes.push(`${place(g, n.id)}: no merge — ${e.message}`);
    }
  }
  if (raised.size === 0) return { graph: g, notes };
  const out = rewrite(g, (n, ctx) => {
    const r = raised.get(n.id);
    if (r === undefined) return undefined;
    const [q, k, v] = [ctx.map(r.q), ctx.map(r.k), ctx.map(r.v)];
    const terms = r.biases.map((t) => canonicalBias(ctx, t, r.heads, q, k));
    if (terms.length === 0) return ctx.add("attention", [q, k, v], { heads: r.heads });
    const bias = terms.slice(1).reduce((a, b) => ctx.add("add", [a, b], {}), terms[0]!);
    return ctx.add("attention", [q, k, v, bias], { heads: r.heads, bias: true });
  });
  return { graph: dce(out), notes };
}

export function raiseAttention(g: Graph): Graph {
  return raiseAttentionWithNotes(g).graph;
}
