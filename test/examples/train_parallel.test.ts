/**
 * examples/vit/train_parallel.ts: the data-parallel gradients of a batch
 * (this thread plus worker threads) equal the gradients computed in one piece.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { vitConfigs, vitParams, type VitConfig } from "../../examples/vit/config.ts";
import { MNIST_PIXELS } from "../../examples/vit/mnist_data.ts";
import { ShardedGradients } from "../../examples/vit/train_parallel.ts";
import { gradientStep, setUpTraining } from "../../examples/vit/train_step.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { relativeError } from "../_helpers.ts";

// A two-block version of the mnist ViT keeps the test fast; the code path is the same.
const config: VitConfig = { ...vitConfigs.mnist, depth: 2 };
await setUpTraining("wasm");
const params = new Map<string, tf.Variable>();
for (const [name, w] of randomWeights(vitParams(config), 3)) params.set(name, tf.variable(tf.tensor(w.data, w.shape, "float32"), true, name));
const varList = [...params.values()];

function batchOf(count: number): { images: Float32Array; labels: number[] } {
  const images = new Float32Array(count * MNIST_PIXELS);
  for (let i = 0; i < images.length; i++) images[i] = ((i * 7919) % 997) / 997;
  return { images, labels: Array.from({ length: count }, (_, i) => (i * 3) % 10) };
}

test("2 and 3 slices give the one-piece gradients, loss and predictions (odd batch, batch smaller than the slices)", async () => {
  for (const workers of [1, 2]) {
    const sharded = await ShardedGradients.start(workers, config, "wasm", vitParams(config));
    try {
      for (const count of [5, 2]) {
        const { images, labels } = batchOf(count);
        const whole = gradientStep(config, params, varList, images, labels, count, 0.1);
        const split = await sharded.step(config, params, varList, images, labels, count, 0.1);
        assert.ok(Math.abs(split.loss - whole.loss) < 1e-5 * Math.abs(whole.loss), `loss ${split.loss} vs ${whole.loss}`);
        assert.equal(Array.from(split.predictions), Array.from(whole.predictions));
        assert.is(split.grads.length, varList.length);
        varList.forEach((v, i) => {
          assert.equal(split.grads[i]!.shape, v.shape, v.name);
          // Relative, with a floor: a key bias's gradient is zero up to rounding
          // (softmax ignores a constant added to a row of logits).
          const [a, b] = [split.grads[i]!.dataSync(), whole.grads[i]!.dataSync()];
          const scale = Math.max(...Array.from(b, Math.abs));
          const diff = relativeError(a, b) * scale;
          assert.ok(diff <= 1e-4 * scale + 1e-7, `${workers + 1} slices, batch ${count}: ${v.name} max difference ${diff} (scale ${scale})`);
        });
        // The gradients are not all zero (the comparison means something).
        assert.ok(whole.grads.some((g) => tf.max(tf.abs(g)).dataSync()[0]! > 1e-4));
        tf.dispose([...whole.grads, ...split.grads]);
      }
    } finally {
      await sharded.stop();
    }
  }
});

test("a worker's error reaches the caller with its message", async () => {
  const sharded = await ShardedGradients.start(1, config, "wasm", vitParams(config));
  try {
    const { images, labels } = batchOf(4);
    // Three images' pixels for a batch of four: the worker's slice is short.
    let message = "";
    try {
      await sharded.step(config, params, varList, images.subarray(0, 3 * MNIST_PIXELS), labels, 4, 0.1);
    } catch (e) {
      message = (e as Error).message;
    }
    assert.match(message, /^train worker: .*values/);
  } finally {
    await sharded.stop();
  }
});

test.run();
