/**
 * Pattern builders in the style of einops:
 *
 *   rearrange(x, "b n (h d) -> b h n d", { h: 6 })   reshape + transpose
 *   reduce(x, "b n d -> b d", "mean")                  mean / sum / max over the dropped axes
 *   einsum("b h n d, b h m d -> b h n m", q, k)       transposes, reshapes and one matmul
 *
 * Shapes are checked while tracing. A mistake in a pattern is reported at
 * the offending character of the pattern string in the spec: the column is
 * that of the string literal's opening quote + 1 + the offset in the
 * pattern. When the pattern is not a plain literal among the call's
 * arguments (a variable, a template with `${}`), the error is at the call
 * and the pattern is shown with a caret under the character.
 */

import { readFileSync } from "node:fs";
import { SourceText, SyntaxProblem } from "../_syntax.ts";
import { CompileError, type SourceLoc } from "../diagnostics.ts";
import { shapeEq, type Shape } from "../ir/types.ts";
import { parsePattern, planEinsum, planRearrange, type Pattern, type RearrangePlan } from "./pattern.ts";
import type { Operand } from "./primitives.ts";
import { currentTrace, emit, here, Tensor } from "./trace.ts";

export type Reduction = "mean" | "sum" | "max";
const reductions: readonly Reduction[] = ["mean", "sum", "max"];

/** Axis sizes a pattern cannot infer, e.g. `{ h: 6 }`. */
export type AxisSizes = Readonly<Record<string, number>>;

// ── locating a position inside a string literal of the call

const sources = new Map<string, SourceText | null>();

function sourceOf(file: string): SourceText | undefined {
  if (!sources.has(file)) {
    try {
      sources.set(file, new SourceText(file, readFileSync(file, "utf8")));
    } catch {
      sources.set(file, null);
    }
  }
  return sources.get(file) ?? undefined;
}

/** The plain string literals among the arguments of the call starting at `start`: offset of the opening quote, raw text. */
function callLiterals(text: string, start: number): { quote: number; raw: string }[] {
  const out: { quote: number; raw: string }[] = [];
  let i = text.indexOf("(", start);
  if (i < 0) return out;
  let depth = 0;
  for (; i < text.length; i++) {
    const c = text[i]!;
    if (c === "/" && text[i + 1] === "/") i = text.indexOf("\n", i) < 0 ? text.length : text.indexOf("\n", i);
    else if (c === "/" && text[i + 1] === "*") i = text.indexOf("*/", i + 2) < 0 ? text.length : text.indexOf("*/", i + 2) + 1;
    else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      let plain = true;
      while (j < text.length && text[j] !== c) {
        if (text[j] === "\\") {
          plain = false;
          j++;
        } else if (c === "`" && text[j] === "$" && text[j + 1] === "{") plain = false;
        else if (c !== "`" && text[j] === "\n") break;
        j++;
      }
      if (plain) out.push({ quote: i, raw: text.slice(i + 1, j) });
      i = j;
    } else if (c === "(" || c === "[" || c === "{") depth++;
    else if (c === ")" || c === "]" || c === "}") {
      depth--;
      if (depth === 0) break;
    }
  }
  return out;
}

/** Where character `offset` of `literal` lies in the source, if the call has it as a plain string literal. */
function locateInCall(call: SourceLoc | undefined, literal: string, offset: number): SourceLoc | undefined {
  if (call === undefined) return undefined;
  const src = sourceOf(call.file);
  if (src === undefined) return undefined;
  const lines = src.text.split("\n");
  let start = 0;
  for (let l = 0; l < call.line - 1 && l < lines.length; l++) start += lines[l]!.length + 1;
  const hit = callLiterals(src.text, start + call.col - 1).find((s) => s.raw === literal);
  return hit === undefined ? undefined : src.loc(hit.quote + 1 + offset);
}

/** A problem at `offset` of `pattern`, located in the spec where possible. */
function located(op: string, pattern: string, p: SyntaxProblem, call: SourceLoc | undefined): CompileError {
  const message = `${op}: ${p.message[0]!.toLowerCase()}${p.message.slice(1)}`;
  const at = locateInCall(call, pattern, p.offset);
  if (at !== undefined) return new CompileError(message, at);
  const shown = pattern.replace(/\s/g, " ");
  return new CompileError(message, call, [`  in pattern "${shown}"`, `  ${" ".repeat("in pattern ".length + 1 + p.offset)}^`]);
}

function withPattern<T>(op: string, pattern: string, call: SourceLoc | undefined, fn: (p: Pattern) => T): T {
  if (typeof pattern !== "string") throw new CompileError(`${op}: the pattern must be a string but is ${typeof pattern}`, call);
  try {
    return fn(parsePattern(pattern));
  } catch (e) {
    if (e instanceof SyntaxProblem) throw located(op, pattern, e, call);
    throw e;
  }
}

function checkSizes(op: string, pattern: string, sizes: AxisSizes | undefined, call: SourceLoc | undefined): AxisSizes {
  if (sizes === undefined) return {};
  const names = new Set(pattern.match(/[A-Za-z_][A-Za-z0-9_]*/g) ?? []);
  for (const [name, v] of Object.entries(sizes)) {
    if (!names.has(name)) throw new CompileError(`${op}: size given for "${name}", which is not an axis of the pattern "${pattern}"`, call);
    if (!Number.isInteger(v) || v <= 0) throw new CompileError(`${op}: size of axis "${name}" must be a positive integer but is ${v}`, call);
  }
  return sizes;
}

