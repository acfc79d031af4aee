/**
 * Einops-style patterns: parsing (the grammar is in `_pattern_grammar.ts`,
 * this file has its visitor) and planning. A plan says which reshapes,
 * transposes, reductions and matmul turn the operands' shapes into the
 * pattern's result; einops.ts emits it as IR nodes. Everything here is pure
 * and works on offsets into the pattern text: a problem is a `SyntaxProblem`
 * at the offending character, which the builder turns into a located error.
 */

import type { CstNode, IToken } from "chevrotain";
import { lexerProblem, parserProblem, SyntaxProblem } from "../_syntax.ts";
import { dimEq, dimProduct, formatDim, formatShape, isBatch, type Dim, type Shape } from "../ir/types.ts";
import { patternLexer, patternParser } from "./_pattern_grammar.ts";

export interface AxisRef {
  readonly name: string;
  readonly offset: number;
}
export type Term =
  | { readonly kind: "axis"; readonly name: string; readonly offset: number }
  | { readonly kind: "unit"; readonly offset: number }
  | { readonly kind: "group"; readonly axes: readonly AxisRef[]; readonly offset: number; readonly text: string };
export interface Side {
  readonly terms: readonly Term[];
  /** Offset just after the side (its comma, its arrow, or the end of the text). */
  readonly end: number;
}
export interface Pattern {
  readonly text: string;
  readonly inputs: readonly Side[];
  readonly output: Side;
  /** Offsets of the commas between inputs, and of the arrow. */
  readonly commas: readonly number[];
  readonly arrow: number;
}

// ── parsing

type Ctx = Record<string, (CstNode | IToken)[] | undefined>;

const BaseVisitor = patternParser.getBaseCstVisitorConstructor();

class PatternVisitor extends BaseVisitor {
  private text = "";
  constructor() {
    super();
    this.validateVisitor();
  }
  read(cst: CstNode, text: string): Pattern {
    this.text = text;
    return this.visit(cst) as Pattern;
  }
  pattern(ctx: Ctx): Pattern {
    const commas = ((ctx.Comma ?? []) as IToken[]).map((t) => t.startOffset);
    const arrow = (ctx.Arrow as IToken[])[0]!.startOffset;
    const ends = [...commas, arrow];
    const inputs = ((ctx.inputs ?? []) as CstNode[]).map((s, i) => this.visit(s, ends[i]) as Side);
    return { text: this.text, inputs, output: this.visit((ctx.output as CstNode[])[0]!, this.text.length), commas, arrow };
  }
  side(ctx: Ctx, end: number): Side {
    return { terms: ((ctx.term ?? []) as CstNode[]).map((t) => this.visit(t) as Term), end };
  }
  term(ctx: Ctx): Term {
    const group = (ctx.group as CstNode[] | undefined)?.[0];
    if (group !== undefined) return this.visit(group);
    const t = [...((ctx.Axis ?? []) as IToken[]), ...((ctx.NumberLit ?? []) as IToken[]), ...((ctx.Ellipsis ?? []) as IToken[])][0]!;
    return atom(t) ?? { kind: "unit", offset: t.startOffset };
  }
  group(ctx: Ctx): Term {
    const open = (ctx.LParen as IToken[])[0]!;
    const close = (ctx.RParen as IToken[])[0]!;
    const inner = [...((ctx.Axis ?? []) as IToken[]), ...((ctx.NumberLit ?? []) as IToken[]), ...((ctx.Ellipsis ?? []) as IToken[])];
    inner.sort((a, b) => a.startOffset - b.startOffset);
    const axes: AxisRef[] = [];
    for (const t of inner) {
      const a = atom(t);
      if (a !== undefined) axes.push(a);
    }
    return { kind: "group", axes, offset: open.startOffset, text: this.text.slice(open.startOffset, close.startOffset + 1) };
  }
}

