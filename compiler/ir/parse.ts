/**
 * Reads the IR text form (print.ts writes it) back into a graph:
 * `parseGraph(printGraph(g))` equals `g` in ops, operands, attributes,
 * types, parameters, outputs and block scopes. The grammar is in
 * `_tir_grammar.ts`; this file is its CST visitor and the semantic checks.
 *
 * The parser knows no op by name: ops come from the op table, attribute
 * values are generic (numbers, booleans, strings, lists, shapes with the
 * batch dim), checked against `attrSchemas` where an op has one. Every node
 * is rebuilt with `GraphBuilder.add`, so its shape rule runs and its declared
 * type must equal the inferred one. Each node's location is its op name in
 * the text, so errors from later passes point into the .tir file.
 */

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { CstNode, IToken } from "chevrotain";
import { lexerProblem, parserProblem, SourceText, SyntaxProblem } from "../_syntax.ts";
import { CompileError, rememberSource, type SourceLoc } from "../diagnostics.ts";
import { checkAttrs } from "./attrs.ts";
import { GraphBuilder, type Graph, type Operand } from "./graph.ts";
import { opDocs, type Op } from "./ops.ts";
import { formatType, shapeEq, type Dim, type TensorType } from "./types.ts";
import { tirLexer, tirParser } from "./_tir_grammar.ts";

// ── the CST visitor: CST → a plain syntax tree with offsets

interface Tok {
  readonly image: string;
  readonly offset: number;
}
type DimAst = { readonly kind: "number"; readonly tok: Tok } | { readonly kind: "name"; readonly name: Tok; readonly factor: Tok | undefined };
type ValueAst =
  | { readonly kind: "number" | "string"; readonly tok: Tok }
  | { readonly kind: "name"; readonly name: Tok; readonly factor: Tok | undefined }
  | { readonly kind: "list"; readonly items: readonly ValueAst[]; readonly tok: Tok; readonly end: number };
interface TypeAst {
  readonly dtype: Tok;
  readonly dims: readonly DimAst[];
}
interface ParamAst {
  readonly kind: "param";
  readonly keyword: Tok;
  readonly ref: Tok;
  readonly type: TypeAst;
}
interface NodeAst {
  readonly kind: "node";
  readonly id: Tok;
  readonly type: TypeAst;
  readonly op: Tok;
  readonly attrs: readonly { readonly key: Tok; readonly value: ValueAst }[];
  readonly operands: readonly Tok[];
  readonly scope: Tok | undefined;
}
interface ReturnAst {
  readonly kind: "return";
  readonly keyword: Tok;
  readonly outputs: readonly { readonly name: Tok; readonly ref: Tok }[];
}
type StatementAst = ParamAst | NodeAst | ReturnAst;
interface FileAst {
  readonly name: Tok;
  readonly batch: Tok;
  readonly statements: readonly StatementAst[];
  readonly close: Tok;
}

type Ctx = Record<string, (CstNode | IToken)[] | undefined>;

const tok = (t: IToken): Tok => ({ image: t.image, offset: t.startOffset });
const tokens = (ctx: Ctx, key: string): IToken[] => (ctx[key] ?? []) as IToken[];
const nodes = (ctx: Ctx, key: string): CstNode[] => (ctx[key] ?? []) as CstNode[];
const first = (ctx: Ctx, key: string): Tok => tok(tokens(ctx, key)[0]!);
const maybe = (ctx: Ctx, key: string): Tok | undefined => {
  const t = tokens(ctx, key)[0];
  return t === undefined ? undefined : tok(t);
};

const BaseVisitor = tirParser.getBaseCstVisitorConstructor();

