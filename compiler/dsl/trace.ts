/**
 * Tracing: `model(name, build)` describes a model as a plain function from
 * inputs to outputs; `trace(spec)` runs that function once with symbolic
 * tensors and records every builder call as an IR node, together with the
 * spec line that made it. There is no global model state: the active trace
 * exists only while `trace()` runs (JAX's tracing context, not a Proxy).
 */

import { fileURLToPath } from "node:url";
import { callerLoc, CompileError, stackLoc, type SourceLoc } from "../diagnostics.ts";
import { GraphBuilder, type Graph, type Operand } from "../ir/graph.ts";
import type { Op, OpAttrs } from "../ir/ops.ts";
import { formatType, type Dim, type Shape, type TensorType } from "../ir/types.ts";

/** Frames inside the compiler are library frames; locations skip them. */
const libraryDir = fileURLToPath(new URL("..", import.meta.url));

const tensorBrand = Symbol.for("turbograph.Tensor");

/**
 * A symbolic tensor inside a trace. Like the active trace below, it is
 * recognised by brand, so a spec that loaded its own copy of the DSL (through
 * another module loader) still traces into the compiler's graph.
 */
export class Tensor {
  static [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[tensorBrand] === true;
  }
  readonly [tensorBrand] = true;
  /** @internal */
  constructor(readonly trace: Trace, readonly id: number) {}
  get type(): TensorType {
    return this.trace.builder.nodes[this.id]!.type;
  }
  get shape(): Shape {
    return this.type.shape;
  }
  get rank(): number {
    return this.shape.length;
  }
  /** The last dimension (feature width). */
  get width(): Dim {
    return this.shape[this.shape.length - 1]!;
  }
  toString(): string {
    return `Tensor(%${this.id}: ${formatType(this.type, this.trace.builder.batch)})`;
  }
}

/** A model description: a name, the batch dimension's name and the function that builds it. */
export interface ModelSpec {
  readonly kind: "turbograph.model";
  readonly name: string;
  readonly batch: string;
  readonly loc: SourceLoc | undefined;
  readonly build: () => Record<string, Tensor>;
}

export interface ModelOptions {
  /** Name of the symbolic batch dimension used by `input()` (default "B"). */
  batch?: string;
}

export function model(name: string, build: () => Record<string, Tensor>, options: ModelOptions = {}): ModelSpec {
  if (typeof name !== "string") throw new CompileError(`model(): the name must be a string, not ${describe(name)}`, here());
  if (typeof build !== "function") throw new CompileError(`model "${name}": the second argument must be the build function, not ${describe(build)}`, here());
  if (typeof options !== "object" || options === null || (options.batch !== undefined && (typeof options.batch !== "string" || !/^[A-Za-z_]\w*$/.test(options.batch)))) {
    throw new CompileError(`model "${name}": options.batch must be a name like "B", not ${describe(options?.batch)}`, here());
  }
  return { kind: "turbograph.model", name, batch: options.batch ?? "B", loc: here(), build };
}

export function isModelSpec(value: unknown): value is ModelSpec {
  return typeof value === "object" && value !== null && (value as ModelSpec).kind === "turbograph.model";
}

/** @internal The state of one running trace. */
export class Trace {
  readonly builder: GraphBuilder;
  readonly scopes: string[] = [];
  readonly started = Date.now();
  constructor(name: string, batch: string, readonly budget: Required<TraceOptions> = traceDefaults) {
    this.builder = new GraphBuilder(name, batch);
  }
  /** Throws a located error once the graph or the time spent outgrows the trace budget. */
  checkBudget(builder: string): void {
    const nodes = this.builder.nodes.length + this.builder.params.size;
    if (nodes >= this.budget.maxNodes) {
      throw new CompileError(`${builder}: model "${this.builder.name}" grew past ${this.budget.maxNodes} nodes while tracing; a build that never stops adding layers? (raise the limit with --max-nodes / trace({ maxNodes }))`, here());
    }
    const ms = Date.now() - this.started;
    if (ms > this.budget.timeoutMs) {
      throw new CompileError(`${builder}: tracing model "${this.builder.name}" took over ${this.budget.timeoutMs / 1000} s; a build that never returns? (raise the limit with --trace-timeout / trace({ timeoutMs }))`, here());
    }
  }
}