/** An axis token as an axis; `1` as undefined (a unit); anything else is refused. */
function atom(t: IToken): { kind: "axis"; name: string; offset: number } | undefined {
  if (t.tokenType.name === "Axis") return { kind: "axis", name: t.image, offset: t.startOffset };
  if (t.image === "...") throw new SyntaxProblem('Ellipsis "..." is not supported; name every axis', t.startOffset);
  if (t.image !== "1") throw new SyntaxProblem(`Anonymous axis ${t.image} is not supported; name the axis and give its size`, t.startOffset);
  return undefined;
}

const visitor = new PatternVisitor();

/** Parses a pattern; problems are `SyntaxProblem`s at offsets into `text`. */
export function parsePattern(text: string): Pattern {
  const lexed = patternLexer.tokenize(text);
  const lexError = lexerProblem(lexed.errors, text);
  if (lexError !== undefined) throw lexError;
  patternParser.input = lexed.tokens;
  const cst = patternParser.pattern();
  const parseError = parserProblem(patternParser.errors, text.length);
  if (parseError !== undefined) throw parseError;
  return visitor.read(cst, text);
}

// ── planning

const problem = (message: string, offset: number): never => {
  throw new SyntaxProblem(message, offset);
};

/** Every axis of a side in order, group members flattened. */
export function axesOf(side: Side): AxisRef[] {
  return side.terms.flatMap((t): AxisRef[] => (t.kind === "axis" ? [t] : t.kind === "group" ? [...t.axes] : []));
}

function checkUnique(axes: readonly AxisRef[], where: string): void {
  const seen = new Set<string>();
  for (const a of axes) {
    if (seen.has(a.name)) problem(`Axis "${a.name}" appears twice ${where}`, a.offset);
    seen.add(a.name);
  }
}

/** Context for messages: the batch name and how to call the operand ("the input"). */
interface Names {
  readonly batch: string;
  readonly operand: string;
  readonly side: string;
}

/**
 * Binds every axis of an operand's side to a size: single axes take the
 * dimension; a group's axes multiply to it, with at most one axis of unknown
 * size, which the division gives (the batch dimension divides as k·B).
 */
function bind(side: Side, shape: Shape, sizes: Readonly<Record<string, number>>, n: Names): Map<string, Dim> {
  const fmt = (d: Dim) => formatDim(d, n.batch);
  if (side.terms.length !== shape.length) {
    const at = side.terms.length > shape.length ? side.terms[shape.length]!.offset : side.end;
    problem(`${cap(n.side)} has ${side.terms.length} ax${side.terms.length === 1 ? "is" : "es"} but ${n.operand} has rank ${shape.length} (${formatShape(shape, n.batch)})`, at);
  }
  const out = new Map<string, Dim>();
  side.terms.forEach((t, i) => {
    const d = shape[i]!;
    if (t.kind === "unit") {
      if (d !== 1) problem(`Unit axis 1 stands for axis ${i} of ${n.operand}, which has size ${fmt(d)}`, t.offset);
      return;
    }
    if (t.kind === "axis") {
      const given = sizes[t.name];
      if (given !== undefined && isBatch(d)) problem(`Axis "${t.name}" is the batch dimension ${fmt(d)}; it cannot be given a size`, t.offset);
      if (given !== undefined && given !== d) problem(`Axis "${t.name}" is given size ${given} but axis ${i} of ${n.operand} has size ${fmt(d)}`, t.offset);
      out.set(t.name, d);
      return;
    }
    const unknown = t.axes.filter((a) => sizes[a.name] === undefined);
    const known = t.axes.filter((a) => sizes[a.name] !== undefined);
    const product = known.reduce((p, a) => p * sizes[a.name]!, 1);
    const knownText = known.map((a) => `${a.name}=${sizes[a.name]}`).join("·");
    if (unknown.length > 1) {
      problem(`Group ${t.text} has ${unknown.length} axes of unknown size (${unknown.map((a) => a.name).join(", ")}); give the sizes of all but one`, t.offset);
    }
    if (unknown.length === 0) {
      if (d !== product) problem(`Group ${t.text} has size ${knownText || 1} = ${product} but axis ${i} of ${n.operand} has size ${fmt(d)}`, t.offset);
    } else {
      let rest: Dim | undefined;
      if (typeof d === "number" && d % product === 0) rest = d / product;
      if (typeof d !== "number" && d.batch % product === 0) rest = { batch: d.batch / product };
      if (rest === undefined) problem(`Group ${t.text} does not divide: axis ${i} of ${n.operand} has size ${fmt(d)}, not a multiple of ${knownText}`, t.offset);
      out.set(unknown[0]!.name, rest!);
    }
    for (const a of known) out.set(a.name, sizes[a.name]!);
  });
  return out;
}

