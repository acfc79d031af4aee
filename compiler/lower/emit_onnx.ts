/**
 * emit_onnx — renders the same planned kernel program that emit_ts writes as
 * TypeScript, as an ONNX model (opset 17, default domain only): one rule per
 * kernel the lowering produces, each a short run of standard ONNX ops, the
 * Turbo merge included (onnx_turbo_merge.ts). Where one IR node was lowered
 * to several steps that ONNX has as one op — layer_norm's nine steps are
 * opset 17's LayerNormalization, a transpose above rank 4 that lowering
 * staged for tfjs is one Transpose — the run of steps is matched exactly and
 * rendered as that op (`stepRuns`), so onnxruntime gets its fused kernel
 * instead of having to rediscover it (its own fusion does not recognise these
 * forms).
 *
 * The graph's inputs are the model inputs (the batch a symbolic dimension
 * named after the plan's batch, e.g. `B`) and then every parameter by its
 * name with its static shape; the runtime turns the parameter inputs into
 * initializers holding the weights when it loads (spec/pipeline.md, "ONNX
 * target"). Every program tensor gets a value_info with its static shape;
 * the plan travels in the metadata under `turbograph.plan`.
 */

import type { Plan } from "../contract/plan.ts";
import type { Shape } from "../ir/types.ts";
import { CompileError } from "../diagnostics.ts";
import { attr, encodeModel, floatTensor, OnnxGraphBuilder, valueInfo } from "./onnx_builder.ts";
import { emitTurboMerge, mergeOptionKeys, type MergeOptions } from "./onnx_turbo_merge.ts";
import { emitRestore, emitWindowMerge, windowOptionKeys, type WindowMergeOptions } from "./onnx_window_merge.ts";
import type { Arg, Program, Step } from "./program.ts";
import { permuteShape, planTranspose } from "./transpose.ts";

/** The metadata key holding the plan JSON. */
export const ONNX_PLAN_KEY = "turbograph.plan";

interface EmitContext {
  readonly g: OnnxGraphBuilder;
  /** The ONNX value of a tensor, weight or scalar literal argument. */
  value(a: Arg): string;
  /** The static shape of a tensor or weight argument. */
  shapeOf(a: Arg): Shape;
  /** The ONNX name of a step's output (or of one of its extra outputs). */
  output(name: string): string;
  readonly name: string;
}

type KernelRule = (s: Step, cx: EmitContext) => void;

const lit = (a: Arg | undefined): unknown => {
  if (a === undefined || !("lit" in a)) throw new Error(`internal: expected a literal argument, got ${JSON.stringify(a)}`);
  return a.lit;
};
const axesOf = (a: Arg | undefined): number[] => {
  const v = lit(a);
  return Array.isArray(v) ? [...(v as number[])] : [v as number];
};
const shapeArg = (a: Arg | undefined): Shape => {
  if (a === undefined || !("shape" in a)) throw new Error(`internal: expected a shape argument, got ${JSON.stringify(a)}`);
  return a.shape;
};

const unary = (op: string): KernelRule => (s, cx) => void cx.g.op(op, [cx.value(s.args[0]!)], cx.name, [], cx.output(s.out));
const binary = (op: string): KernelRule => (s, cx) => void cx.g.op(op, [cx.value(s.args[0]!), cx.value(s.args[1]!)], cx.name, [], cx.output(s.out));
const reduceWithAttr = (op: string): KernelRule => (s, cx) =>
  void cx.g.op(op, [cx.value(s.args[0]!)], cx.name, [attr.ints("axes", axesOf(s.args[1])), attr.int("keepdims", lit(s.args[2]) ? 1 : 0)], cx.output(s.out));

