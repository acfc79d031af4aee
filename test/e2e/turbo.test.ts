/**
 * Compiled Turbo graphs at run time: the same logits as the eager ViT with
 * hand-written merging, token counts equal to the static plan, batch-constant
 * Υ, Υ = 0 equal to no pass, provenance that accounts for every patch.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { TurboOptions } from "../../compiler/passes/insert_turbo.ts";
import { vitConfigs } from "../../examples/vit/config.ts";
import { eagerVit } from "../../examples/vit/eager.ts";
import { s16, tiny } from "../../examples/vit/vit.ts";
import { loadModule, type Model } from "../../runtime/mod.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { compile } from "../../compiler/compile.ts";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { pixels, relativeError, toTensors, tempDir } from "../_helpers.ts";

async function build(spec: typeof s16, turbo: TurboOptions | undefined, seed = 2): Promise<{ model: Model; weights: ReturnType<typeof randomWeights>; compiled: ReturnType<typeof compile> }> {
  const compiled = compile(spec, turbo === undefined ? { verify: true } : { verify: true, turbo });
  const dir = tempDir("turbograph-turbo-");
  writeFileSync(join(dir, "model.mjs"), compiled.module.js);
  const weights = randomWeights(compiled.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), seed);
  const model = await loadModule(await import(pathToFileURL(join(dir, "model.mjs")).href), { weights, backend: "wasm" });
  return { model, weights, compiled };
}

for (const [name, spec, config, turbo] of [
  ["tiny", tiny, vitConfigs.tiny, { r: 3 }],
  ["S/16", s16, vitConfigs.s16, { r: 16, threshold: 100 }],
  ["S/16 ToMe", s16, vitConfigs.s16, { r: 13, alpha: 0 }],
] as const) {
  test(`compiled ${name} with Turbo ${JSON.stringify(turbo)} matches the eager ViT merging by hand`, async () => {
    const { model, weights } = await build(spec, turbo);
    const x = pixels([2, config.channels, config.image, config.image], 4);
    const got = model.run({ pixels: x }).logits!.dataSync();
    const want = eagerVit(config, toTensors(weights), x, turbo).dataSync();
    const err = relativeError(got, want);
    assert.ok(err < 1e-4, `relative error ${err}`);
  });
}

for (const threshold of [0, 100]) {
  test(`S/16 with r = 16, threshold ${threshold}: the tokens at every block equal the static plan`, async () => {
    const { model, compiled } = await build(s16, { r: 16, threshold, reportSizes: true });
    const out = model.run({ pixels: pixels([2, 3, 224, 224], 8) });
    const blocks = compiled.plan.blocks.filter((b) => b.merged > 0);
    assert.ok(blocks.length > 0);
    for (const b of blocks) {
      const size = out[`size.${b.name}`];
      assert.ok(size, `output size.${b.name}`);
      assert.equal(size!.shape, [2, b.tokensOut, 1]);
      assert.ok(b.tokensOut! >= threshold, "the floor is never crossed");
      const total = tf.sum(size!, 1).dataSync();
      assert.equal(Array.from(total), [197, 197], "sizes always sum to the original tokens");
    }
    const last = blocks[blocks.length - 1]!;
    assert.is(last.tokensOut, threshold === 0 ? 11 : 100);
  });
}

test("one sample alone and inside a batch of 4 give the same logits", async () => {
  const { model } = await build(s16, { r: 16 });
  const batch = pixels([4, 3, 224, 224], 12);
  const all = model.run({ pixels: batch }).logits!.dataSync();
  const one = model.run({ pixels: tf.slice(batch, [2, 0, 0, 0], [1, -1, -1, -1]) }).logits!.dataSync();
  assert.ok(relativeError(one, all.slice(2000, 3000)) < 1e-5);
});

test("Υ = 0 gives exactly the outputs of the compile without the pass", async () => {
  const a = await build(tiny, { r: 0 });
  const b = await build(tiny, undefined);
  const x = pixels([3, 3, 32, 32], 3);
  assert.equal(Array.from(a.model.run({ pixels: x }).logits!.dataSync()), Array.from(b.model.run({ pixels: x }).logits!.dataSync()));
});

test("`sources` says which original tokens each final token stands for", async () => {
  const { model } = await build(s16, { r: 16, trackSources: true, reportSizes: true });
  const out = model.run({ pixels: pixels([2, 3, 224, 224], 6) });
  const sources = out.sources!;
  assert.equal(sources.shape, [2, 11, 197]);
  assert.equal(Array.from(tf.sum(sources, 1).dataSync()), new Array(2 * 197).fill(1), "each original token in exactly one final token");
  assert.equal(Array.from(tf.sum(sources, 2).dataSync()), Array.from(out["size.layer.11"]!.dataSync()), "row sums are the sizes");
  assert.equal(Array.from(tf.slice(sources, [0, 0, 0], [2, 1, 1]).dataSync()), [1, 1], "the class token stays first");
});

test("20 runs of a merged S/16 leave no tensor behind and the peak matches the plan", async () => {
  const { model } = await build(s16, { r: 16 });
  const x = pixels([2, 3, 224, 224], 1);
  model.run({ pixels: x }).logits!.dispose();
  const n = tf.memory().numTensors;
  for (let i = 0; i < 20; i++) model.run({ pixels: x }).logits!.dispose();
  assert.is(tf.memory().numTensors, n);
  const before = tf.memory().numBytes;
  const profile = await tf.profile(() => model.run({ pixels: x }).logits!);
  const predicted = model.predictedPeakBytes(2);
  const measured = profile.peakBytes - before;
  assert.ok(Math.abs(measured - predicted) <= 0.1 * predicted, `measured ${measured}, predicted ${predicted}`);
});

test.run();