class TirVisitor extends BaseVisitor {
  constructor() {
    super();
    this.validateVisitor();
  }
  file(ctx: Ctx): FileAst {
    return {
      name: this.visit(nodes(ctx, "name")[0]!),
      batch: first(ctx, "batch"),
      statements: nodes(ctx, "statement").map((s) => this.visit(s) as StatementAst),
      close: first(ctx, "RBrace"),
    };
  }
  statement(ctx: Ctx): StatementAst {
    const inner = nodes(ctx, "param")[0] ?? nodes(ctx, "node")[0] ?? nodes(ctx, "ret")[0]!;
    return this.visit(inner);
  }
  param(ctx: Ctx): ParamAst {
    return { kind: "param", keyword: first(ctx, "Kw_param"), ref: first(ctx, "ParamRef"), type: this.visit(nodes(ctx, "type")[0]!) };
  }
  node(ctx: Ctx): NodeAst {
    const attrs = nodes(ctx, "attrs")[0];
    return {
      kind: "node",
      id: first(ctx, "ValueRef"),
      type: this.visit(nodes(ctx, "type")[0]!),
      op: first(ctx, "op"),
      attrs: attrs === undefined ? [] : this.visit(attrs),
      operands: nodes(ctx, "operand").map((o) => this.visit(o) as Tok),
      scope: maybe(ctx, "Scope"),
    };
  }
  attrs(ctx: Ctx): NodeAst["attrs"] {
    return nodes(ctx, "attr").map((a) => this.visit(a));
  }
  attr(ctx: Ctx): NodeAst["attrs"][number] {
    return { key: first(ctx, "Ident"), value: this.visit(nodes(ctx, "value")[0]!) };
  }
  value(ctx: Ctx): ValueAst {
    const number = maybe(ctx, "NumberLit");
    if (number !== undefined) return { kind: "number", tok: number };
    const string = maybe(ctx, "StringLit");
    if (string !== undefined) return { kind: "string", tok: string };
    const dim = nodes(ctx, "dimName")[0];
    if (dim !== undefined) return { kind: "name", ...(this.visit(dim) as { name: Tok; factor: Tok | undefined }) };
    return this.visit(nodes(ctx, "list")[0]!);
  }
  list(ctx: Ctx): ValueAst {
    return { kind: "list", items: nodes(ctx, "value").map((v) => this.visit(v)), tok: first(ctx, "LBracket"), end: first(ctx, "RBracket").offset };
  }
  dimName(ctx: Ctx): { name: Tok; factor: Tok | undefined } {
    return { name: first(ctx, "Ident"), factor: maybe(ctx, "NumberLit") };
  }
  type(ctx: Ctx): TypeAst {
    return { dtype: first(ctx, "dtype"), dims: nodes(ctx, "dim").map((d) => this.visit(d)) };
  }
  dim(ctx: Ctx): DimAst {
    const number = maybe(ctx, "NumberLit");
    if (number !== undefined) return { kind: "number", tok: number };
    return { kind: "name", ...(this.visit(nodes(ctx, "dimName")[0]!) as { name: Tok; factor: Tok | undefined }) };
  }
  operand(ctx: Ctx): Tok {
    return maybe(ctx, "ValueRef") ?? first(ctx, "ParamRef");
  }
  ret(ctx: Ctx): ReturnAst {
    return { kind: "return", keyword: first(ctx, "Kw_return"), outputs: nodes(ctx, "output").map((o) => this.visit(o)) };
  }
  output(ctx: Ctx): ReturnAst["outputs"][number] {
    return { name: this.visit(nodes(ctx, "name")[0]!), ref: first(ctx, "ValueRef") };
  }
  name(ctx: Ctx): Tok {
    return maybe(ctx, "Ident") ?? first(ctx, "StringLit");
  }
}

const visitor = new TirVisitor();

// ── semantics: the syntax tree → a checked graph

function fail(message: string, at: Tok | number): never {
  throw new SyntaxProblem(message, typeof at === "number" ? at : at.offset);
}

const unquote = (image: string): string => (image.startsWith('"') ? (JSON.parse(image) as string) : image);

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(row[j]! + 1, row[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = row[j]!;
      row[j] = next;
    }
  }
  return row[b.length]!;
}

function unknownOp(name: Tok): never {
  const close = Object.keys(opDocs).filter((op) => editDistance(op, name.image) <= 2);
  return fail(`Unknown op "${name.image}"${close.length > 0 ? `; did you mean "${close[0]}"?` : ""}`, name);
}

/** The largest dimension (or batch factor): tfjs holds sizes as 32-bit signed integers. */
const maxDim = 2 ** 31 - 1;

/** The deepest `[` nesting the text may have; the parser recurses once per level. */
const maxNesting = 64;

/** Fails at the first `[` that opens level `maxNesting + 1`, before the recursive parser sees it. */
function checkNesting(tokens: readonly IToken[]): void {
  let depth = 0;
  for (const t of tokens) {
    if (t.image === "[") {
      depth++;
      if (depth > maxNesting) fail(`Lists nest deeper than ${maxNesting} levels`, t.startOffset);
    } else if (t.image === "]") depth = Math.max(0, depth - 1);
  }
}

class GraphReader {
  readonly b: GraphBuilder;
  /** Source line (1-based) of each node and parameter, for context lines. */
  private readonly lineOf = new Map<Operand, number>();
  private readonly inputNames = new Set<string>();

  constructor(private readonly src: SourceText, private readonly ast: FileAst) {
    this.b = new GraphBuilder(unquote(ast.name.image), ast.batch.image);
  }