/** One rule per kernel that lowering (program.ts) emits. */
const kernelRules: Readonly<Record<string, KernelRule>> = {
  "tf.add": binary("Add"),
  "tf.sub": binary("Sub"),
  "tf.mul": binary("Mul"),
  "tf.matMul": binary("MatMul"),
  // tf.gather(table, ids): Gather on axis 0 takes the int32 ids as they are.
  "tf.gather": (s, cx) => void cx.g.op("Gather", [cx.value(s.args[0]!), cx.value(s.args[1]!)], cx.name, [attr.int("axis", 0)], cx.output(s.out)),
  "tf.log": unary("Log"),
  "tf.sigmoid": unary("Sigmoid"),
  "tf.exp": unary("Exp"),
  "tf.sin": unary("Sin"),
  "tf.cos": unary("Cos"),
  "tf.square": (s, cx) => {
    const x = cx.value(s.args[0]!);
    cx.g.op("Mul", [x, x], cx.name, [], cx.output(s.out));
  },
  "tf.rsqrt": (s, cx) => void cx.g.op("Reciprocal", [cx.g.op("Sqrt", [cx.value(s.args[0]!)], cx.name)], cx.name, [], cx.output(s.out)),
  "tf.softmax": (s, cx) => void cx.g.op("Softmax", [cx.value(s.args[0]!)], cx.name, [attr.int("axis", -1)], cx.output(s.out)),
  // Exact GELU, 0.5·x·(1 + erf(x/√2)); Gelu itself is opset 20.
  "k.gelu": (s, cx) => {
    const { g, name } = cx;
    const x = cx.value(s.args[0]!);
    const erf = g.op("Erf", [g.op("Div", [x, g.floats([Math.SQRT2])], name)], name);
    g.op("Mul", [g.op("Mul", [x, g.floats([0.5])], name), g.op("Add", [erf, g.floats([1])], name)], name, [], cx.output(s.out));
  },
  "tf.mean": reduceWithAttr("ReduceMean"),
  "tf.max": reduceWithAttr("ReduceMax"),
  // ReduceSum takes its axes as an input from opset 13 on.
  "tf.sum": (s, cx) =>
    void cx.g.op("ReduceSum", [cx.value(s.args[0]!), cx.g.ints(axesOf(s.args[1]))], cx.name, [attr.int("keepdims", lit(s.args[2]) ? 1 : 0)], cx.output(s.out)),
  "tf.reshape": (s, cx) => void cx.g.op("Reshape", [cx.value(s.args[0]!), cx.g.reshapeTarget(shapeArg(s.args[1]))], cx.name, [], cx.output(s.out)),
  "tf.transpose": (s, cx) => void cx.g.op("Transpose", [cx.value(s.args[0]!)], cx.name, [attr.ints("perm", lit(s.args[1]) as number[])], cx.output(s.out)),
  "tf.concat": (s, cx) => {
    const list = s.args[0];
    if (list === undefined || !("list" in list)) throw new Error("internal: tf.concat without a list");
    cx.g.op("Concat", list.list.map(cx.value), cx.name, [attr.int("axis", lit(s.args[1]) as number)], cx.output(s.out));
  },
  "tf.slice": (s, cx) => {
    const begin = lit(s.args[1]) as number[];
    const size = lit(s.args[2]) as number[];
    const axes: number[] = [];
    const starts: number[] = [];
    const ends: number[] = [];
    begin.forEach((b, axis) => {
      if (b === 0 && size[axis] === -1) return;
      axes.push(axis);
      starts.push(b);
      ends.push(size[axis] === -1 ? Number.MAX_SAFE_INTEGER : b + size[axis]!);
    });
    const { g } = cx;
    if (axes.length === 0) g.op("Identity", [cx.value(s.args[0]!)], cx.name, [], cx.output(s.out));
    else g.op("Slice", [cx.value(s.args[0]!), g.ints(starts), g.ints(ends), g.ints(axes)], cx.name, [], cx.output(s.out));
  },
  "tf.broadcastTo": (s, cx) => void cx.g.op("Expand", [cx.value(s.args[0]!), cx.g.shape(shapeArg(s.args[1]), cx.name)], cx.name, [], cx.output(s.out)),
  "tf.fill": (s, cx) => {
    const value = lit(s.args[1]) as number;
    const { g } = cx;
    g.op("ConstantOfShape", [g.shape(shapeArg(s.args[0]), cx.name)], cx.name, [attr.tensor("value", floatTensor("value", [1], [value]))], cx.output(s.out));
  },
  // tf.eye(n, n, [b]): one identity, expanded over the leading dims.
  "tf.eye": (s, cx) => {
    const n = lit(s.args[0]) as number;
    if (lit(s.args[1]) !== n) throw new Error("internal: tf.eye of a non-square shape");
    const lead = shapeArg(s.args[2]);
    const eye = Array.from({ length: n * n }, (_, i) => (Math.floor(i / n) === i % n ? 1 : 0));
    const { g } = cx;
    g.op("Expand", [g.floats(eye, [...lead.map(() => 1), n, n]), g.shape([...lead, n, n], cx.name)], cx.name, [], cx.output(s.out));
  },
  "k.turboMerge": (s, cx) => {
    const tensors = s.args[0];
    if (tensors === undefined || !("obj" in tensors)) throw new Error("internal: k.turboMerge without its tensors");
    const t = tensors.obj;
    const o = lit(s.args[1]) as unknown as MergeOptions;
    // A merge option this rendering does not know would be silently ignored: refuse it instead.
    const unknown = Object.keys(o).filter((k) => !(mergeOptionKeys as readonly string[]).includes(k));
    if (unknown.length > 0) throw new Error(`internal: the ONNX rendering of turbo_merge does not handle option ${unknown.join(", ")}`);
    const optional = (a: Arg | undefined) => (a === undefined || ("lit" in a && a.lit === null) ? undefined : cx.value(a));
    const field = (f: string) => (s.field === f ? s.out : s.extra.find((e) => e.field === f)?.out);
    const sourcesOut = field("sources");
    const n = cx.shapeOf(t.x!)[1];
    if (typeof n !== "number") throw new Error("internal: the merge's token count is not static");
    emitTurboMerge(
      cx.g,
      s.out,
      { x: cx.value(t.x!), metric: cx.value(t.metric!), size: cx.value(t.size!), clsAttn: optional(t.clsAttn), sources: optional(t.sources) },
      n,
      o,
      { x: cx.output(field("x")!), size: cx.output(field("size")!), sources: sourcesOut === undefined ? undefined : cx.output(sourcesOut) },
      s.shape[1]!,
    );
  },
  "k.windowMerge": (s, cx) => {
    const [tensors, options] = s.args;
    if (tensors === undefined || !("obj" in tensors) || options === undefined || !("obj" in options)) throw new Error("internal: k.windowMerge without its tensors and options");
    const t = tensors.obj;
    const o = Object.fromEntries(Object.entries(options.obj).map(([k, a]) => [k, lit(a)])) as unknown as WindowMergeOptions;
    const unknown = Object.keys(o).filter((k) => !(windowOptionKeys as readonly string[]).includes(k));
    if (unknown.length > 0) throw new Error(`internal: the ONNX rendering of window_merge does not handle option ${unknown.join(", ")}`);
    const semantic = t.semantic === undefined || ("lit" in t.semantic && t.semantic.lit === null) ? undefined : cx.value(t.semantic);
    const n = cx.shapeOf(t.x!)[1];
    if (typeof n !== "number") throw new Error("internal: the merge's token count is not static");
    const rows = s.extra.find((e) => e.field === "restoreRows");
    if (s.field !== "x" || rows === undefined) throw new Error("internal: k.windowMerge's results are not x and restoreRows");
    emitWindowMerge(cx.g, s.out, { x: cx.value(t.x!), metric: cx.value(t.metric!), semantic }, n, s.shape[2] as number, s.shape[0]!, o, { x: cx.output(s.out), restoreRows: cx.output(rows.out) });
  },
  "k.restore": (s, cx) => {
    const [y, rows] = s.args as [Arg, Arg];
    emitRestore(cx.g, s.out, cx.value(y), cx.value(rows), s.shape[2] as number, s.shape, cx.output(s.out));
  },
};

