/**
 * The diffusion transformer of examples/dit (timestep features with sin/cos,
 * SiLU, adaLN-Zero, cross-attention to prompt ids, unpatchify) compiled from
 * its DSL spec against the eager tfjs model, on wasm and cpu, with random
 * weights (the adaLN gates random too, so every branch counts). And what
 * understanding-mode Turbo says about it: it cannot shorten a stream that
 * must come back to every pixel, and says so at the spec's line.
 *
 * Generation mode (compiler/passes/insert_generation.ts): the compiled model
 * with merge and restore around self-attention, cross-attention and the MLP
 * against the eager model with the runtime kernels placed by hand at the
 * same sub-layers (examples/dit/eager.ts `merge`), α = 0 and α = 5, for the
 * builder-made DiT and the one written from primitives; what the plan says;
 * and the refusals.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { compile } from "../../compiler/compile.ts";
import { CompileError } from "../../compiler/diagnostics.ts";
import { ditTiny, promptIds } from "../../examples/dit/config.ts";
import { dit } from "../../examples/dit/dit.ts";
import { attention, ditBlock, input, layerNorm, add, linear, model, patchEmbed, rearrange, timestepEmbedding, trace } from "../../compiler/dsl/mod.ts";
import type { GenerationOptions, SubLayer } from "../../compiler/passes/insert_generation.ts";
import { eagerDit } from "../../examples/dit/eager.ts";
import { load } from "../../runtime/mod.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { compileToDir, relativeError, toTensors } from "../_helpers.ts";

const spec = dit(ditTiny);

for (const backend of ["wasm", "cpu"] as const) {
  test(`the compiled DiT agrees with the eager model within 1e-4 on ${backend}`, async () => {
    const { dir, compiled } = compileToDir(spec);
    const weights = randomWeights(compiled.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), 8);
    const model = await load(dir, { weights, backend });
    const noisy = tf.randomNormal([3, 1, 8, 8], 0, 1, "float32", 4) as tf.Tensor4D;
    const t = tf.tensor2d([[3], [250], [999]]);
    const prompt = tf.tensor2d([promptIds(0), promptIds(7), promptIds(9)], [3, 2], "int32");
    const got = model.run({ noisy, t, prompt }).noise!;
    const tensors = toTensors(weights);
    const want = eagerDit(ditTiny, tensors, noisy, t, prompt);
    assert.equal(got.shape, [3, 1, 8, 8]);
    const err = relativeError(got.dataSync(), want.dataSync());
    assert.ok(err < 1e-4, `relative error ${err}`);
    // The prompt matters: another class gives another prediction.
    const other = model.run({ noisy, t, prompt: tf.tensor2d([promptIds(1), promptIds(7), promptIds(9)], [3, 2], "int32") }).noise!;
    assert.ok(relativeError(tf.slice(other, [0], [1]).dataSync(), tf.slice(got, [0], [1]).dataSync()) > 1e-3, "class 0 and class 1 give the same noise");
    tf.dispose([noisy, t, prompt, got, want, other, ...tensors.values()]);
    model.dispose();
  });
}

test("understanding-mode Turbo refuses the DiT at the unpatchify line: the stream must keep every token", () => {
  try {
    compile(spec, { turbo: { r: 4, alpha: 0 } });
    assert.unreachable("compiled");
  } catch (e) {
    assert.instance(e, CompileError);
    assert.match((e as Error).message, /folds the token axis into another/);
    assert.match((e as CompileError).loc?.file ?? "", /examples\/dit\/dit\.ts$/);
  }
});

const cases: { where: SubLayer[]; alpha: number; primitives: boolean; backend: "wasm" | "cpu" }[] = [
  { where: ["self"], alpha: 0, primitives: false, backend: "wasm" },
  { where: ["self"], alpha: 5, primitives: false, backend: "cpu" },
  { where: ["self", "cross", "mlp"], alpha: 5, primitives: false, backend: "wasm" },
  { where: ["cross", "mlp"], alpha: 0, primitives: false, backend: "cpu" },
  { where: ["self", "cross", "mlp"], alpha: 5, primitives: true, backend: "wasm" },
  { where: ["self"], alpha: 0, primitives: true, backend: "cpu" },
];

for (const c of cases) {
  const what = `${c.primitives ? "from primitives" : "from builders"}, ${c.where.join("+")}, alpha ${c.alpha}, on ${c.backend}`;
  test(`generation mode (${what}) agrees with the merges placed by hand within 1e-4`, async () => {
    const generation: GenerationOptions = { ratio: 0.5, where: c.where, alpha: c.alpha, seed: 3 };
    const { dir, compiled } = compileToDir(dit(ditTiny, { primitives: c.primitives }), { generation });
    const merges = compiled.graph.nodes.filter((n) => n.op === "window_merge");
    assert.is(merges.length, c.where.length * ditTiny.depth, "one merge per wrapped sub-layer");
    assert.is(compiled.graph.nodes.filter((n) => n.op === "window_restore").length, merges.length);
    const weights = randomWeights(compiled.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), 8);
    const model = await load(dir, { weights, backend: c.backend });
    const noisy = tf.randomNormal([3, 1, 8, 8], 0, 1, "float32", 4) as tf.Tensor4D;
    const t = tf.tensor2d([[3], [250], [999]]);
    const prompt = tf.tensor2d([promptIds(0), promptIds(7), promptIds(9)], [3, 2], "int32");
    const got = model.run({ noisy, t, prompt }).noise!;
    const tensors = toTensors(weights);
    const hand = { where: c.where, r: 8, alpha: c.alpha, scale: 30, seed: 3 };
    const want = eagerDit(ditTiny, tensors, noisy, t, prompt, hand);
    const unmerged = eagerDit(ditTiny, tensors, noisy, t, prompt);
    const err = relativeError(got.dataSync(), want.dataSync());
    assert.ok(err < 1e-4, `relative error ${err} against the hand-placed merges`);
    assert.ok(relativeError(got.dataSync(), unmerged.dataSync()) > 1e-3, "the merges changed nothing");
    // Another seed picks other destinations, so another output.
    const other = eagerDit(ditTiny, tensors, noisy, t, prompt, { ...hand, seed: 4 });
    assert.ok(relativeError(other.dataSync(), want.dataSync()) > 1e-4, "seeds 3 and 4 give the same merges");
    tf.dispose([noisy, t, prompt, got, want, unmerged, other, ...tensors.values()]);
    model.dispose();
  });
}

test("generation mode: the plan keeps every token in every block, counts the merges and lowers the FLOPs", () => {
  const base = compile(dit(ditTiny));
  const self = compile(dit(ditTiny), { generation: { ratio: 0.5 } });
  const all = compile(dit(ditTiny), { generation: { ratio: 0.5, where: ["self", "cross", "mlp"] } });
  for (const c of [self, all]) {
    for (const b of c.plan.blocks.filter((b) => b.name.startsWith("block."))) assert.is(b.tokensOut, 16, `${b.name} ends with all 16 tokens`);
  }
  assert.equal(self.plan.blocks.filter((b) => b.name.startsWith("block.")).map((b) => b.merged), [8, 8]);
  assert.equal(all.plan.blocks.filter((b) => b.name.startsWith("block.")).map((b) => b.merged), [24, 24]);
  assert.equal(self.plan.turbo!.baselineFlops, base.plan.flops);
  assert.ok(self.plan.turbo!.flopsRatio > 1 && all.plan.turbo!.flopsRatio > self.plan.turbo!.flopsRatio, `${self.plan.turbo!.flopsRatio}, ${all.plan.turbo!.flopsRatio}`);
  assert.match(self.plan.explain!.join("\n"), /2 sub-layers \(2 self\); 8 of 16 tokens merged at each \(2×2 windows on the 4×4 grid, 4 destinations, seed 0\)/);
  // skip leaves a block alone; the windows follow the window option.
  const skipped = compile(dit(ditTiny), { generation: { ratio: 0.5, skip: [1] } });
  assert.equal(skipped.plan.blocks.filter((b) => b.name.startsWith("block.")).map((b) => b.merged), [8, 0]);
  const wide = compile(dit(ditTiny), { generation: { ratio: 0.9, window: [2, 4], alpha: 0 } });
  assert.match(wide.plan.explain!.join(), /14 of 16 tokens merged at each \(2×4 windows on the 4×4 grid, 2 destinations/);
  // ratio 0 merges nothing: the same program as without the option.
  const none = compile(dit(ditTiny), { generation: { ratio: 0 } });
  assert.is(none.graph.nodes.filter((n) => n.op === "window_merge").length, 0);
  assert.equal(none.plan.flops, base.plan.flops);
});

/** A denoiser with self-attention only, no prompt. */
const noPrompt = model("selfonly", () => {
  const x = input("x", ["B", 1, 8, 8]);
  let h = patchEmbed(x, { patch: 2, dim: 16, cls: false, name: "embed" });
  h = add(h, attention(layerNorm(h, { name: "ln" }), { heads: 2, name: "attn" }));
  return { y: rearrange(linear(h, 4, { name: "out" }), "b (gh gw) (p q c) -> b c (gh p) (gw q)", { gh: 4, p: 2, q: 2 }) };
});

