/**
 * The ONNX rendering of the Turbo merge step alone, against the tfjs kernel
 * (runtime/kernels/turbo_merge.ts) on the same inputs: a one-step program
 * (`k.turboMerge`) rendered by emit_onnx and run on onnxruntime, over odd
 * and even token counts, batch 1 and 3, every fusion, ToMe, no class token,
 * a distillation token, protected register positions, with and without
 * provenance, and r' = 0. Token states within 1e-5, sizes and sources equal.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { Plan } from "../../compiler/contract/plan.ts";
import { emitOnnx } from "../../compiler/lower/emit_onnx.ts";
import type { Arg, Program } from "../../compiler/lower/program.ts";
import type { Shape } from "../../compiler/ir/types.ts";
import { mergedCount } from "../../compiler/contract/merged_count.ts";
import { selectBackend } from "../../runtime/backend.ts";
import { loadOnnx } from "../../runtime/onnx_session.ts";
import { turboMerge, type TurboMergeOptions } from "../../runtime/kernels/turbo_merge.ts";
import { relativeError } from "../_helpers.ts";

interface Case {
  n: number;
  batch: number;
  options: Required<Omit<TurboMergeOptions, "trackSources">> & { trackSources: boolean };
  semantic: boolean;
}

const base = { alpha: 5, scale: 30, fusion: "S1" as const, beta: 1, gamma: 0, layer: 0, cls: true, distill: false, protect: 0, trackSources: true };
const cases: [string, Case][] = [
  ["N 17, r 4, S1, batch 3", { n: 17, batch: 3, options: { ...base, r: 4 }, semantic: true }],
  ["N 16, r 8 (the most), batch 1", { n: 16, batch: 1, options: { ...base, r: 8 }, semantic: true }],
  ["N 9, S2", { n: 9, batch: 2, options: { ...base, r: 3, fusion: "S2" }, semantic: true }],
  ["N 9, S3", { n: 9, batch: 2, options: { ...base, r: 2, fusion: "S3", alpha: 0.5 }, semantic: true }],
  ["N 12, S4 at layer 2", { n: 12, batch: 2, options: { ...base, r: 3, fusion: "S4", beta: 0.5, gamma: 4, layer: 2 }, semantic: true }],
  ["ToMe (no class row)", { n: 17, batch: 2, options: { ...base, r: 5, alpha: 0 }, semantic: false }],
  ["no class token, even N, nothing of A kept", { n: 10, batch: 2, options: { ...base, r: 5, cls: false }, semantic: true }],
  ["a distillation token", { n: 14, batch: 2, options: { ...base, r: 4, distill: true }, semantic: true }],
  ["5 protected positions (class and registers)", { n: 21, batch: 2, options: { ...base, r: 16, protect: 5 }, semantic: true }],
  ["without provenance", { n: 15, batch: 2, options: { ...base, r: 6, trackSources: false }, semantic: true }],
  ["r' = 0", { n: 7, batch: 2, options: { ...base, r: 0 }, semantic: true }],
];

/** A program of one k.turboMerge step, as lowering writes it, and its plan. */
function mergeProgram(c: Case, width: number, metricWidth: number): { program: Program; plan: Plan } {
  const b = { batch: 1 };
  const out = c.n - mergedCount(c.n, c.options.r, c.options);
  const inputs: { name: string; tensor: string; shape: Shape }[] = [
    { name: "x", tensor: "x_x", shape: [b, c.n, width] },
    { name: "metric", tensor: "x_metric", shape: [b, c.n, metricWidth] },
    { name: "size", tensor: "x_size", shape: [b, c.n, 1] },
  ];
  if (c.semantic) inputs.push({ name: "clsAttn", tensor: "x_clsAttn", shape: [b, c.n] });
  if (c.options.trackSources) inputs.push({ name: "sources", tensor: "x_sources", shape: [b, c.n, c.n] });
  const tensors: Record<string, Arg> = Object.fromEntries(inputs.map((i) => [i.name, { t: i.tensor }]));
  if (!c.semantic) tensors.clsAttn = { lit: null };
  const extra = [{ field: "size", out: "t0_size", shape: [b, out, 1] as Shape }];
  if (c.options.trackSources) extra.push({ field: "sources", out: "t0_sources", shape: [b, out, c.n] });
  const outputs = [{ name: "x", tensor: "t0", shape: [b, out, width] as Shape }, ...extra.map((e) => ({ name: e.field === "size" ? "size" : "sources", tensor: e.out, shape: e.shape }))];
  const program: Program = {
    name: "merge",
    batch: "B",
    inputs: inputs.map((i) => ({ ...i, dtype: "f32" as const })),
    outputs: outputs.map((o) => ({ ...o, name: `out.${o.name}` })),
    params: new Map(),
    steps: [{ out: "t0", kernel: "k.turboMerge", args: [{ obj: tensors }, { lit: c.options }], shape: [b, out, width], field: "x", extra, node: 0, dispose: [] }],
  };
  const planShape = (s: Shape) => s.map((d) => (typeof d === "number" ? d : { batch: d.batch }));
  const plan: Plan = {
    format: "turbograph.plan/1",
    model: "merge",
    batchName: "B",
    inputs: inputs.map((i) => ({ name: i.name, shape: planShape(i.shape), dtype: "float32" })),
    outputs: program.outputs.map((o) => ({ name: o.name, shape: planShape(o.shape), dtype: "float32" })),
    params: [],
    flops: { perBatch: 0, fixed: 0 },
    blocks: [],
    memory: { weightBytes: 0, liveBytes: [] },
    kernels: 1,
    turbo: null,
  };
  return { program, plan };
}

