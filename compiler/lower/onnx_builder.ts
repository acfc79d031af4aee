/**
 * A small builder for one ONNX graph: nodes, constant initializers (deduplicated),
 * typed values, the symbolic batch, and the final ModelProto bytes. The
 * protobuf messages are onnx-proto's (generated from onnx.proto by protobufjs);
 * nothing here encodes bytes by hand.
 */

import onnxProto from "onnx-proto";
import type { Shape } from "../ir/types.ts";

export const { onnx } = onnxProto;
type Attribute = InstanceType<typeof onnx.AttributeProto>;

/** The opset every emitted graph imports (default domain only), and the IR version that goes with it. */
export const ONNX_OPSET = 17;
export const ONNX_IR_VERSION = 8;

const { FLOAT, INT32, INT64 } = onnx.TensorProto.DataType;

/** Attribute constructors: ONNX attributes are typed, so each kind has its own. */
export const attr = {
  int: (name: string, i: number): Attribute => onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i }),
  float: (name: string, f: number): Attribute => onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.FLOAT, f }),
  ints: (name: string, ints: readonly number[]): Attribute =>
    onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: [...ints] }),
  string: (name: string, s: string): Attribute =>
    onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(s) }),
  tensor: (name: string, t: InstanceType<typeof onnx.TensorProto>): Attribute =>
    onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.TENSOR, t }),
};

/** A float32 tensor proto with its data in raw little-endian bytes. */
export function floatTensor(name: string, dims: readonly number[], values: ArrayLike<number>): InstanceType<typeof onnx.TensorProto> {
  const data = Float32Array.from(values);
  return onnx.TensorProto.create({ name, dims: [...dims], dataType: FLOAT, rawData: new Uint8Array(data.buffer) });
}

function int64Tensor(name: string, dims: readonly number[], values: readonly number[]): InstanceType<typeof onnx.TensorProto> {
  const data = BigInt64Array.from(values.map((v) => BigInt(v)));
  return onnx.TensorProto.create({ name, dims: [...dims], dataType: INT64, rawData: new Uint8Array(data.buffer) });
}

/** A dimension's ONNX name: the batch is `B`, a batch factor `B*17`. */
export const dimParam = (batch: string, k: number): string => (k === 1 ? batch : `${batch}*${k}`);

/** A value's type: float32, or int32 for token ids. */
export function valueInfo(name: string, shape: Shape, batch: string, dtype: "f32" | "i32" = "f32"): InstanceType<typeof onnx.ValueInfoProto> {
  const dim = shape.map((d) =>
    typeof d === "number" ? onnx.TensorShapeProto.Dimension.create({ dimValue: d }) : onnx.TensorShapeProto.Dimension.create({ dimParam: dimParam(batch, d.batch) })
  );
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create({ elemType: dtype === "i32" ? INT32 : FLOAT, shape: onnx.TensorShapeProto.create({ dim }) }) }),
  });
}

export class OnnxGraphBuilder {
  readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  readonly initializers: InstanceType<typeof onnx.TensorProto>[] = [];
  readonly valueInfo: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly constants = new Map<string, string>();
  private counter = 0;
  /** The batch size as an int64 [1] value, made on first use. */
  private batchValue: string | undefined;

  /**
   * @param batch the batch dimension's name
   * @param batchSource where the batch is read at run time: a graph input, its batch axis and factor
   */
  constructor(
    readonly batch: string,
    private readonly batchSource: { readonly input: string; readonly axis: number; readonly factor: number } | undefined,
  ) {}

  /** A fresh value name under `prefix`. */
  fresh(prefix: string): string {
    return `${prefix}/${this.counter++}`;
  }

  /** Adds a node; returns its output names (fresh ones under `name` unless given). */
  node(op: string, inputs: readonly string[], name: string, options: { attrs?: readonly Attribute[]; outputs?: number | readonly string[] } = {}): string[] {
    const outputs = Array.isArray(options.outputs)
      ? [...(options.outputs as readonly string[])]
      : Array.from({ length: (options.outputs as number | undefined) ?? 1 }, () => this.fresh(name));
    this.nodes.push(onnx.NodeProto.create({ opType: op, input: [...inputs], output: outputs, name: this.fresh(name), attribute: [...(options.attrs ?? [])] }));
    return outputs;
  }