test("generation mode refuses what it cannot do, naming the option", () => {
  const refuse = (spec: Parameters<typeof compile>[0], options: GenerationOptions, pattern: RegExp) => {
    try {
      compile(spec, { generation: options });
      assert.unreachable("compiled");
    } catch (e) {
      assert.instance(e, CompileError);
      assert.match((e as Error).message, pattern);
    }
  };
  refuse(noPrompt, { alpha: 5 }, /option alpha: .*no cross-attention .*choose alpha=0/);
  refuse(dit(ditTiny), { ratio: 1 }, /option ratio: 1 must lie in \[0, 1\)/);
  refuse(dit(ditTiny), { where: ["ffn" as SubLayer] }, /option where: "ffn" is not one of self, cross, mlp/);
  refuse(dit(ditTiny), { grid: [3, 5] }, /option grid: 3×5 is 15 tokens, but the image stream has 16/);
  refuse(dit(ditTiny), { skip: [2] }, /option skip: block index 2 is out of range; the model has 2 blocks/);
  refuse(noPrompt, { alpha: 0, where: ["cross"] }, /option where: .*no cross sub-layer to wrap \(found 1 self, 0 cross, 0 mlp/);
  assert.throws(() => compile(dit(ditTiny), { turbo: { r: 2 }, generation: {} }), /choose one/);
  // What it can do: alpha 0 without a prompt; a non-square grid given explicitly.
  assert.is(compile(noPrompt, { generation: { alpha: 0 } }).graph.nodes.filter((n) => n.op === "window_merge").length, 1);
  assert.match(compile(dit(ditTiny), { generation: { grid: [2, 8], alpha: 0 } }).plan.explain!.join(), /on the 2×8 grid, 4 destinations/);
});

test("the DiT builders name a bad input at the spec's line", () => {
  const bad = (build: () => unknown, pattern: RegExp) => {
    try {
      trace(model("bad", () => ({ y: build() as never })));
      assert.unreachable("traced");
    } catch (e) {
      assert.instance(e, CompileError);
      assert.match((e as Error).message, pattern);
      assert.match((e as CompileError).loc?.file ?? "", /dit\.test\.ts$/);
    }
  };
  bad(() => timestepEmbedding(input("t", ["B", 2]), { dim: 8, frequencies: 4, name: "te" }), /timestepEmbedding "te": t must be \[batch, 1\]/);
  bad(() => timestepEmbedding(input("t", ["B", 1]), { dim: 8, frequencies: 0, name: "te" }), /frequencies 0 must be a positive integer/);
  bad(() => ditBlock(input("x", ["B", 4, 8]), input("c", ["B", 8]), { heads: 2, mlpRatio: 0.3, name: "blk" }), /ditBlock "blk": mlpRatio 0.3 gives a fractional hidden width/);
});

test.run();