const cap = (s: string) => s[0]!.toUpperCase() + s.slice(1);

/** The shape of a side from the sizes of its axes (units and empty groups are 1). */
function sideShape(side: Side, size: ReadonlyMap<string, Dim>): Dim[] {
  return side.terms.map((t) => {
    if (t.kind === "unit") return 1;
    if (t.kind === "axis") return size.get(t.name)!;
    const p = dimProduct(t.axes.map((a) => size.get(a.name)!));
    if (p === undefined) return problem(`Group ${t.text} would multiply the batch dimension with itself`, t.offset);
    return p;
  });
}

/**
 * How to rearrange (and optionally reduce) one operand: reshape it to the
 * left side's single axes (`split`), reduce the `reduce` axes of that shape,
 * permute the rest with `perm`, reshape to `out`.
 */
export interface RearrangePlan {
  readonly split: Shape;
  readonly reduce: readonly number[];
  readonly perm: readonly number[];
  readonly out: Shape;
}

export interface PlanOptions {
  /** The builder, for messages ("rearrange"). */
  readonly op: string;
  readonly batch: string;
  readonly sizes?: Readonly<Record<string, number>>;
  /** Axes on the left but not on the right are reduced (reduce, one-operand einsum) rather than refused. */
  readonly reduces?: boolean;
}

export function planRearrange(p: Pattern, shape: Shape, o: PlanOptions): RearrangePlan {
  if (p.inputs.length !== 1) problem(`${o.op} takes one input but the pattern has ${p.inputs.length}`, p.commas[0]!);
  const left = p.inputs[0]!;
  const leftAxes = axesOf(left);
  const rightAxes = axesOf(p.output);
  checkUnique(leftAxes, "on the left");
  checkUnique(rightAxes, "on the right");
  for (const a of rightAxes) if (!leftAxes.some((l) => l.name === a.name)) problem(`Axis "${a.name}" on the right is not on the left`, a.offset);
  const size = bind(left, shape, o.sizes ?? {}, { batch: o.batch, operand: "the input", side: "the left side" });
  const reduce: number[] = [];
  leftAxes.forEach((a, i) => {
    if (rightAxes.some((r) => r.name === a.name)) return;
    if (!o.reduces) problem(`Axis "${a.name}" is on the left but not on the right; use reduce() to remove an axis`, a.offset);
    if (isBatch(size.get(a.name)!)) problem(`Cannot reduce over axis "${a.name}": it is the batch dimension ${o.batch}`, a.offset);
    reduce.push(i);
  });
  const kept = leftAxes.filter((_, i) => !reduce.includes(i)).map((a) => a.name);
  return {
    split: leftAxes.map((a) => size.get(a.name)!),
    reduce,
    perm: rightAxes.map((a) => kept.indexOf(a.name)),
    out: sideShape(p.output, size),
  };
}

/**
 * Two-operand einsum as one matmul: each operand is rearranged to
 * [Pb, Pm, Pk] and [Pb, Pk, Pn] (products of its batch, free and contracted
 * axes; no Pb when the operands share no output axis), so the matmul needs
 * no transposed operand; the product [Pb, Pm, Pn] is then split into its
 * axes and permuted to the output order. Axes in one operand only and not
 * in the output are summed away in that operand's plan.
 */
export interface EinsumPlan {
  readonly operands: readonly [RearrangePlan, RearrangePlan];
  readonly result: RearrangePlan;
}

const ordinal = ["first", "second"];

