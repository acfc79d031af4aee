/**
 * Shape rules: one function per op, `(operand types, attrs) → result type`.
 * A rule throws `ShapeError` with a message naming the argument and both
 * shapes; the caller prefixes the op name and attaches the source location.
 */

import { mergedCount, windowCounts } from "../contract/merged_count.ts";
import type { Op, OpAttrs } from "./ops.ts";
import { dimEq, dimProduct, formatShape, isBatch, type Dim, type Shape, type TensorType } from "./types.ts";

export class ShapeError extends Error {}

type Rule<K extends Op> = (ts: readonly TensorType[], attrs: OpAttrs[K], batch: string) => Shape;

const fmt = (s: Shape, batch: string) => formatShape(s, batch);

function broadcastShapes(a: Shape, b: Shape, batch: string): Shape {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (dimEq(da, db) || db === 1) out.push(da);
    else if (da === 1) out.push(db);
    else throw new ShapeError(`shapes ${fmt(a, batch)} and ${fmt(b, batch)} do not broadcast`);
  }
  return out;
}

function axis(rank: number, ax: number, what: string): number {
  const a = ax < 0 ? ax + rank : ax;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new ShapeError(`${what} ${ax} is out of range for rank ${rank}`);
  return a;
}

const same = (ts: readonly TensorType[]): Shape => ts[0]!.shape;

/** The shape left by a reduction (mean, sum, max) over `axes`. */
function reduced(s: Shape, a: { readonly axes: readonly number[]; readonly keepDims: boolean }, verb: string): Shape {
  const axes = a.axes.map((x) => axis(s.length, x, "axis"));
  if (new Set(axes).size !== axes.length) throw new ShapeError(`axes [${a.axes.join(",")}] name an axis twice`);
  if (axes.some((x) => isBatch(s[x]!))) throw new ShapeError(`cannot ${verb} over the batch axis`);
  return a.keepDims ? s.map((d, i) => (axes.includes(i) ? 1 : d)) : s.filter((_, i) => !axes.includes(i));
}

