/**
 * The committed MNIST weights (examples/vit/weights/mnist_vit.safetensors,
 * Hugging Face ViT names) in the compiled `mnist` ViT, against the eager ViT
 * with the same weights, on 16 test images: the same logits (relative error
 * below 1e-4) and classes, with and without Turbo merging, and most images
 * right — so wrong or stale weights fail here.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compile } from "../../compiler/compile.ts";
import type { TurboOptions } from "../../compiler/passes/insert_turbo.ts";
import { vitConfigs, vitParams } from "../../examples/vit/config.ts";
import { eagerVit, type EagerTurbo } from "../../examples/vit/eager.ts";
import { gatherBatch, loadMnist } from "../../examples/vit/mnist_data.ts";
import { mnist } from "../../examples/vit/vit.ts";
import { load, selectBackend } from "../../runtime/mod.ts";
import { fromHfVit, isHfVit, parseSafetensors } from "../../runtime/weights/mod.ts";
import { relativeError, toTensors } from "../_helpers.ts";

const weightsPath = fileURLToPath(new URL("../../examples/vit/weights/mnist_vit.safetensors", import.meta.url));
const config = vitConfigs.mnist;

await selectBackend("wasm");
const hf = parseSafetensors(new Uint8Array(readFileSync(weightsPath)), weightsPath);
const params = toTensors(fromHfVit(hf));

// 16 test images spread over the ten digits (the test split is ordered by digit, 200 each).
const { test: split } = loadMnist();
const indices = Array.from({ length: 16 }, (_, i) => i * 125);
const batch = gatherBatch(split, indices);
const labels = Array.from(batch.labels);
const pixels = () => tf.tensor4d(batch.images, [16, 1, 28, 28]);

function argmax(logits: Float32Array | Int32Array | Uint8Array, classes: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < logits.length / classes; i++) {
    let best = 0;
    for (let k = 1; k < classes; k++) if (logits[i * classes + k]! > logits[i * classes + best]!) best = k;
    out.push(best);
  }
  return out;
}

async function compiledLogits(turbo: TurboOptions | undefined): Promise<Float32Array> {
  const compiled = compile(mnist, turbo === undefined ? {} : { turbo });
  const dir = mkdtempSync(join(tmpdir(), "turbograph-mnist-"));
  writeFileSync(join(dir, "model.js"), compiled.module.js);
  const model = await load(dir, { weights: weightsPath, backend: "wasm" });
  const x = pixels();
  const out = model.run({ pixels: x });
  const logits = out.logits!.dataSync() as Float32Array;
  tf.dispose([x, ...Object.values(out)]);
  model.dispose();
  return logits;
}

test("the committed weights are a Hugging Face ViT checkpoint of the `mnist` config", () => {
  assert.ok(isHfVit(hf.keys()));
  assert.ok(hf.has("vit.encoder.layer.0.attention.attention.query.weight"));
  const want = vitParams(config);
  assert.is(params.size, want.length);
  for (const { name, shape } of want) assert.equal(params.get(name)?.shape, shape, name);
});

for (const turbo of [undefined, { r: 16 }, { r: 24, threshold: 60 }] as const) {
  const what = turbo === undefined ? "without merging" : `with Turbo ${JSON.stringify(turbo)}`;
  test(`compiled ${what}: the eager ViT's logits and classes, and most of the 16 images right`, async () => {
    const got = await compiledLogits(turbo);
    const x = pixels();
    const want = eagerVit(config, params, x, turbo as EagerTurbo | undefined).dataSync() as Float32Array;
    x.dispose();
    const err = relativeError(got, want);
    assert.ok(err < 1e-4, `relative error ${err}`);
    const predicted = argmax(got, config.classes);
    assert.equal(predicted, argmax(want, config.classes));
    const right = predicted.filter((p, i) => p === labels[i]).length;
    assert.ok(right >= 14, `${right}/16 right: ${JSON.stringify(predicted)} for ${JSON.stringify(labels)}`);
  });
}

test.run();
