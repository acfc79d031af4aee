/**
 * Token streams: which tensors carry the same tokens, by identity rather than
 * by length. A stream starts where a token axis first appears (a model input
 * or a movement op building a [B, N, D] tensor, a `concat` along the token
 * axis) and is inherited by every op that keeps each token in its place: the
 * per-token ops (`linear`, `layer_norm`, elementwise), `attention` (its
 * queries' tokens), `reshape` and `transpose` that move but do not fold the
 * token axis, slices and reductions of other axes. Two streams of equal
 * length are different streams. Also here: the parameter tokens at the front
 * of a stream (class, distillation, register tokens) and whether the model
 * reads position 0 out as its class token.
 */

import type { AnyNode, Graph, Operand } from "../ir/graph.ts";
import { operandType } from "../ir/graph.ts";
import { dimEq, dimProduct, isBatch, type Shape } from "../ir/types.ts";

/** A tensor's token axis: the stream (its first node's id) and where the axis is. */
export interface StreamAxis {
  readonly origin: number;
  readonly axis: number;
}

const perToken = new Set(["scale", "gelu", "log", "sigmoid", "exp", "sin", "cos", "softmax", "layer_norm", "linear", "broadcast", "turbo_merge", "merged_size", "merged_sources", "window_merge", "window_restore"]);

/** The output axis of a reshape that carries input axis `t`, or undefined when the reshape folds it into another. */
export function reshapedAxis(from: Shape, to: Shape, t: number): number | undefined {
  const before = dimProduct(from.slice(0, t));
  const after = dimProduct(from.slice(t + 1));
  for (let j = 0; j < to.length; j++) {
    const b = dimProduct(to.slice(0, j));
    const a = dimProduct(to.slice(j + 1));
    if (before !== undefined && b !== undefined && after !== undefined && a !== undefined && dimEq(b, before) && dimEq(a, after) && dimEq(to[j]!, from[t]!)) return j;
  }
  return undefined;
}

/** A tensor that looks like tokens: [B, N, …] with a static N. */
function tokenShaped(s: Shape): boolean {
  return s.length === 3 && isBatch(s[0]!) && s[0].batch === 1 && typeof s[1] === "number";
}

/** The stream of every node of `g` (undefined: no token axis). */
export function tokenStreams(g: Graph): (StreamAxis | undefined)[] {
  const out: (StreamAxis | undefined)[] = [];
  const of = (o: Operand) => (typeof o === "number" ? out[o] : undefined);
  const rank = (o: Operand) => operandType(g, o).shape.length;
  for (const n of g.nodes) {
    let s = inherit(n);
    if (s === undefined && tokenShaped(n.type.shape) && !(n.op === "slice" || n.op === "mean" || n.op === "sum" || n.op === "max")) s = { origin: n.id, axis: 1 };
    out.push(s);
  }
  return out;

  function inherit(n: AnyNode): StreamAxis | undefined {
    const r = n.type.shape.length;
    switch (n.op) {
      case "add":
      case "mul": {
        for (const o of n.inputs) {
          const s = of(o);
          if (s !== undefined) return { origin: s.origin, axis: s.axis + r - rank(o) };
        }
        return undefined;
      }
      case "attention":
      case "concat":
      case "slice":
      case "reshape":
      case "transpose":
      case "matmul":
      case "mean":
      case "sum":
      case "max":
      case "cls_attention":
        break;
      default:
        if (!perToken.has(n.op)) return undefined;
        {
          const s = of(n.inputs[0]!);
          if (s === undefined || (n.op === "linear" && s.axis === r - 1)) return undefined;
          return s;
        }
    }
    const s0 = of(n.inputs[0]!);
    switch (n.op) {
      case "attention":
        return s0;
      case "cls_attention": {
        const k = of(n.inputs[1]!);
        return k === undefined ? undefined : { origin: k.origin, axis: 1 };
      }
      case "concat": {
        const first = n.inputs.map(of).find((s) => s !== undefined);
        if (first === undefined) return undefined;
        if (n.attrs.axis === first.axis || n.attrs.axis + r === first.axis) return { origin: n.id, axis: first.axis };
        return first;
      }
      case "slice":
        if (s0 === undefined) return undefined;
        return n.attrs.axis === s0.axis || n.attrs.axis + r === s0.axis ? undefined : s0;
      case "reshape": {
        if (s0 === undefined) return undefined;
        const j = reshapedAxis(operandType(g, n.inputs[0]!).shape, n.type.shape, s0.axis);
        return j === undefined ? undefined : { origin: s0.origin, axis: j };
      }
      case "transpose":
        return s0 === undefined ? undefined : { origin: s0.origin, axis: n.attrs.perm.indexOf(s0.axis) };
      case "matmul": {
        if (s0 !== undefined && s0.axis === r - 2) return s0;
        const b = of(n.inputs[1]!);
        if (b !== undefined && b.axis === r - 1) return b;
        return undefined;
      }
      case "mean":
      case "sum":
      case "max": {
        if (s0 === undefined) return undefined;
        const inRank = rank(n.inputs[0]!);
        const axes = n.attrs.axes.map((a) => (a < 0 ? a + inRank : a));
        if (axes.includes(s0.axis)) return undefined;
        return { origin: s0.origin, axis: n.attrs.keepDims ? s0.axis : s0.axis - axes.filter((a) => a < s0.axis).length };
      }
      default:
        return undefined;
    }
  }
}

