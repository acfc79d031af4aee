/**
 * Lowering: a canonical graph becomes a kernel program, an ordered list of
 * steps, each one tfjs op call producing one tensor. One rule per IR op
 * (`{ [K in Op]: … }`), so a missing lowering is a type error. Disposal
 * points are added afterwards by plan_memory.
 */

import { operandType, type AnyNode, type Graph, type Node, type Operand } from "../ir/graph.ts";
import type { Op } from "../ir/ops.ts";
import type { DType, Shape, TensorType } from "../ir/types.ts";
import { permuteShape, planTranspose } from "./transpose.ts";

/** A JSON value written into the module as is. */
export type Literal = number | boolean | string | null | readonly number[] | { readonly [k: string]: number | boolean | string };

/** A kernel argument: a program tensor, a weight, a literal, a list of tensors, or a shape with B. */
export type Arg =
  | { readonly t: string }
  | { readonly w: string }
  | { readonly lit: Literal }
  | { readonly list: readonly Arg[] }
  | { readonly shape: Shape }
  | { readonly obj: Readonly<Record<string, Arg>> };

export interface Step {
  /** Name of the tensor this step produces. */
  readonly out: string;
  /** The function called: a tfjs op (`tf.matMul`) or a runtime kernel (`k.turboMerge`). */
  readonly kernel: string;
  readonly args: readonly Arg[];
  readonly shape: Shape;
  /**
   * For kernels returning an object of tensors: the field holding `out`, and
   * the other fields with the program tensors they become.
   */
  readonly field?: string;
  readonly extra: readonly { readonly field: string; readonly out: string; readonly shape: Shape; readonly dtype?: DType }[];
  /** IR node this step implements. */
  readonly node: number;
  /** Tensors whose last use is this step; filled in by plan_memory. */
  dispose: string[];
}

export interface Program {
  readonly name: string;
  readonly batch: string;
  readonly inputs: readonly { readonly name: string; readonly tensor: string; readonly shape: Shape; readonly dtype: DType }[];
  readonly outputs: readonly { readonly name: string; readonly tensor: string; readonly shape: Shape }[];
  readonly params: Graph["params"];
  readonly steps: Step[];
}

interface LowerContext {
  step(kernel: string, args: Arg[], shape: Shape): Arg;
  /** A kernel with several tensor results, returned as an object with these fields. */
  multi(kernel: string, args: Arg[], outs: readonly { field: string; shape: Shape; dtype?: DType }[]): Map<string, Arg>;
  /** The results of the multi-output step that lowered node `id`. */
  results(id: number): Map<string, Arg>;
  arg(o: Operand): Arg;
  type(o: Operand): TensorType;
}

type LowerRule<K extends Op> = (n: Node<K>, cx: LowerContext) => Arg;

const unaryCall = (kernel: string): LowerRule<Op> => (n, cx) => cx.step(kernel, [cx.arg(n.inputs[0]!)], n.type.shape);
const binaryCall = (kernel: string): LowerRule<Op> => (n, cx) =>
  cx.step(kernel, [cx.arg(n.inputs[0]!), cx.arg(n.inputs[1]!)], n.type.shape);
const decomposed = (n: AnyNode): never => {
  throw new Error(`internal: ${n.op} %${n.id} reached lowering; decompose_attention must run first`);
};