  read(): Graph {
    let ret: ReturnAst | undefined;
    for (const s of this.ast.statements) {
      if (ret !== undefined) fail("Nothing may follow the return statement", s.kind === "node" ? s.id : s.keyword);
      if (s.kind === "param") this.param(s);
      else if (s.kind === "node") this.node(s);
      else ret = s;
    }
    if (ret === undefined) fail("The graph has no return statement; end it with `return name=%n`", this.ast.close);
    for (const o of ret.outputs) {
      const id = this.nodeRef(o.ref);
      const name = unquote(o.name.image);
      if (this.b.outputs.some((x) => x.name === name)) fail(`Output "${name}" is returned twice`, o.name);
      this.b.output(name, id);
    }
    return this.b.build();
  }

  private loc(at: Tok): SourceLoc {
    return this.src.loc(at.offset);
  }

  private dim(d: DimAst | Extract<ValueAst, { kind: "name" }>): Dim {
    if (d.kind === "number") {
      const v = Number(d.tok.image);
      if (!Number.isInteger(v) || v <= 0) fail(`Dimension ${d.tok.image} must be a positive integer`, d.tok);
      if (v > maxDim) fail(`Dimension ${d.tok.image} is larger than ${maxDim}, the largest a tensor dimension can be`, d.tok);
      return v;
    }
    if (d.name.image !== this.b.batch) {
      fail(`Unknown dimension "${d.name.image}"; dimensions are numbers or the graph's batch dimension "${this.b.batch}"`, d.name);
    }
    if (d.factor === undefined) return { batch: 1 };
    const k = Number(d.factor.image);
    if (!Number.isInteger(k) || k <= 0) fail(`Batch factor ${d.factor.image} must be a positive integer`, d.factor);
    if (k > maxDim) fail(`Batch factor ${d.factor.image} is larger than ${maxDim}, the largest a tensor dimension can be`, d.factor);
    return { batch: k };
  }

  private type(t: TypeAst): TensorType {
    const dtype = t.dtype.image;
    if (dtype !== "f32" && dtype !== "i32") fail(`Unknown dtype "${dtype}"; the IR has f32, and i32 for token ids`, t.dtype);
    const shape = t.dims.map((d) => this.dim(d));
    if (shape.filter((d) => typeof d !== "number").length > 1) fail(`A type has at most one batch dimension`, t.dtype);
    return { dtype, shape };
  }

  private value(v: ValueAst): unknown {
    switch (v.kind) {
      case "number": {
        const n = Number(v.tok.image);
        if (!Number.isFinite(n)) fail(`Number ${v.tok.image} is out of range`, v.tok);
        return n;
      }
      case "string":
        return JSON.parse(v.tok.image) as string;
      case "list":
        return v.items.map((x) => this.value(x));
      case "name":
        if (v.factor === undefined && (v.name.image === "true" || v.name.image === "false")) return v.name.image === "true";
        if (v.name.image !== this.b.batch) {
          fail(`Unknown value "${v.name.image}"; attribute values are numbers, strings, true, false, lists or shapes`, v.name);
        }
        return this.dim(v);
    }
  }

  private valueStart(v: ValueAst): Tok {
    return v.kind === "name" ? v.name : v.tok;
  }

  private valueText(v: ValueAst): string {
    const start = this.valueStart(v).offset;
    const end = v.kind === "list" ? v.end + 1 : v.kind === "name" && v.factor ? v.factor.offset + v.factor.image.length : start + this.valueStart(v).image.length;
    return this.src.text.slice(start, end);
  }

  private param(s: ParamAst): void {
    const name = unquote(s.ref.image.slice(1));
    if (this.b.params.has(name)) fail(`Parameter @${name} is declared twice`, s.ref);
    const t = this.type(s.type);
    if (t.dtype !== "f32") fail(`Parameter @${name} must be f32 (only inputs hold i32 token ids)`, s.type.dtype);
    const batchAt = t.shape.findIndex((d) => typeof d !== "number");
    if (batchAt >= 0) fail(`Parameter @${name} cannot have the batch dimension`, s.type.dims[batchAt]!.kind === "name" ? (s.type.dims[batchAt] as { name: Tok }).name : s.type.dtype);
    this.b.param(name, t.shape as number[], this.loc(s.ref));
    this.lineOf.set(name, this.loc(s.ref).line);
  }

  private nodeRef(ref: Tok): number {
    const id = Number(ref.image.slice(1));
    if (!(id < this.b.nodes.length)) fail(`Node ${ref.image} is not defined before this line`, ref);
    return id;
  }