/** A run of steps rendered as one ONNX op: how many steps it covers and how to emit it. */
interface StepRun {
  readonly length: number;
  emit(cx: EmitContext): void;
}

/** Equal as written in the program (args, shapes, perms are plain JSON values). */
const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
const sameArg = (a: Arg | undefined, b: Arg): boolean => a !== undefined && same(a, b);
const LAYER_NORM_KERNELS = ["tf.mean", "tf.sub", "tf.square", "tf.mean", "tf.add", "tf.rsqrt", "tf.mul", "tf.mul", "tf.add"] as const;

/**
 * program.ts's layer_norm lowering, step for step: mean → centre → square →
 * mean → + eps → rsqrt → × → × scale → + bias, all of one IR node, each step
 * reading the one before as written there, scale and bias 1-D over the last axis.
 */
function layerNormRun(steps: readonly Step[], i: number, shapeOf: (a: Arg) => Shape): StepRun | undefined {
  const run = steps.slice(i, i + LAYER_NORM_KERNELS.length);
  if (run.length < LAYER_NORM_KERNELS.length || run.some((s, j) => s.kernel !== LAYER_NORM_KERNELS[j] || s.node !== run[0]!.node)) return undefined;
  const [mean, centred, square, variance, shifted, inv, normed, scaled, out] = run as [Step, Step, Step, Step, Step, Step, Step, Step, Step];
  const t = (s: Step): Arg => ({ t: s.out });
  const lastAxisMean = (s: Step) => sameArg(s.args[1], { lit: -1 }) && sameArg(s.args[2], { lit: true });
  const x = mean.args[0];
  const [scale, bias, eps] = [scaled.args[1], out.args[1], shifted.args[1]];
  if (x === undefined || scale === undefined || bias === undefined || eps === undefined || !("lit" in eps) || typeof eps.lit !== "number") return undefined;
  const matches =
    lastAxisMean(mean) && sameArg(centred.args[0], x) && sameArg(centred.args[1], t(mean)) && sameArg(square.args[0], t(centred)) &&
    lastAxisMean(variance) && sameArg(variance.args[0], t(square)) && sameArg(shifted.args[0], t(variance)) && sameArg(inv.args[0], t(shifted)) &&
    sameArg(normed.args[0], t(centred)) && sameArg(normed.args[1], t(inv)) && sameArg(scaled.args[0], t(normed)) && sameArg(out.args[0], t(scaled));
  if (!matches || "lit" in scale || "lit" in bias) return undefined;
  const width = out.shape[out.shape.length - 1];
  if ([scale, bias].some((a) => { const s = shapeOf(a); return s.length !== 1 || s[0] !== width; })) return undefined;
  const epsilon = eps.lit;
  return {
    length: run.length,
    emit: (cx) => void cx.g.op("LayerNormalization", [cx.value(x), cx.value(scale), cx.value(bias)], cx.name, [attr.int("axis", -1), attr.float("epsilon", epsilon)], cx.output(out.out)),
  };
}