export function planEinsum(p: Pattern, shapes: readonly [Shape, Shape], o: PlanOptions): EinsumPlan {
  if (p.inputs.length !== 2) {
    problem(`The pattern has ${p.inputs.length} input${p.inputs.length === 1 ? "" : "s"} for 2 operands`, p.inputs.length > 2 ? p.commas[1]! : p.arrow);
  }
  for (const side of [...p.inputs, p.output]) {
    for (const t of side.terms) {
      if (t.kind === "group") problem(`Groups are not allowed in einsum patterns; rearrange the operands first`, t.offset);
      if (t.kind === "unit") problem(`Unit axes are not allowed in einsum patterns`, t.offset);
    }
  }
  const ins = p.inputs.map(axesOf);
  const out = axesOf(p.output);
  ins.forEach((axes, i) => checkUnique(axes, `in the ${ordinal[i]} input; einsum does not take diagonals`));
  checkUnique(out, "on the right");
  const sizes = ins.map((_, i) => bind(p.inputs[i]!, shapes[i]!, {}, { batch: o.batch, operand: `the ${ordinal[i]} operand`, side: `the ${ordinal[i]} input` }));
  const [a, b] = ins as [AxisRef[], AxisRef[]];
  const inA = (n: string) => a.some((x) => x.name === n);
  const inB = (n: string) => b.some((x) => x.name === n);
  const inOut = (n: string) => out.some((x) => x.name === n);
  for (const x of b) {
    const da = sizes[0]!.get(x.name);
    const db = sizes[1]!.get(x.name)!;
    if (da !== undefined && !dimEq(da, db)) {
      problem(`Axis "${x.name}" has size ${formatDim(da, o.batch)} in the first operand but ${formatDim(db, o.batch)} in the second`, x.offset);
    }
  }
  for (const x of out) if (!inA(x.name) && !inB(x.name)) problem(`Axis "${x.name}" on the right is in neither input`, x.offset);
  const size = new Map([...sizes[1]!, ...sizes[0]!]);
  const batchAxes = out.filter((x) => inA(x.name) && inB(x.name)).map((x) => x.name);
  const freeA = out.filter((x) => inA(x.name) && !inB(x.name)).map((x) => x.name);
  const freeB = out.filter((x) => inB(x.name) && !inA(x.name)).map((x) => x.name);
  const contracted = a.filter((x) => inB(x.name) && !inOut(x.name));
  for (const x of contracted) if (isBatch(size.get(x.name)!)) problem(`Cannot sum over axis "${x.name}": it is the batch dimension ${o.batch}`, x.offset);
  const symbolic = out.filter((x) => isBatch(size.get(x.name)!));
  if (symbolic.length > 1) problem(`Axes "${symbolic[0]!.name}" and "${symbolic[1]!.name}" would both be the batch dimension`, symbolic[1]!.offset);
  const product = (names: readonly string[]): Dim => dimProduct(names.map((n) => size.get(n)!))!;
  const prepare = (axes: readonly AxisRef[], i: number, order: readonly (readonly string[])[]): RearrangePlan => {
    const keep = new Set(order.flat());
    const reduce: number[] = [];
    axes.forEach((x, j) => {
      if (keep.has(x.name)) return;
      if (isBatch(size.get(x.name)!)) problem(`Cannot sum over axis "${x.name}": it is the batch dimension ${o.batch}`, x.offset);
      reduce.push(j);
    });
    const kept = axes.filter((_, j) => !reduce.includes(j)).map((x) => x.name);
    return { split: axes.map((x) => sizes[i]!.get(x.name)!), reduce, perm: order.flat().map((n) => kept.indexOf(n)), out: order.map(product) };
  };
  const k = contracted.map((x) => x.name);
  const head = batchAxes.length > 0 ? [batchAxes] : [];
  const produced = [...batchAxes, ...freeA, ...freeB];
  const split = produced.map((n) => size.get(n)!);
  const perm = out.map((x) => produced.indexOf(x.name));
  return {
    operands: [prepare(a, 0, [...head, freeA, k]), prepare(b, 1, [...head, k, freeB])],
    result: { split, reduce: [], perm, out: perm.map((j) => split[j]!) },
  };
}
