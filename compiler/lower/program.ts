/**
 * Lowering: a canonical graph becomes a kernel program, an ordered list of
 * steps, each one tfjs op call producing one tensor. One rule per IR op
 * (`{ [K in Op]: … }`), so a missing lowering is a type error. Disposal
 * points are added afterwards by plan_memory.
 */

import type { AnyNode, Graph, Node, Operand } from "../ir/graph.ts";
import type { Op } from "../ir/ops.ts";
import type { Shape } from "../ir/types.ts";

/** A kernel argument: a program tensor, a weight, a literal, a list of tensors, or a shape with B. */
export type Arg =
  | { readonly t: string }
  | { readonly w: string }
  | { readonly lit: number | boolean | readonly number[] }
  | { readonly list: readonly Arg[] }
  | { readonly shape: Shape }
  | { readonly obj: Readonly<Record<string, Arg>> };

export interface Step {
  /** Name of the tensor this step produces. */
  readonly out: string;
  /** The tfjs function, e.g. "matMul". */
  readonly kernel: string;
  readonly args: readonly Arg[];
  readonly shape: Shape;
  /** IR node this step implements. */
  readonly node: number;
  /** Tensors whose last use is this step; filled in by plan_memory. */
  dispose: string[];
}

export interface Program {
  readonly name: string;
  readonly batch: string;
  readonly inputs: readonly { readonly name: string; readonly tensor: string; readonly shape: Shape }[];
  readonly outputs: readonly { readonly name: string; readonly tensor: string; readonly shape: Shape }[];
  readonly params: Graph["params"];
  readonly steps: Step[];
}

interface LowerContext {
  step(kernel: string, args: Arg[], shape: Shape): Arg;
  arg(o: Operand): Arg;
}

type LowerRule<K extends Op> = (n: Node<K>, cx: LowerContext) => Arg;

const unaryCall = (kernel: string): LowerRule<Op> => (n, cx) => cx.step(kernel, [cx.arg(n.inputs[0]!)], n.type.shape);
const binaryCall = (kernel: string): LowerRule<Op> => (n, cx) =>
  cx.step(kernel, [cx.arg(n.inputs[0]!), cx.arg(n.inputs[1]!)], n.type.shape);

const rules: { readonly [K in Op]: LowerRule<K> } = {
  input: () => {
    throw new Error("internal: inputs are bound, not lowered");
  },
  add: binaryCall("add"),
  mul: binaryCall("mul"),
  scale: (n, cx) => cx.step("mul", [cx.arg(n.inputs[0]!), { lit: n.attrs.value }], n.type.shape),
  gelu: (n, cx) => {
    const x = cx.arg(n.inputs[0]!);
    const s = n.type.shape;
    const e = cx.step("erf", [cx.step("mul", [x, { lit: Math.SQRT1_2 }], s)], s);
    const half = cx.step("mul", [x, { lit: 0.5 }], s);
    return cx.step("add", [half, cx.step("mul", [half, e], s)], s);
  },
  log: unaryCall("log"),
  softmax: unaryCall("softmax"),
  layer_norm: (n, cx) => {
    const [x, w, b] = n.inputs.map(cx.arg) as [Arg, Arg, Arg];
    const s = n.type.shape;
    const rowShape = [...s.slice(0, -1), 1];
    const mean = cx.step("mean", [x, { lit: -1 }, { lit: true }], rowShape);
    const centred = cx.step("sub", [x, mean], s);
    const variance = cx.step("mean", [cx.step("square", [centred], s), { lit: -1 }, { lit: true }], rowShape);
    const inv = cx.step("rsqrt", [cx.step("add", [variance, { lit: n.attrs.eps }], rowShape)], rowShape);
    const normed = cx.step("mul", [centred, inv], s);
    return cx.step("add", [cx.step("mul", [normed, w], s), b], s);
  },
  linear: (n, cx) => {
    if (n.type.shape.length !== 2) throw new Error(`internal: linear %${n.id} is not 2-D; canonicalize must run before lowering`);
    const [x, w, b] = n.inputs.map(cx.arg) as [Arg, Arg, Arg | undefined];
    // A plain 2-D matMul then a bias add: tf.fused.matMul reshapes its operands
    // to 3-D internally, which costs more transient memory than the add.
    const y = cx.step("matMul", [x, w], n.type.shape);
    return b === undefined ? y : cx.step("add", [y, b], n.type.shape);
  },
  matmul: binaryCall("matMul"),
  attention: (n) => {
    throw new Error(`internal: attention %${n.id} reached lowering; decompose_attention must run first`);
  },
  reshape: (n, cx) => cx.step("reshape", [cx.arg(n.inputs[0]!), { shape: n.attrs.shape }], n.type.shape),
  transpose: (n, cx) => cx.step("transpose", [cx.arg(n.inputs[0]!), { lit: n.attrs.perm }], n.type.shape),
  concat: (n, cx) => cx.step("concat", [{ list: n.inputs.map(cx.arg) }, { lit: n.attrs.axis }], n.type.shape),
  slice: (n, cx) => {
    const rank = n.type.shape.length;
    const begin = Array.from({ length: rank }, (_, i) => (i === n.attrs.axis || i === n.attrs.axis + rank ? n.attrs.start : 0));
    const size = Array.from({ length: rank }, (_, i) => (i === n.attrs.axis || i === n.attrs.axis + rank ? n.attrs.end - n.attrs.start : -1));
    return cx.step("slice", [cx.arg(n.inputs[0]!), { lit: begin }, { lit: size }], n.type.shape);
  },
  broadcast: (n, cx) => cx.step("broadcastTo", [cx.arg(n.inputs[0]!), { shape: n.attrs.shape }], n.type.shape),
  mean: (n, cx) => cx.step("mean", [cx.arg(n.inputs[0]!), { lit: n.attrs.axes }, { lit: n.attrs.keepDims }], n.type.shape),
};

/** Lowers a canonical graph to a kernel program (without disposals). */
export function lower(g: Graph): Program {
  const steps: Step[] = [];
  const value = new Map<number, Arg>();
  const inputs: { name: string; tensor: string; shape: Shape }[] = [];
  let current = -1;
  const cx: LowerContext = {
    step(kernel, args, shape) {
      const out = `t${steps.length}`;
      steps.push({ out, kernel, args, shape, node: current, dispose: [] });
      return { t: out };
    },
    arg(o) {
      if (typeof o === "string") return { w: o };
      const v = value.get(o);
      if (v === undefined) throw new Error(`internal: %${o} used before it was lowered`);
      return v;
    },
  };
  for (const n of g.nodes as readonly AnyNode[]) {
    current = n.id;
    if (n.op === "input") {
      const tensor = `x_${n.attrs.name.replace(/\W/g, "_")}`;
      inputs.push({ name: n.attrs.name, tensor, shape: n.type.shape });
      value.set(n.id, { t: tensor });
      continue;
    }
    value.set(n.id, (rules[n.op] as LowerRule<Op>)(n, cx));
  }
  const outputs = g.outputs.map((o) => {
    const v = value.get(o.id);
    if (v === undefined || !("t" in v)) throw new Error(`internal: output ${o.name} is not a program tensor`);
    return { name: o.name, tensor: v.t, shape: g.nodes[o.id]!.type.shape };
  });
  return { name: g.name, batch: g.batch, inputs, outputs, params: g.params, steps };
}