  /** One-output node. */
  op(op: string, inputs: readonly string[], name: string, attrs: readonly Attribute[] = [], output?: string): string {
    return this.node(op, inputs, name, { attrs, outputs: output === undefined ? 1 : [output] })[0]!;
  }

  private constant(key: string, make: (name: string) => InstanceType<typeof onnx.TensorProto>): string {
    const known = this.constants.get(key);
    if (known !== undefined) return known;
    const name = `/const/${this.constants.size}`;
    this.initializers.push(make(name));
    this.constants.set(key, name);
    return name;
  }

  /** A float32 constant (scalar when `dims` is empty). Values are rounded to float32 as tfjs does. */
  floats(values: readonly number[], dims: readonly number[] = []): string {
    return this.constant(`f${JSON.stringify(dims)}:${values.map((v) => (Object.is(v, -0) ? "-0" : String(v))).join(",")}`, (n) => floatTensor(n, dims, values));
  }

  /** An int64 constant vector (or scalar with `dims` []). */
  ints(values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.constant(`i${JSON.stringify(dims)}:${values.join(",")}`, (n) => int64Tensor(n, dims, values));
  }

  /** The run's batch size B as an int64 [1] value. */
  private batchSize(): string {
    if (this.batchValue !== undefined) return this.batchValue;
    const s = this.batchSource;
    if (s === undefined) throw new Error("internal: a shape depends on the batch but the program has no batched input");
    const dim = this.op("Shape", [s.input], "/batch", [attr.int("start", s.axis), attr.int("end", s.axis + 1)]);
    this.batchValue = s.factor === 1 ? dim : this.op("Div", [dim, this.ints([s.factor])], "/batch");
    return this.batchValue;
  }

  /** A shape as an int64 value: a constant when static, else built from B at run time. */
  shape(shape: Shape, name: string): string {
    if (shape.every((d) => typeof d === "number")) return this.ints(shape as number[]);
    const parts: string[] = [];
    let run: number[] = [];
    for (const d of shape) {
      if (typeof d === "number") {
        run.push(d);
        continue;
      }
      if (run.length > 0) parts.push(this.ints(run));
      run = [];
      parts.push(d.batch === 1 ? this.batchSize() : this.op("Mul", [this.batchSize(), this.ints([d.batch])], name));
    }
    if (run.length > 0) parts.push(this.ints(run));
    return parts.length === 1 ? parts[0]! : this.op("Concat", parts, name, [attr.int("axis", 0)]);
  }

  /** A reshape target: static dims as they are, the one batch dim as −1 (a tensor never has two). */
  reshapeTarget(shape: Shape): string {
    const batched = shape.filter((d) => typeof d !== "number").length;
    if (batched > 1) throw new Error(`internal: reshape target with ${batched} batch dimensions`);
    if (shape.some((d) => d === 0)) throw new Error("internal: reshape target with a zero dimension");
    return this.ints(shape.map((d) => (typeof d === "number" ? d : -1)));
  }
}

export interface ModelParts {
  readonly graphName: string;
  readonly doc: string;
  readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[];
  readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[];
  readonly metadata: Readonly<Record<string, string>>;
}

/** The ModelProto bytes of a built graph. */
export function encodeModel(b: OnnxGraphBuilder, parts: ModelParts): Uint8Array {
  const graph = onnx.GraphProto.create({
    name: parts.graphName,
    docString: parts.doc,
    node: b.nodes,
    initializer: b.initializers,
    input: parts.inputs,
    output: parts.outputs,
    valueInfo: b.valueInfo,
  });
  const model = onnx.ModelProto.create({
    irVersion: ONNX_IR_VERSION,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: "", version: ONNX_OPSET })],
    producerName: "turbograph",
    producerVersion: "0.1.0",
    graph,
    metadataProps: Object.entries(parts.metadata).map(([key, value]) => onnx.StringStringEntryProto.create({ key, value })),
  });
  const problem = onnx.ModelProto.verify(model);
  if (problem !== null) throw new Error(`internal: ONNX model does not verify: ${problem}`);
  return onnx.ModelProto.encode(model).finish();
}