/** The trace budget: no spec makes the compiler build forever. */
export interface TraceOptions {
  /** Most nodes plus parameters a trace may record (default 200,000). */
  maxNodes?: number;
  /** Most milliseconds a trace may run, checked at every builder call (default 60,000). */
  timeoutMs?: number;
}

export const traceDefaults: Required<TraceOptions> = { maxNodes: 200_000, timeoutMs: 60_000 };

/** The largest tensor dimension: tfjs holds sizes as 32-bit signed integers. */
const maxDim = 2 ** 31 - 1;

/** The running trace lives on globalThis so every copy of this module sees it. */
const activeKey = Symbol.for("turbograph.activeTrace");
const shared = globalThis as unknown as Record<symbol, Trace | undefined>;
const getActive = (): Trace | undefined => shared[activeKey];
const setActive = (t: Trace | undefined): void => {
  shared[activeKey] = t;
};

/** The location of the user's line that called the current builder. */
export function here(): SourceLoc | undefined {
  return callerLoc([libraryDir]);
}

/** How a non-tensor argument reads in an error: its type, and its value when short. */
export function describe(v: unknown): string {
  if (v === undefined || v === null) return String(v);
  if (typeof v === "object") return Array.isArray(v) ? "an array" : "an object";
  const text = typeof v === "string" ? JSON.stringify(v) : String(v);
  return `the ${typeof v} ${text.length > 40 ? `${text.slice(0, 40)}…` : text}`;
}

/** The active trace; builders called outside `model()` get a located error. */
export function currentTrace(builder: string): Trace {
  const active = getActive();
  if (active === undefined) {
    throw new CompileError(`${builder}: called outside a model; call builders inside the function given to model()`, here());
  }
  return active;
}

/** Records one node in the active trace at the caller's location. */
export function emit<K extends Op>(op: K, inputs: readonly (Tensor | string)[], attrs: OpAttrs[K], builder: string = op): Tensor {
  const t = currentTrace(builder);
  t.checkBudget(builder);
  const operands: Operand[] = inputs.map((i, k) => {
    if (typeof i === "string") return i;
    if (!(i instanceof Tensor)) throw new CompileError(`${builder}: argument ${k + 1} is ${describe(i)}, not a tensor`, here());
    if (i.trace !== t) throw new CompileError(`${builder}: a tensor from another model was used here`, here());
    return i.id;
  });
  const scope = t.scopes[t.scopes.length - 1];
  const meta = scope === undefined ? { loc: here() } : { loc: here(), scope };
  return new Tensor(t, t.builder.add(op, operands, attrs, meta));
}

/** Declares a parameter of the active trace and returns its name (the operand). */
export function param(name: string, shape: readonly number[], builder = "param"): string {
  const t = currentTrace(builder);
  t.checkBudget(builder);
  const big = shape.find((d) => d > maxDim);
  if (big !== undefined) throw new CompileError(`${builder}: parameter "${name}" would have dim ${big}, larger than ${maxDim}, the largest a tensor dimension can be`, here());
  return t.builder.param(name, shape, here());
}

/** Runs `fn` with nodes attributed to the block `name` (used by the plan's per-block report). */
export function block<T>(name: string, fn: () => T): T {
  const t = currentTrace("block");
  t.scopes.push(name);
  try {
    return fn();
  } finally {
    t.scopes.pop();
  }
}

export interface InputOptions {
  /** "f32" (default), or "i32" for token ids, which only `embedding()`/`gather()` reads. */
  dtype?: "f32" | "i32";
}

