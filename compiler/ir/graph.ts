/**
 * Immutable graph values. Nodes are `{ id, op, inputs, attrs, type }` in
 * topological order with `nodes[i].id === i`; passes never edit a graph, they
 * build a new one with `GraphBuilder`. Source locations and block scopes live
 * in a side map (`meta`) so they do not change node identity.
 */

import { CompileError, type SourceLoc } from "../diagnostics.ts";
import { arity, type Op, type OpAttrs } from "./ops.ts";
import { inferType, ShapeError } from "./shape.ts";
import { formatShape, shapeEq, type Shape, type TensorType } from "./types.ts";

/** A node id (number) or a parameter name (string). */
export type Operand = number | string;

export interface Node<K extends Op = Op> {
  readonly id: number;
  readonly op: K;
  readonly inputs: readonly Operand[];
  readonly attrs: OpAttrs[K];
  readonly type: TensorType;
}

/** Any node, discriminated on `op`. */
export type AnyNode = { [K in Op]: Node<K> }[Op];

export interface ParamInfo {
  readonly shape: readonly number[];
  readonly dtype: "f32";
}

/** Where a node came from: the user's source line and the enclosing block (e.g. `layer.3`). */
export interface NodeMeta {
  readonly loc?: SourceLoc;
  readonly scope?: string;
}

export interface Graph {
  readonly name: string;
  /** Name of the symbolic batch dimension, e.g. "B". */
  readonly batch: string;
  readonly nodes: readonly AnyNode[];
  readonly params: ReadonlyMap<string, ParamInfo>;
  readonly outputs: readonly { readonly name: string; readonly id: number }[];
  readonly meta: ReadonlyMap<number, NodeMeta>;
}

export function operandType(g: Pick<Graph, "nodes" | "params">, operand: Operand): TensorType {
  if (typeof operand === "number") {
    const n = g.nodes[operand];
    if (n === undefined) throw new Error(`internal: unknown node %${operand}`);
    return n.type;
  }
  const p = g.params.get(operand);
  if (p === undefined) throw new Error(`internal: unknown parameter @${operand}`);
  return { dtype: p.dtype, shape: p.shape };
}

/** Users of every node id, in node order. */
export function users(g: Graph): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const n of g.nodes) {
    for (const i of n.inputs) {
      if (typeof i !== "number") continue;
      const list = out.get(i) ?? [];
      list.push(n.id);
      out.set(i, list);
    }
  }
  return out;
}

/** Every node `to` is computed from, itself included. */
export function ancestors(g: Pick<Graph, "nodes">, to: number): Set<number> {
  const seen = new Set<number>();
  const stack = [to];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    for (const o of g.nodes[id]!.inputs) if (typeof o === "number") stack.push(o);
  }
  return seen;
}

/**
 * Builds a graph node by node, inferring and checking each node's type as it
 * is added. Shape errors become `CompileError`s at the node's source location.
 */
export class GraphBuilder {
  readonly nodes: AnyNode[] = [];
  readonly params = new Map<string, ParamInfo>();
  readonly meta = new Map<number, NodeMeta>();
  readonly outputs: { name: string; id: number }[] = [];

  constructor(readonly name: string, readonly batch: string) {}

  /** Declares a parameter; declaring the same name twice with another shape is an error. */
  param(name: string, shape: readonly number[], loc?: SourceLoc): string {
    const known = this.params.get(name);
    if (known !== undefined && !shapeEq(known.shape, shape)) {
      throw new CompileError(
        `Parameter "${name}" is declared twice with different shapes ${formatShape(known.shape)} and ${formatShape(shape)}`,
        loc,
      );
    }
    for (const d of shape) {
      if (!Number.isInteger(d) || d <= 0) {
        throw new CompileError(`Parameter "${name}" has an invalid shape ${formatShape(shape)}`, loc);
      }
    }
    this.params.set(name, { shape: [...shape], dtype: "f32" });
    return name;
  }

  /** Adds a node; its type is inferred, or checked against `type` when given. */
  add<K extends Op>(op: K, inputs: readonly Operand[], attrs: OpAttrs[K], meta: NodeMeta = {}, type?: TensorType): number {
    const [lo, hi] = arity[op];
    if (inputs.length < lo || inputs.length > hi) {
      throw new CompileError(`${op}: expects ${lo === hi ? lo : `${lo} to ${hi}`} operands but got ${inputs.length}`, meta.loc);
    }
    const operandTypes = inputs.map((i) => {
      if (typeof i === "number" && (i < 0 || i >= this.nodes.length)) {
        throw new CompileError(`${op}: operand %${i} is not defined before this node`, meta.loc);
      }
      if (typeof i === "string" && !this.params.has(i)) {
        throw new CompileError(`${op}: unknown parameter @${i}`, meta.loc);
      }
      return operandType(this, i);
    });
    let inferred: TensorType;
    try {
      inferred = inferType(op, operandTypes, attrs, this.batch);
    } catch (e) {
      if (e instanceof ShapeError) throw new CompileError(`${op}: ${e.message}`, meta.loc);
      throw e;
    }
    if (type !== undefined && (type.dtype !== inferred.dtype || !shapeEq(type.shape, inferred.shape))) {
      throw new CompileError(
        `${op}: declared type ${type.dtype}${formatShape(type.shape, this.batch)} does not match the inferred ${inferred.dtype}${formatShape(inferred.shape, this.batch)}`,
        meta.loc,
      );
    }
    const id = this.nodes.length;
    this.nodes.push({ id, op, inputs: [...inputs], attrs, type: inferred } as AnyNode);
    if (meta.loc !== undefined || meta.scope !== undefined) this.meta.set(id, meta);
    return id;
  }

  type(operand: Operand): TensorType {
    return operandType(this, operand);
  }

  output(name: string, id: number): void {
    if (this.outputs.some((o) => o.name === name)) throw new CompileError(`Output "${name}" is defined twice`);
    this.outputs.push({ name, id });
  }

  build(): Graph {
    return {
      name: this.name,
      batch: this.batch,
      nodes: [...this.nodes],
      params: new Map(this.params),
      outputs: [...this.outputs],
      meta: new Map(this.meta),
    };
  }
}

export type { Shape };