/** Nodes computed from parameters and constants alone (no model input). */
export function parameterOnly(g: Graph): boolean[] {
  const out: boolean[] = [];
  for (const n of g.nodes) out.push(n.op !== "input" && n.inputs.every((o) => typeof o === "string" || out[o]!));
  return out;
}

/**
 * Nodes computed from parameters and token ids alone (no float input): a
 * text segment (embedded ids, a text class token, their position embedding)
 * as well as everything `parameterOnly` accepts.
 */
export function textOrParameter(g: Graph): boolean[] {
  const out: boolean[] = [];
  for (const n of g.nodes) {
    out.push(n.op === "input" ? n.type.dtype === "i32" : n.inputs.every((o) => typeof o === "string" || out[o]!));
  }
  return out;
}

/** Nodes computed from a token-id input (through a `gather`). */
export function fromTokenIds(g: Graph): boolean[] {
  const out: boolean[] = [];
  for (const n of g.nodes) out.push((n.op === "input" && n.type.dtype === "i32") || n.inputs.some((o) => typeof o === "number" && out[o]!));
  return out;
}

/** A run of leading tokens computed without the model's float inputs: `tokens` of them, made by `node`. */
export interface FrontPiece {
  readonly node: Operand;
  readonly tokens: number;
}

/**
 * The leading tokens (axis 1) of `x` that were concatenated from fixed
 * pieces, in order: parameters (a class token, a distillation token,
 * register tokens) or, with `fixed = textOrParameter(g)`, a text segment,
 * in any nesting of `concat`s, through per-token ops and front slices.
 */
export function frontPieces(g: Graph, x: Operand, fixed: readonly boolean[] = parameterOnly(g)): FrontPiece[] {
  if (typeof x === "string") return [];
  const n = g.nodes[x]!;
  const tokens = n.type.shape[1];
  if (fixed[x]) return typeof tokens === "number" ? [{ node: x, tokens }] : [];
  switch (n.op) {
    case "concat": {
      if (n.attrs.axis !== 1) return [];
      const out: FrontPiece[] = [];
      for (const o of n.inputs) {
        const f = frontPieces(g, o, fixed);
        out.push(...f);
        if (count(f) !== operandType(g, o).shape[1]) break;
      }
      return out;
    }
    case "slice": {
      const inner = frontPieces(g, n.inputs[0]!, fixed);
      if (n.attrs.axis !== 1) return inner;
      const out: FrontPiece[] = [];
      let at = 0;
      for (const p of inner) {
        const lo = Math.max(at, n.attrs.start);
        const hi = Math.min(at + p.tokens, n.attrs.end);
        if (hi > lo) out.push({ node: p.node, tokens: hi - lo });
        at += p.tokens;
      }
      return out;
    }
    case "add":
    case "mul": {
      const streams = n.inputs.filter((o) => typeof o === "number" && !fixed[o]).map((o) => frontPieces(g, o, fixed));
      return streams.reduce((a, b) => (count(b) < count(a) ? b : a));
    }
    case "scale":
    case "gelu":
    case "log":
    case "sigmoid":
    case "exp":
    case "sin":
    case "cos":
    case "layer_norm":
    case "linear":
    case "attention": // its output keeps the queries' positions (a block that did not merge)
      return frontPieces(g, n.inputs[0]!, fixed);
    default:
      return [];
  }
}

const count = (pieces: readonly FrontPiece[]) => pieces.reduce((a, p) => a + p.tokens, 0);

/** How many leading tokens of `x` were concatenated from fixed pieces (see `frontPieces`). */
export function frontTokens(g: Graph, x: Operand, fixed: readonly boolean[] = parameterOnly(g)): number {
  return count(frontPieces(g, x, fixed));
}

/** The token count of the first parameter piece at the front of `x` (1 for a lone class token), or 0. */
export function firstPiece(g: Graph, x: Operand, fromParams: readonly boolean[] = parameterOnly(g)): number {
  if (typeof x === "string") return 0;
  const n = g.nodes[x]!;
  const tokens = n.type.shape[1];
  if (fromParams[x]) return typeof tokens === "number" ? tokens : 0;
  switch (n.op) {
    case "concat":
      return n.attrs.axis === 1 ? firstPiece(g, n.inputs[0]!, fromParams) : 0;
    case "slice":
      return n.attrs.axis !== 1 || n.attrs.start === 0 ? firstPiece(g, n.inputs[0]!, fromParams) : 0;
    case "add":
    case "mul": {
      const stream = n.inputs.find((o) => typeof o === "number" && !fromParams[o]);
      return stream === undefined ? 0 : firstPiece(g, stream, fromParams);
    }
    case "scale":
    case "gelu":
    case "log":
    case "sigmoid":
    case "exp":
    case "sin":
    case "cos":
    case "layer_norm":
    case "linear":
      return firstPiece(g, n.inputs[0]!, fromParams);
    default:
      return 0;
  }
}

/** Whether the model reads position 0 of `origin`'s tokens out on its own (a class token read-out, `x[:, 0]`). */
export function readsPosition0(g: Graph, streams: readonly (StreamAxis | undefined)[], origin: number): boolean {
  return g.nodes.some((n) => {
    if (n.op !== "slice" || n.attrs.start !== 0 || n.attrs.end !== 1) return false;
    const s = typeof n.inputs[0] === "number" ? streams[n.inputs[0]] : undefined;
    return s !== undefined && s.origin === origin && s.axis === n.attrs.axis;
  });
}