/** A model input. Dims are numbers, or the model's batch name (at most once). */
export function input(name: string, shape: readonly (number | string)[], options: InputOptions = {}): Tensor {
  const t = currentTrace("input");
  const loc = here();
  if (typeof name !== "string" || name === "") throw new CompileError(`input: the name must be a non-empty string, not ${describe(name)}`, loc);
  if (typeof options !== "object" || options === null) throw new CompileError(`input "${name}": the options are ${describe(options)}; pass { dtype: "i32" } or nothing`, loc);
  const dtype = options.dtype ?? "f32";
  if (dtype !== "f32" && dtype !== "i32") throw new CompileError(`input "${name}": dtype ${describe(dtype)} is not "f32" or "i32"`, loc);
  if (!Array.isArray(shape)) throw new CompileError(`input "${name}": the shape must be an array of dims, not ${describe(shape)}`, loc);
  const batch = t.builder.batch;
  let batchCount = 0;
  const dims: Dim[] = shape.map((d) => {
    if (typeof d === "string") {
      if (d !== batch) {
        throw new CompileError(`input "${name}": dim "${d}" is not the model's batch dimension "${batch}"; every other dim must be a number`, loc);
      }
      batchCount++;
      return { batch: 1 };
    }
    if (!Number.isInteger(d) || d <= 0) throw new CompileError(`input "${name}": dim ${typeof d === "number" ? d : describe(d)} must be a positive integer`, loc);
    if (d > maxDim) throw new CompileError(`input "${name}": dim ${d} is larger than ${maxDim}, the largest a tensor dimension can be`, loc);
    return d;
  });
  if (batchCount > 1) throw new CompileError(`input "${name}": the batch dimension "${batch}" appears more than once`, loc);
  if (t.builder.nodes.some((n) => n.op === "input" && n.attrs.name === name)) {
    throw new CompileError(`input "${name}" is declared twice`, loc);
  }
  const type: TensorType = { dtype, shape: dims };
  const id = t.builder.nodes.length;
  t.builder.nodes.push({ id, op: "input", inputs: [], attrs: { name }, type });
  t.builder.meta.set(id, { loc });
  return new Tensor(t, id);
}

/**
 * An exception thrown by the user's own code inside a spec (not by a builder)
 * is a user error located at the spec's throwing line; one thrown from inside
 * the compiler is left alone and surfaces as `internal:`.
 */
function asSpecError(e: unknown, spec: ModelSpec): unknown {
  if (e instanceof CompileError) return e;
  if (!(e instanceof Error)) return new CompileError(`model "${spec.name}": the spec threw ${describe(e)}, not an Error`, spec.loc);
  const top = stackLoc(e.stack ?? "", []);
  if (top !== undefined && top.file.startsWith(libraryDir)) return e;
  return new CompileError(`model "${spec.name}": the spec threw ${e.name}: ${e.message}`, top ?? spec.loc);
}

/** Traces a model spec into a graph. Shape errors point at the spec's line. */
export function trace(spec: ModelSpec, options: TraceOptions = {}): Graph {
  if (getActive() !== undefined) throw new CompileError(`model "${spec.name}": trace() cannot be nested inside another model`, spec.loc);
  const budget = { ...traceDefaults, ...options };
  for (const [k, v] of Object.entries(budget)) {
    if (!(typeof v === "number" && v > 0)) throw new CompileError(`trace(): ${k} must be a positive number, not ${String(v)}`, spec.loc);
  }
  const t = new Trace(spec.name, spec.batch, budget);
  setActive(t);
  let outputs: Record<string, Tensor>;
  try {
    outputs = spec.build();
  } catch (e) {
    throw asSpecError(e, spec);
  } finally {
    setActive(undefined);
  }
  if (typeof outputs !== "object" || outputs === null || Object.keys(outputs).length === 0) {
    throw new CompileError(`model "${spec.name}": the build function must return an object of named output tensors`, spec.loc);
  }
  for (const [name, tensor] of Object.entries(outputs)) {
    if (!(tensor instanceof Tensor) || tensor.trace !== t) {
      throw new CompileError(`model "${spec.name}": output "${name}" is not a tensor of this model`, spec.loc);
    }
    t.builder.output(name, tensor.id);
  }
  return t.builder.build();
}