const rules: { readonly [K in Op]: LowerRule<K> } = {
  input: () => {
    throw new Error("internal: inputs are bound, not lowered");
  },
  add: binaryCall("tf.add"),
  mul: binaryCall("tf.mul"),
  scale: (n, cx) => cx.step("tf.mul", [cx.arg(n.inputs[0]!), { lit: n.attrs.value }], n.type.shape),
  // One kernel: a WebAssembly SIMD loop on wasm (runtime/kernels/gelu.ts), tfjs ops elsewhere.
  gelu: (n, cx) => cx.step("k.gelu", [cx.arg(n.inputs[0]!)], n.type.shape),
  log: unaryCall("tf.log"),
  sigmoid: unaryCall("tf.sigmoid"),
  exp: unaryCall("tf.exp"),
  sin: unaryCall("tf.sin"),
  cos: unaryCall("tf.cos"),
  // tf.gather(table, ids): ids [..] → rows [.., D].
  gather: (n, cx) => cx.step("tf.gather", [cx.arg(n.inputs[1]!), cx.arg(n.inputs[0]!)], n.type.shape),
  softmax: unaryCall("tf.softmax"),
  layer_norm: (n, cx) => {
    const [x, w, b] = n.inputs.map(cx.arg) as [Arg, Arg, Arg];
    const s = n.type.shape;
    const rowShape = [...s.slice(0, -1), 1];
    const mean = cx.step("tf.mean", [x, { lit: -1 }, { lit: true }], rowShape);
    const centred = cx.step("tf.sub", [x, mean], s);
    const variance = cx.step("tf.mean", [cx.step("tf.square", [centred], s), { lit: -1 }, { lit: true }], rowShape);
    const inv = cx.step("tf.rsqrt", [cx.step("tf.add", [variance, { lit: n.attrs.eps }], rowShape)], rowShape);
    const normed = cx.step("tf.mul", [centred, inv], s);
    return cx.step("tf.add", [cx.step("tf.mul", [normed, w], s), b], s);
  },
  linear: (n, cx) => {
    if (n.type.shape.length !== 2) throw new Error(`internal: linear %${n.id} is not 2-D; canonicalize must run before lowering`);
    const [x, w, b] = n.inputs.map(cx.arg) as [Arg, Arg, Arg | undefined];
    // A plain 2-D matMul then a bias add: tf.fused.matMul reshapes its operands
    // to 3-D internally, which costs more transient memory than the add.
    const y = cx.step("tf.matMul", [x, w], n.type.shape);
    return b === undefined ? y : cx.step("tf.add", [y, b], n.type.shape);
  },
  matmul: binaryCall("tf.matMul"),
  attention: decomposed,
  cls_attention: decomposed,
  turbo_merge: (n, cx) => {
    const [x, metric, size] = n.inputs.slice(0, 3).map(cx.arg) as [Arg, Arg, Arg];
    const tensors: Record<string, Arg> = { x, metric, size, clsAttn: n.attrs.semantic ? cx.arg(n.inputs[3]!) : { lit: null } };
    const { r, alpha, scale, fusion, beta, gamma, layer, cls, distill, protect, track } = n.attrs;
    const [b, tokens] = n.type.shape as [Shape[number], Shape[number]];
    const outs = [
      { field: "x", shape: n.type.shape },
      { field: "size", shape: [b, tokens, 1] },
    ];
    if (track) {
      const sources = n.inputs[n.inputs.length - 1]!;
      tensors.sources = cx.arg(sources);
      outs.push({ field: "sources", shape: [b, tokens, cx.type(sources).shape[2]!] });
    }
    const options = { r, alpha, scale, fusion, beta, gamma, layer, cls, distill, protect, trackSources: track };
    return cx.multi("k.turboMerge", [{ obj: tensors }, { lit: options }], outs).get("x")!;
  },
  merged_size: (n, cx) => cx.results(n.inputs[0] as number).get("size")!,
  merged_sources: (n, cx) => {
    const s = cx.results(n.inputs[0] as number).get("sources");
    if (s === undefined) throw new Error(`internal: merged_sources %${n.id} reads a merge that does not track sources`);
    return s;
  },
  window_merge: (n, cx) => {
    const [x, metric] = n.inputs.slice(0, 2).map(cx.arg) as [Arg, Arg];
    const semantic = n.attrs.semantic ? cx.arg(n.inputs[2]!) : { lit: null };
    const { r, grid, window, seed, alpha, scale } = n.attrs;
    const [b] = n.type.shape as [Shape[number]];
    const tokens = cx.type(n.inputs[0]!).shape[1] as number;
    const rows = typeof b === "number" ? b * tokens : { batch: b.batch * tokens };
    const outs = [
      { field: "x", shape: n.type.shape },
      { field: "restoreRows", shape: [rows], dtype: "i32" as const },
    ];
    return cx.multi("k.windowMerge", [{ obj: { x, metric, semantic } }, { obj: { r: { lit: r }, grid: { lit: grid }, window: { lit: window }, seed: { lit: seed }, alpha: { lit: alpha }, scale: { lit: scale } } }], outs).get("x")!;
  },
  window_restore: (n, cx) => {
    const rows = cx.results(n.inputs[1] as number).get("restoreRows")!;
    return cx.step("k.restore", [cx.arg(n.inputs[0]!), rows, { lit: n.attrs.tokens }], n.type.shape);
  },
  eye: (n, cx) => {
    const [b, size] = n.attrs.shape as [Shape[number], number];
    return cx.step("tf.eye", [{ lit: size }, { lit: size }, { shape: [b] }], n.type.shape);
  },
  fill: (n, cx) => cx.step("tf.fill", [{ shape: n.attrs.shape }, { lit: n.attrs.value }], n.type.shape),
  reshape: (n, cx) => cx.step("tf.reshape", [cx.arg(n.inputs[0]!), { shape: n.attrs.shape }], n.type.shape),
  transpose: (n, cx) => {
    const x = cx.arg(n.inputs[0]!);
    // Above rank 4, tfjs transposes element by element: go through ≤ 4-D stages (transpose.ts).
    const stages = planTranspose(cx.type(n.inputs[0]!).shape, n.attrs.perm);
    if (stages === undefined) return cx.step("tf.transpose", [x, { lit: n.attrs.perm }], n.type.shape);
    let y = x;
    for (const s of stages) {
      y = cx.step("tf.reshape", [y, { shape: s.shape }], s.shape);
      y = cx.step("tf.transpose", [y, { lit: s.perm }], permuteShape(s.shape, s.perm));
    }
    return cx.step("tf.reshape", [y, { shape: n.type.shape }], n.type.shape);
  },
  concat: (n, cx) => cx.step("tf.concat", [{ list: n.inputs.map(cx.arg) }, { lit: n.attrs.axis }], n.type.shape),
  slice: (n, cx) => {
    const rank = n.type.shape.length;
    const begin = Array.from({ length: rank }, (_, i) => (i === n.attrs.axis || i === n.attrs.axis + rank ? n.attrs.start : 0));
    const size = Array.from({ length: rank }, (_, i) => (i === n.attrs.axis || i === n.attrs.axis + rank ? n.attrs.end - n.attrs.start : -1));
    return cx.step("tf.slice", [cx.arg(n.inputs[0]!), { lit: begin }, { lit: size }], n.type.shape);
  },
  broadcast: (n, cx) => cx.step("tf.broadcastTo", [cx.arg(n.inputs[0]!), { shape: n.attrs.shape }], n.type.shape),
  mean: (n, cx) => cx.step("tf.mean", [cx.arg(n.inputs[0]!), { lit: n.attrs.axes }, { lit: n.attrs.keepDims }], n.type.shape),
  sum: (n, cx) => cx.step("tf.sum", [cx.arg(n.inputs[0]!), { lit: n.attrs.axes }, { lit: n.attrs.keepDims }], n.type.shape),
  max: (n, cx) => cx.step("tf.max", [cx.arg(n.inputs[0]!), { lit: n.attrs.axes }, { lit: n.attrs.keepDims }], n.type.shape),
};

