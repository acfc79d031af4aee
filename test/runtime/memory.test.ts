/**
 * The static memory plan holds at run time: no tensor outlives a run, and the
 * measured peak (tf.profile) is within 10 % of the plan's prediction.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { s16, tiny } from "../../examples/vit/vit.ts";
import { load, type BackendName } from "../../runtime/mod.ts";
import { compileToDir, pixels } from "../_helpers.ts";

async function measure(spec: typeof tiny, backend: BackendName, batch: number) {
  const { dir, compiled } = compileToDir(spec);
  const model = await load(dir, { weights: { random: 3 }, backend });
  const [c, h, w] = compiled.plan.inputs[0]!.shape.slice(1) as number[];
  const x = pixels([batch, c!, h!, w!], 5);
  return { model, x };
}

for (const backend of ["wasm", "cpu"] as const) {
  test(`50 runs of the tiny ViT on ${backend} leave no tensor behind`, async () => {
    const { model, x } = await measure(tiny, backend, 2);
    model.run({ pixels: x }).logits!.dispose();
    const after1 = tf.memory().numTensors;
    for (let i = 0; i < 50; i++) model.run({ pixels: x }).logits!.dispose();
    assert.is(tf.memory().numTensors, after1);
    model.dispose();
    x.dispose();
  });
}

for (const [name, spec, batch, backend] of [["tiny", tiny, 4, "wasm"], ["S/16", s16, 2, "wasm"], ["tiny", tiny, 4, "cpu"]] as const) {
  test(`measured peak bytes of a ${name} run on ${backend} are within 10% of the plan`, async () => {
    const { model, x } = await measure(spec, backend, batch);
    const before = tf.memory().numBytes;
    let logits: tf.Tensor | undefined;
    const profile = await tf.profile(() => {
      logits = model.run({ pixels: x }).logits!;
      return logits;
    });
    const measured = profile.peakBytes - before;
    const predicted = model.predictedPeakBytes(batch);
    assert.ok(predicted > 0);
    assert.ok(Math.abs(measured - predicted) <= 0.1 * predicted, `measured ${measured} B, predicted ${predicted} B`);
    logits!.dispose();
    model.dispose();
    x.dispose();
  });
}

test.run();