/** Every permutation of 0 … n − 1. */
function* permutations(n: number, prefix: number[] = []): Generator<number[]> {
  if (prefix.length === n) yield [...prefix];
  for (let a = 0; a < n; a++) if (!prefix.includes(a)) yield* permutations(n, [...prefix, a]);
}

/**
 * A transpose above rank 4 that lowering staged for tfjs (transpose.ts):
 * reshape, then (transpose, reshape) per stage, all of one IR node. ONNX
 * transposes any rank in one op, so the run becomes one Transpose with the
 * permutation whose staging is exactly these steps (found by trying each of
 * the ≤ 720 permutations through planTranspose itself).
 */
function stagedTransposeRun(steps: readonly Step[], i: number, shapeOf: (a: Arg) => Shape): StepRun | undefined {
  const first = steps[i];
  if (first === undefined || first.kernel !== "tf.reshape") return undefined;
  let end = i + 1;
  while (steps[end]?.kernel === "tf.transpose" && steps[end + 1]?.kernel === "tf.reshape" && steps[end]!.node === first.node && steps[end + 1]!.node === first.node) end += 2;
  const stageCount = (end - i - 1) / 2;
  const x = first.args[0];
  if (stageCount === 0 || x === undefined || !("t" in x)) return undefined;
  const shape = shapeOf(x);
  if (shape.length <= 4 || shape.length > 6) return undefined;
  const run = steps.slice(i, end);
  const last = run[run.length - 1]!;
  for (const perm of permutations(shape.length)) {
    const stages = planTranspose(shape, perm);
    if (stages === undefined || stages.length !== stageCount || !same(last.shape, permuteShape(shape, perm))) continue;
    const matches = stages.every((stage, k) => {
      const [view, move] = [run[2 * k]!, run[2 * k + 1]!];
      return same(view.args[0], k === 0 ? x : { t: run[2 * k - 1]!.out }) && same(view.args[1], { shape: stage.shape }) &&
        same(move.args[0], { t: view.out }) && same(move.args[1], { lit: stage.perm });
    }) && same(last.args[0], { t: run[run.length - 2]!.out });
    if (!matches) continue;
    return {
      length: run.length,
      emit: (cx) => void cx.g.op("Transpose", [cx.value(x)], cx.name, [attr.ints("perm", perm)], cx.output(last.out)),
    };
  }
  return undefined;
}