for (const [name, c] of cases) {
  test(`the ONNX merge equals the tfjs kernel: ${name}`, async () => {
    await selectBackend("cpu");
    const width = 6;
    const metricWidth = 4;
    const { program, plan } = mergeProgram(c, width, metricWidth);
    const model = await loadOnnx(emitOnnx(program, plan, "test"), { weights: new Map(), threads: 1 });
    const seed = c.n * 7 + c.batch;
    const inputs: Record<string, tf.Tensor> = {
      x: tf.randomNormal([c.batch, c.n, width], 0, 1, "float32", seed),
      metric: tf.randomNormal([c.batch, c.n, metricWidth], 0, 1, "float32", seed + 1),
      // Sizes of earlier merges: small whole numbers.
      size: tf.floor(tf.randomUniform([c.batch, c.n, 1], 1, 4, "float32", seed + 2)),
    };
    if (c.semantic) inputs.clsAttn = tf.softmax(tf.randomNormal([c.batch, c.n], 0, 1, "float32", seed + 3));
    if (c.options.trackSources) inputs.sources = tf.tile(tf.reshape(tf.eye(c.n), [1, c.n, c.n]), [c.batch, 1, 1]);
    const got = await model.run(inputs);
    const want = turboMerge({
      x: inputs.x as tf.Tensor3D,
      metric: inputs.metric as tf.Tensor3D,
      size: inputs.size as tf.Tensor3D,
      clsAttn: c.semantic ? (inputs.clsAttn as tf.Tensor2D) : null,
      ...(c.options.trackSources ? { sources: inputs.sources as tf.Tensor3D } : {}),
    }, c.options);
    assert.equal(got["out.x"]!.shape, want.x.shape);
    const err = relativeError(got["out.x"]!.dataSync(), want.x.dataSync());
    assert.ok(err < 1e-5, `token states: relative error ${err}`);
    assert.equal(Array.from(got["out.size"]!.dataSync()), Array.from(want.size.dataSync()), "sizes");
    if (c.options.trackSources) assert.equal(Array.from(got["out.sources"]!.dataSync()), Array.from(want.sources!.dataSync()), "sources");
    await model.dispose();
  });
}

test.run();