/** Lowers a canonical graph to a kernel program (without disposals). */
export function lower(g: Graph): Program {
  const steps: Step[] = [];
  const value = new Map<number, Arg>();
  const inputs: { name: string; tensor: string; shape: Shape; dtype: DType }[] = [];
  let current = -1;
  const multiResults = new Map<number, Map<string, Arg>>();
  const cx: LowerContext = {
    step(kernel, args, shape) {
      const out = `t${steps.length}`;
      steps.push({ out, kernel, args, shape, node: current, extra: [], dispose: [] });
      return { t: out };
    },
    multi(kernel, args, outs) {
      const base = steps.length;
      const [first, ...rest] = outs;
      if (first === undefined) throw new Error("internal: a multi-output kernel needs outputs");
      const names = outs.map((_, i) => (i === 0 ? `t${base}` : `t${base}_${outs[i]!.field}`));
      const extra = rest.map((o, i) => ({ field: o.field, out: names[i + 1]!, shape: o.shape, ...(o.dtype === undefined ? {} : { dtype: o.dtype }) }));
      steps.push({ out: names[0]!, kernel, args, shape: first.shape, field: first.field, node: current, extra, dispose: [] });
      const results = new Map(outs.map((o, i) => [o.field, { t: names[i]! } as Arg]));
      multiResults.set(current, results);
      return results;
    },
    results(id) {
      const r = multiResults.get(id);
      if (r === undefined) throw new Error(`internal: %${id} is not a multi-output kernel`);
      return r;
    },
    arg(o) {
      if (typeof o === "string") return { w: o };
      const v = value.get(o);
      if (v === undefined) throw new Error(`internal: %${o} used before it was lowered`);
      return v;
    },
    type: (o) => operandType(g, o),
  };
  for (const n of g.nodes as readonly AnyNode[]) {
    current = n.id;
    if (n.op === "input") {
      const tensor = `x_${n.attrs.name.replace(/\W/g, "_")}`;
      inputs.push({ name: n.attrs.name, tensor, shape: n.type.shape, dtype: n.type.dtype });
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