/** The runs of steps rendered as one op, tried in order at each step. */
const stepRuns = [layerNormRun, stagedTransposeRun];

/** The kernels this emitter renders (a test holds it equal to what lowering emits). */
export const onnxKernels: readonly string[] = Object.keys(kernelRules);

/** Renders a planned program as ONNX ModelProto bytes. */
export function emitOnnx(program: Program, plan: Plan, source: string): Uint8Array {
  const batched = program.inputs.map((i) => ({ i, axis: i.shape.findIndex((d) => typeof d !== "number") })).find((e) => e.axis >= 0);
  const g = new OnnxGraphBuilder(
    program.batch,
    batched === undefined ? undefined : { input: batched.i.name, axis: batched.axis, factor: (batched.i.shape[batched.axis] as { batch: number }).batch },
  );
  const names = new Map<string, string>(); // program tensor → ONNX value
  const shapes = new Map<string, Shape>();
  for (const i of program.inputs) {
    names.set(i.tensor, i.name);
    shapes.set(i.tensor, i.shape);
  }
  const internal = (t: string) => `/${t}`;
  const cx = (s: Step): EmitContext => ({
    g,
    name: `${s.kernel.replace(/^(tf|k)\./, "")}/${s.out}`,
    value(a) {
      if ("t" in a) {
        const v = names.get(a.t);
        if (v === undefined) throw new Error(`internal: tensor ${a.t} is used before step ${s.out} defines it`);
        return v;
      }
      if ("w" in a) {
        if (!program.params.has(a.w)) throw new Error(`internal: unknown parameter ${a.w}`);
        return a.w;
      }
      if ("lit" in a && typeof a.lit === "number") return g.floats([a.lit]);
      throw new Error(`internal: argument ${JSON.stringify(a)} of ${s.kernel} has no ONNX value`);
    },
    shapeOf(a) {
      const shape = "t" in a ? shapes.get(a.t) : "w" in a ? program.params.get(a.w)?.shape : undefined;
      if (shape === undefined) throw new Error(`internal: no shape for ${JSON.stringify(a)}`);
      return shape;
    },
    output(t) {
      const v = internal(t);
      names.set(t, v);
      return v;
    },
  });
  for (let i = 0; i < program.steps.length; ) {
    const probe = cx(program.steps[i]!);
    let run: StepRun | undefined;
    for (const match of stepRuns) run ??= match(program.steps, i, (a) => probe.shapeOf(a));
    // A run is named after, and defines, its last step's tensor only.
    const s = program.steps[i + (run?.length ?? 1) - 1]!;
    if (run !== undefined) run.emit(cx(s));
    else {
      const rule = kernelRules[s.kernel];
      if (rule === undefined) throw new Error(`internal: kernel ${s.kernel} (step ${s.out}) has no ONNX rendering`);
      rule(s, cx(s));
    }
    i += run?.length ?? 1;
    for (const { out: t, shape, dtype } of [{ out: s.out, shape: s.shape, dtype: undefined }, ...s.extra]) {
      shapes.set(t, shape);
      g.valueInfo.push(valueInfo(internal(t), shape, program.batch, dtype));
    }
  }
  const taken = new Set([...program.inputs.map((i) => i.name), ...program.params.keys()]);
  for (const o of program.outputs) {
    if (taken.has(o.name)) throw new CompileError(`ONNX: output "${o.name}" has the name of an input or parameter; ONNX values need distinct names`);
    taken.add(o.name);
    const v = names.get(o.tensor);
    if (v === undefined) throw new Error(`internal: output ${o.name} reads an undefined tensor`);
    g.op("Identity", [v], `output/${o.name}`, [], o.name);
  }
  const inputs = [
    ...program.inputs.map((i) => valueInfo(i.name, i.shape, program.batch, i.dtype)),
    ...[...program.params].map(([name, p]) => valueInfo(name, p.shape, program.batch)),
  ];
  return encodeModel(g, {
    graphName: program.name,
    doc: `Generated by turbo-compile from ${source} (model ${JSON.stringify(program.name)}); parameters are graph inputs, bound as initializers by turbograph's load().`,
    inputs,
    outputs: program.outputs.map((o) => valueInfo(o.name, o.shape, program.batch)),
    metadata: { [ONNX_PLAN_KEY]: JSON.stringify(plan) },
  });
}