const rules: { readonly [K in Op]: Rule<K> } = {
  input: () => {
    throw new ShapeError("an input's type is declared, not inferred");
  },
  add: (ts, _a, batch) => broadcastShapes(ts[0]!.shape, ts[1]!.shape, batch),
  mul: (ts, _a, batch) => broadcastShapes(ts[0]!.shape, ts[1]!.shape, batch),
  scale: (ts, a) => {
    if (!Number.isFinite(a.value)) throw new ShapeError(`value ${a.value} is not a finite number`);
    return ts[0]!.shape;
  },
  gelu: same,
  log: same,
  sigmoid: same,
  exp: same,
  sin: same,
  cos: same,
  gather: (ts, _a, batch) => {
    const [ids, table] = ts as [TensorType, TensorType];
    if (table.shape.length !== 2 || table.shape.some(isBatch)) throw new ShapeError(`the table must be a parameter [V, D], not ${fmt(table.shape, batch)}`);
    return [...ids.shape, table.shape[1]!];
  },
  softmax: same,
  layer_norm: (ts, a, batch) => {
    const [x, w, b] = ts as [TensorType, TensorType, TensorType];
    const width = x.shape[x.shape.length - 1];
    if (width === undefined) throw new ShapeError("input is a scalar");
    for (const [name, t] of [["weight", w], ["bias", b]] as const) {
      if (t.shape.length !== 1 || !dimEq(t.shape[0]!, width)) {
        throw new ShapeError(`${name} has shape ${fmt(t.shape, batch)} but the input width is ${fmt([width], batch)}`);
      }
    }
    if (!(a.eps > 0)) throw new ShapeError(`eps ${a.eps} must be positive`);
    return x.shape;
  },
  linear: (ts, _a, batch) => {
    const [x, w, b] = ts as [TensorType, TensorType, TensorType | undefined];
    if (w.shape.length !== 2) throw new ShapeError(`weight must be 2-D [in, out] but has shape ${fmt(w.shape, batch)}`);
    const width = x.shape[x.shape.length - 1];
    if (width === undefined) throw new ShapeError("input is a scalar");
    if (!dimEq(width, w.shape[0]!)) {
      throw new ShapeError(`input has width ${fmt([width], batch).slice(1, -1)} but the weight expects ${fmt([w.shape[0]!], batch).slice(1, -1)} (input ${fmt(x.shape, batch)}, weight ${fmt(w.shape, batch)})`);
    }
    if (b !== undefined && (b.shape.length !== 1 || !dimEq(b.shape[0]!, w.shape[1]!))) {
      throw new ShapeError(`bias has shape ${fmt(b.shape, batch)} but the weight produces width ${fmt([w.shape[1]!], batch).slice(1, -1)}`);
    }
    return [...x.shape.slice(0, -1), w.shape[1]!];
  },
  matmul: (ts, _a, batch) => {
    const [a, b] = ts as [TensorType, TensorType];
    if (a.shape.length < 2 || a.shape.length !== b.shape.length) {
      throw new ShapeError(`operands must have the same rank ≥ 2 but have shapes ${fmt(a.shape, batch)} and ${fmt(b.shape, batch)}`);
    }
    const r = a.shape.length;
    for (let i = 0; i < r - 2; i++) {
      if (!dimEq(a.shape[i]!, b.shape[i]!)) throw new ShapeError(`batch axes differ: ${fmt(a.shape, batch)} and ${fmt(b.shape, batch)}`);
    }
    if (!dimEq(a.shape[r - 1]!, b.shape[r - 2]!)) {
      throw new ShapeError(`inner dimensions differ: ${fmt(a.shape, batch)} · ${fmt(b.shape, batch)}`);
    }
    return [...a.shape.slice(0, -1), b.shape[r - 1]!];
  },
  attention: (ts, a, batch) => {
    const [q, k, v] = ts as [TensorType, TensorType, TensorType];
    const bias = a.bias === true ? ts[3] : undefined;
    if (a.bias === true && bias === undefined) throw new ShapeError("bias=true needs a bias operand after v");
    if (ts.length > (a.bias === true ? 5 : 4)) throw new ShapeError(`${ts.length} operands need bias=true (q, k, v, bias, size)`);
    const size = ts[a.bias === true ? 4 : 3];
    for (const [name, t] of [["q", q], ["k", k], ["v", v]] as const) {
      if (t.shape.length !== 3) throw new ShapeError(`${name} must be [batch, tokens, width] but has shape ${fmt(t.shape, batch)}`);
    }
    const width = q.shape[2]!;
    if (!dimEq(k.shape[2]!, width) || !dimEq(v.shape[2]!, width)) {
      throw new ShapeError(`q, k and v widths differ: ${fmt(q.shape, batch)}, ${fmt(k.shape, batch)}, ${fmt(v.shape, batch)}`);
    }
    if (!dimEq(k.shape[1]!, v.shape[1]!) || !dimEq(k.shape[0]!, v.shape[0]!) || !dimEq(q.shape[0]!, k.shape[0]!)) {
      throw new ShapeError(`k and v must have the same batch and tokens: ${fmt(k.shape, batch)} and ${fmt(v.shape, batch)}`);
    }
    if (!Number.isInteger(a.heads) || a.heads <= 0) throw new ShapeError(`heads ${a.heads} must be a positive integer`);
    if (typeof width !== "number" || width % a.heads !== 0) {
      throw new ShapeError(`heads ${a.heads} does not divide width ${fmt([width], batch).slice(1, -1)}`);
    }
    if (bias !== undefined) {
      const logits: Shape = [q.shape[0]!, a.heads, q.shape[1]!, k.shape[1]!];
      const s = bias.shape;
      if (s.length > 4 || s.some((d, i) => d !== 1 && !dimEq(d, logits[4 - s.length + i]!))) {
        throw new ShapeError(`bias has shape ${fmt(s, batch)} but must broadcast to the logits ${fmt(logits, batch)}`);
      }
    }
    if (size !== undefined) {
      const want: Shape = [k.shape[0]!, k.shape[1]!, 1];
      if (size.shape.length !== 3 || !want.every((d, i) => dimEq(d, size.shape[i]!))) {
        throw new ShapeError(`size has shape ${fmt(size.shape, batch)} but the keys need ${fmt(want, batch)}`);
      }
    }
    return q.shape;
  },
  cls_attention: (ts, a, batch) => {
    const [q, k] = ts as [TensorType, TensorType];
    const bias = a.bias === true ? ts[2] : undefined;
    if (a.bias === true && bias === undefined) throw new ShapeError("bias=true needs a bias operand after k");
    if (ts.length > (a.bias === true ? 4 : 3)) throw new ShapeError(`${ts.length} operands need bias=true (q, k, bias, size)`);
    const size = ts[a.bias === true ? 3 : 2];
    if (q.shape.length !== 3 || k.shape.length !== 3) throw new ShapeError(`q and k must be [batch, tokens, width] but have shapes ${fmt(q.shape, batch)} and ${fmt(k.shape, batch)}`);
    const width = q.shape[2]!;
    if (!dimEq(width, k.shape[2]!) || !dimEq(q.shape[0]!, k.shape[0]!)) throw new ShapeError(`q ${fmt(q.shape, batch)} and k ${fmt(k.shape, batch)} disagree`);
    if (typeof width !== "number" || !Number.isInteger(a.heads) || a.heads <= 0 || width % a.heads !== 0) {
      throw new ShapeError(`heads ${a.heads} does not divide width ${fmt([width], batch).slice(1, -1)}`);
    }
    if (size !== undefined && !(size.shape.length === 3 && dimEq(size.shape[0]!, k.shape[0]!) && dimEq(size.shape[1]!, k.shape[1]!) && size.shape[2] === 1)) {
      throw new ShapeError(`size has shape ${fmt(size.shape, batch)} but the keys need ${fmt([k.shape[0]!, k.shape[1]!, 1], batch)}`);
    }
    const row = a.query ?? 0;
    if (!Number.isInteger(row) || row < 0 || typeof q.shape[1] !== "number" || row >= q.shape[1]) {
      throw new ShapeError(`query ${row} is not a position of the ${fmt([q.shape[1]!], batch).slice(1, -1)} queries`);
    }
    if (bias !== undefined) {
      const logits: Shape = [q.shape[0]!, a.heads, q.shape[1]!, k.shape[1]!];
      const s = bias.shape;
      if (s.length > 4 || s.some((d, i) => d !== 1 && !dimEq(d, logits[4 - s.length + i]!))) {
        throw new ShapeError(`bias has shape ${fmt(s, batch)} but must broadcast to the logits ${fmt(logits, batch)}`);
      }
    }
    return [k.shape[0]!, k.shape[1]!];
  },
  turbo_merge: (ts, a, batch) => {
    const expected = 3 + (a.semantic ? 1 : 0) + (a.track ? 1 : 0);
    if (ts.length !== expected) throw new ShapeError(`expects ${expected} operands for semantic=${a.semantic}, track=${a.track} but got ${ts.length}`);
    const [x, metric, size] = ts as [TensorType, TensorType, TensorType];
    const cls = a.semantic ? ts[3] : undefined;
    const sources = a.track ? ts[ts.length - 1] : undefined;
    if (x.shape.length !== 3) throw new ShapeError(`x must be [batch, tokens, width] but has shape ${fmt(x.shape, batch)}`);
    const [b, n] = x.shape as [Dim, Dim];
    if (typeof n !== "number") throw new ShapeError("the token axis must be static");
    const lead = (t: TensorType, name: string, rank: number, last?: number) => {
      if (t.shape.length !== rank || !dimEq(t.shape[0]!, b) || !dimEq(t.shape[1]!, n) || (last !== undefined && t.shape[2] !== last)) {
        throw new ShapeError(`${name} has shape ${fmt(t.shape, batch)} but x is ${fmt(x.shape, batch)}`);
      }
    };
    lead(metric, "metric", 3);
    lead(size, "size", 3, 1);
    if (cls !== undefined) lead(cls, "cls_attn", 2);
    if (sources !== undefined) lead(sources, "sources", 3);
    for (const [name, v] of [["r", a.r], ["layer", a.layer], ["protect", a.protect]] as const) {
      if (!Number.isInteger(v) || v < 0) throw new ShapeError(`${name} ${v} must be a non-negative integer`);
    }
    if (!["S1", "S2", "S3", "S4"].includes(a.fusion)) throw new ShapeError(`fusion "${a.fusion}" is not one of S1, S2, S3, S4`);
    const r = mergedCount(n, a.r, { cls: a.cls, distill: a.distill, protect: a.protect });
    if (r !== a.r) throw new ShapeError(`r ${a.r} exceeds what ${n} tokens allow (${r}); the schedule must clamp it`);
    return [b, n - r, x.shape[2]!];
  },
  window_merge: (ts, a, batch) => {
    const expected = a.semantic ? 3 : 2;
    if (ts.length !== expected) throw new ShapeError(`expects ${expected} operands for semantic=${a.semantic} but got ${ts.length}`);
    const [x, metric] = ts as [TensorType, TensorType];
    if (x.shape.length !== 3) throw new ShapeError(`x must be [batch, tokens, width] but has shape ${fmt(x.shape, batch)}`);
    const [b, n] = x.shape as [Dim, Dim];
    if (typeof n !== "number") throw new ShapeError("the token axis must be static");
    if (metric.shape.length !== 3 || !dimEq(metric.shape[0]!, b) || metric.shape[1] !== n) throw new ShapeError(`metric has shape ${fmt(metric.shape, batch)} but x is ${fmt(x.shape, batch)}`);
    const semantic = a.semantic ? ts[2]! : undefined;
    if (semantic !== undefined && (semantic.shape.length !== 2 || !dimEq(semantic.shape[0]!, b) || semantic.shape[1] !== n)) {
      throw new ShapeError(`semantic has shape ${fmt(semantic.shape, batch)} but x needs ${fmt([b, n], batch)}`);
    }
    if (a.grid.length !== 2 || a.window.length !== 2) throw new ShapeError(`grid [${a.grid}] and window [${a.window}] must each be [rows, columns]`);
    if (a.grid[0]! * a.grid[1]! !== n) throw new ShapeError(`grid ${a.grid[0]}×${a.grid[1]} has ${a.grid[0]! * a.grid[1]!} tokens but x has ${n}`);
    if (!Number.isInteger(a.seed)) throw new ShapeError(`seed ${a.seed} must be an integer`);
    if (!Number.isFinite(a.alpha) || !Number.isFinite(a.scale)) throw new ShapeError(`alpha ${a.alpha} and scale ${a.scale} must be finite`);
    let counts;
    try {
      counts = windowCounts(a.grid, a.window, a.r);
    } catch (e) {
      throw new ShapeError((e as Error).message);
    }
    if (counts.merged !== a.r) throw new ShapeError(`r ${a.r} exceeds the ${counts.sources} sources of the grid; the pass must clamp it`);
    return [b, n - a.r, x.shape[2]!];
  },
  window_restore: (ts, a, batch) => {
    const [y, m] = ts as [TensorType, TensorType];
    if (y.shape.length !== 3 || !dimEq(y.shape[0]!, m.shape[0]!) || y.shape[1] !== m.shape[1]) {
      throw new ShapeError(`y has shape ${fmt(y.shape, batch)} but the merge gave ${fmt(m.shape, batch)} (the same batch and tokens needed)`);
    }
    if (!Number.isInteger(a.tokens) || typeof m.shape[1] !== "number" || a.tokens < m.shape[1]) throw new ShapeError(`tokens ${a.tokens} is below the merge's ${fmt([m.shape[1]!], batch).slice(1, -1)}`);
    return [y.shape[0]!, a.tokens, y.shape[2]!];
  },
  merged_size: (ts) => [ts[0]!.shape[0]!, ts[0]!.shape[1]!, 1],
  merged_sources: (ts, _a, batch) => {
    const [m, sources] = ts as [TensorType, TensorType];
    if (sources.shape.length !== 3) throw new ShapeError(`sources must be [batch, tokens, patches] but has shape ${fmt(sources.shape, batch)}`);
    return [m.shape[0]!, m.shape[1]!, sources.shape[2]!];
  },
  fill: (_ts, a) => {
    if (!Number.isFinite(a.value)) throw new ShapeError(`value ${a.value} is not a finite number`);
    return a.shape;
  },
  eye: (_ts, a, batch) => {
    const [n, m] = a.shape.slice(-2);
    if (a.shape.length !== 3 || typeof n !== "number" || n !== m) throw new ShapeError(`shape ${fmt(a.shape, batch)} must be [batch, n, n]`);
    return a.shape;
  },
  reshape: (ts, a, batch) => {
    const from = dimProduct(ts[0]!.shape);
    const to = dimProduct(a.shape);
    if (from === undefined || to === undefined || !dimEq(from, to)) {
      throw new ShapeError(`cannot reshape ${fmt(ts[0]!.shape, batch)} to ${fmt(a.shape, batch)}`);
    }
    for (const d of a.shape) if (typeof d === "number" && (!Number.isInteger(d) || d <= 0)) throw new ShapeError(`invalid dim ${d} in ${fmt(a.shape, batch)}`);
    return a.shape;
  },
  transpose: (ts, a, batch) => {
    const s = ts[0]!.shape;
    const sorted = [...a.perm].sort((x, y) => x - y);
    if (a.perm.length !== s.length || sorted.some((p, i) => p !== i)) {
      throw new ShapeError(`perm [${a.perm.join(",")}] is not a permutation of the axes of ${fmt(s, batch)}`);
    }
    return a.perm.map((p) => s[p]!);
  },
  concat: (ts, a, batch) => {
    const first = ts[0]!.shape;
    const ax = axis(first.length, a.axis, "axis");
    let total = 0;
    for (const t of ts) {
      if (t.shape.length !== first.length || t.shape.some((d, i) => i !== ax && !dimEq(d, first[i]!))) {
        throw new ShapeError(`operands ${ts.map((x) => fmt(x.shape, batch)).join(", ")} differ outside axis ${a.axis}`);
      }
      const d = t.shape[ax]!;
      if (isBatch(d)) throw new ShapeError("cannot concatenate along the batch axis");
      total += d;
    }
    return first.map((d, i) => (i === ax ? total : d));
  },
  slice: (ts, a, batch) => {
    const s = ts[0]!.shape;
    const ax = axis(s.length, a.axis, "axis");
    const d = s[ax]!;
    if (isBatch(d)) throw new ShapeError("cannot slice the batch axis");
    if (!Number.isInteger(a.start) || !Number.isInteger(a.end) || a.start < 0 || a.end > d || a.start >= a.end) {
      throw new ShapeError(`range [${a.start}, ${a.end}) is out of bounds for axis ${a.axis} of ${fmt(s, batch)}`);
    }
    return s.map((x, i) => (i === ax ? a.end - a.start : x));
  },
  broadcast: (ts, a, batch) => {
    const s = ts[0]!.shape;
    if (s.length !== a.shape.length) throw new ShapeError(`cannot broadcast ${fmt(s, batch)} to ${fmt(a.shape, batch)}: ranks differ`);
    s.forEach((d, i) => {
      if (d !== 1 && !dimEq(d, a.shape[i]!)) throw new ShapeError(`cannot broadcast ${fmt(s, batch)} to ${fmt(a.shape, batch)}`);
    });
    return a.shape;
  },
  mean: (ts, a) => reduced(ts[0]!.shape, a, "average"),
  sum: (ts, a) => reduced(ts[0]!.shape, a, "sum"),
  max: (ts, a) => reduced(ts[0]!.shape, a, "take the maximum"),
};

/** Infers the result type of `op` applied to operands of the given types. */
export function inferType<K extends Op>(op: K, operands: readonly TensorType[], attrs: OpAttrs[K], batch: string): TensorType {
  // Token ids (i32) go into gather's first operand and nowhere else; everything else is f32.
  operands.forEach((t, i) => {
    const want = op === "gather" && i === 0 ? "i32" : "f32";
    if (t.dtype === want) return;
    throw new ShapeError(
      want === "i32"
        ? `the ids must be i32 token ids, not ${t.dtype}; declare the input with { dtype: "i32" }`
        : `operand ${i + 1} is ${t.dtype}${fmt(t.shape, batch)}: i32 token ids go through an embedding (gather) before any other op`,
    );
  });
  const rule = rules[op] as Rule<K>;
  return { dtype: "f32", shape: rule(operands, attrs, batch) };
}