// ── emitting a plan

const identity = (perm: readonly number[]) => perm.every((p, i) => p === i);

function apply(x: Operand, shape: Shape, plan: RearrangePlan, reduction: Reduction, op: string): Operand {
  if (plan.reduce.length === 0 && identity(plan.perm)) {
    // Only regrouping: one reshape straight to the result (or nothing).
    return shapeEq(plan.out, shape) ? x : emit("reshape", [x], { shape: plan.out }, op);
  }
  let y = x;
  let cur = shape;
  if (!shapeEq(plan.split, cur)) y = emit("reshape", [y], { shape: (cur = plan.split) }, op);
  if (plan.reduce.length > 0) {
    y = emit(reduction, [y], { axes: [...plan.reduce], keepDims: false }, op);
    cur = cur.filter((_, i) => !plan.reduce.includes(i));
  }
  if (!identity(plan.perm)) {
    y = emit("transpose", [y], { perm: [...plan.perm] }, op);
    cur = plan.perm.map((p) => cur[p]!);
  }
  if (!shapeEq(plan.out, cur)) y = emit("reshape", [y], { shape: plan.out }, op);
  return y;
}

const shapeOf = (op: string, x: Operand): Shape => (x instanceof Tensor ? x.shape : currentTrace(op).builder.type(x).shape);

/** The result as a tensor (an operand that passed through unchanged is returned as is). */
function asTensor(op: string, y: Operand): Tensor {
  if (y instanceof Tensor) return y;
  // A parameter rearranged to itself: give it a node so the result is a tensor.
  return emit("reshape", [y], { shape: currentTrace(op).builder.type(y).shape }, op);
}

// ── the builders

/**
 * Reorders, splits and merges axes: `rearrange(x, "b n (h d) -> b h n d", { h: 6 })`.
 * Every axis on the left appears once on the right; `(a b)` groups axes,
 * `1` is a unit axis; sizes give the axes a group cannot infer.
 */
export function rearrange(x: Tensor, pattern: string, sizes?: AxisSizes): Tensor {
  const call = here();
  const t = currentTrace("rearrange");
  const known = checkSizes("rearrange", pattern, sizes, call);
  const plan = withPattern("rearrange", pattern, call, (p) => planRearrange(p, x.shape, { op: "rearrange", batch: t.builder.batch, sizes: known }));
  return asTensor("rearrange", apply(x, x.shape, plan, "mean", "rearrange"));
}

/**
 * Reduces the axes that the right side drops: `reduce(x, "b n d -> b d", "mean")`.
 * `op` is "mean", "sum" or "max"; the right side may also reorder and group.
 */
export function reduce(x: Tensor, pattern: string, op: Reduction, sizes?: AxisSizes): Tensor {
  const call = here();
  const t = currentTrace("reduce");
  if (!reductions.includes(op)) {
    const message = `reduce: operation ${JSON.stringify(op)} is not one of ${reductions.join(", ")}`;
    throw new CompileError(message, typeof op === "string" ? (locateInCall(call, op, 0) ?? call) : call);
  }
  const known = checkSizes("reduce", pattern, sizes, call);
  const plan = withPattern("reduce", pattern, call, (p) => planRearrange(p, x.shape, { op: "reduce", batch: t.builder.batch, sizes: known, reduces: true }));
  return asTensor("reduce", apply(x, x.shape, plan, op, "reduce"));
}

/**
 * Tensor contraction by axis names: `einsum("b h n d, b h m d -> b h n m", q, k)`.
 * Axes in both inputs and the output are batched, axes in both inputs only
 * are summed (one matmul); an axis in one input only and not in the output
 * is summed first. With one operand it is a sum over the dropped axes.
 */
export function einsum(pattern: string, ...operands: Operand[]): Tensor {
  const call = here();
  const t = currentTrace("einsum");
  const batch = t.builder.batch;
  if (operands.length === 1) {
    const x = operands[0]!;
    const shape = shapeOf("einsum", x);
    const plan = withPattern("einsum", pattern, call, (p) => planRearrange(p, shape, { op: "einsum", batch, reduces: true }));
    return asTensor("einsum", apply(x, shape, plan, "sum", "einsum"));
  }
  if (operands.length !== 2) throw new CompileError(`einsum: takes one or two operands but got ${operands.length}`, call);
  const [a, b] = operands as [Operand, Operand];
  const shapes = [shapeOf("einsum", a), shapeOf("einsum", b)] as const;
  const plan = withPattern("einsum", pattern, call, (p) => planEinsum(p, shapes, { op: "einsum", batch }));
  const xa = apply(a, shapes[0], plan.operands[0], "sum", "einsum");
  const xb = apply(b, shapes[1], plan.operands[1], "sum", "einsum");
  const product = emit("matmul", [xa, xb], {}, "einsum");
  return asTensor("einsum", apply(product, product.shape, plan.result, "sum", "einsum"));
}