  private node(s: NodeAst): void {
    const expected = this.b.nodes.length;
    if (Number(s.id.image.slice(1)) !== expected) {
      fail(`Expected node %${expected} here but found ${s.id.image}; nodes are numbered in order from %0`, s.id);
    }
    if (!Object.hasOwn(opDocs, s.op.image)) unknownOp(s.op);
    const op = s.op.image as Op;
    const attrs: Record<string, unknown> = {};
    for (const a of s.attrs) {
      if (Object.hasOwn(attrs, a.key.image)) fail(`${op}: attribute ${a.key.image} is given twice`, a.key);
      attrs[a.key.image] = this.value(a.value);
    }
    const problem = checkAttrs(op, attrs);
    if (problem !== undefined) {
      const a = s.attrs.find((x) => x.key.image === problem.key);
      if (a === undefined) fail(problem.message, s.op);
      else if (problem.message.includes("unknown attribute")) fail(problem.message, a.key);
      else fail(`${problem.message} but is ${this.valueText(a.value)}`, this.valueStart(a.value));
    }
    const inputs: Operand[] = s.operands.map((o) => {
      if (o.image.startsWith("%")) return this.nodeRef(o);
      const name = unquote(o.image.slice(1));
      if (!this.b.params.has(name)) fail(`Parameter @${name} is not declared; declare it before use with \`param @${name}: f32[…]\``, o);
      return name;
    });
    const declared = this.type(s.type);
    const meta = { loc: this.loc(s.op), ...(s.scope === undefined ? {} : { scope: s.scope.image.slice(1).trim() }) };
    this.lineOf.set(expected, this.loc(s.id).line);
    if (op === "input") {
      if (inputs.length > 0) fail(`input: expects 0 operands but got ${inputs.length}`, s.operands[0]!);
      const name = attrs.name as string;
      if (this.inputNames.has(name)) fail(`input "${name}" is declared twice`, this.valueStart(s.attrs.find((a) => a.key.image === "name")!.value));
      this.inputNames.add(name);
      this.b.nodes.push({ id: expected, op: "input", inputs: [], attrs: attrs as { name: string }, type: declared });
      this.b.meta.set(expected, meta);
      return;
    }
    let id: number;
    try {
      id = this.b.add(op, inputs, attrs as never, meta);
    } catch (e) {
      if (e instanceof CompileError) throw new CompileError(e.message, e.loc, this.operandContext(inputs));
      throw new CompileError(`${op}: its attributes or operands do not fit the op (${(e as Error).message})`, meta.loc, this.operandContext(inputs));
    }
    const inferred = this.b.nodes[id]!.type;
    if (!shapeEq(inferred.shape, declared.shape) || inferred.dtype !== declared.dtype) {
      throw new CompileError(
        `${op}: declared type ${formatType(declared, this.b.batch)} does not match the inferred ${formatType(inferred, this.b.batch)}`,
        this.loc(s.type.dtype),
        this.operandContext(inputs),
      );
    }
  }

  /** The source lines that define a node's operands. */
  private operandContext(inputs: readonly Operand[]): string[] {
    const lines = this.src.text.split("\n");
    const out: string[] = [];
    for (const o of new Set(inputs)) {
      const line = this.lineOf.get(o);
      if (line !== undefined) out.push(`    ${lines[line - 1]!.trim().replace(/\s+#.*$/, "")}   (line ${line})`);
    }
    return out.length === 0 ? [] : ["  where", ...out];
  }
}

/**
 * Parses the IR text form. `file` names the text in locations (a path, or a
 * label like "<input>"); errors are `CompileError`s at `file:line:col`.
 */
export function parseGraph(source: string, file = "<input>"): Graph {
  // A UTF-8 byte order mark (editors on Windows write one) is not part of the text.
  const text = source.startsWith("\uFEFF") ? source.slice(1) : source;
  rememberSource(file, text);
  const src = new SourceText(file, text);
  try {
    const lexed = tirLexer.tokenize(text);
    const lexError = lexerProblem(lexed.errors, text);
    if (lexError !== undefined) throw lexError;
    checkNesting(lexed.tokens);
    tirParser.input = lexed.tokens;
    const cst = tirParser.file();
    const parseError = parserProblem(tirParser.errors, text.length);
    if (parseError !== undefined) throw parseError;
    return new GraphReader(src, visitor.visit(cst) as FileAst).read();
  } catch (e) {
    if (e instanceof SyntaxProblem) throw new CompileError(e.message, src.loc(e.offset));
    throw e;
  }
}

/** Reads and parses a `.tir` file; locations use its absolute path. */
export function readGraph(path: string): Graph {
  const abs = resolve(path);
  let text: string;
  try {
    text = readFileSync(abs, "utf8");
  } catch {
    throw new CompileError(`Cannot read IR file "${path}"`);
  }
  return parseGraph(text, abs);
}
