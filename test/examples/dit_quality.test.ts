/**
 * examples/dit/quality.ts: the Fréchet distance against closed forms, the
 * Jacobi eigen-solver against its definition, and the scorer (the trained
 * MNIST ViT with its features as a second output) against the compiled ViT
 * of examples/vit on real test digits.
 */

import * as tf from "@tensorflow/tfjs-core";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { compile } from "../../compiler/compile.ts";
import { FEATURES, frechetDistance, gaussian, loadScorer, SCORER_WEIGHTS, symmetricEigen } from "../../examples/dit/quality.ts";
import { gatherBatch, loadMnist } from "../../examples/vit/mnist_data.ts";
import { mnist } from "../../examples/vit/vit.ts";
import { mulberry32 } from "../../examples/vit/training.ts";
import { loadModule } from "../../runtime/mod.ts";
import { tempDir } from "../_helpers.ts";

const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

test("symmetricEigen: A·v = λ·v for each pair, and the eigenvalues sum to the trace", () => {
  const d = 6;
  const r = mulberry32(3);
  const m = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = i; j < d; j++) m[i * d + j] = m[j * d + i] = r() - 0.5;
  const { values, vectors } = symmetricEigen(m, d);
  for (let k = 0; k < d; k++) {
    for (let i = 0; i < d; i++) {
      let av = 0;
      for (let j = 0; j < d; j++) av += m[i * d + j]! * vectors[j * d + k]!;
      close(av, values[k]! * vectors[i * d + k]!, 1e-9, `row ${i} of pair ${k}`);
    }
  }
  close([...values].reduce((a, b) => a + b, 0), Array.from({ length: d }, (_, i) => m[i * d + i]!).reduce((a, b) => a + b, 0), 1e-9, "trace");
});

test("frechetDistance: 0 for one Gaussian, ‖Δμ‖² + Σ(√a − √b)² for diagonal covariances, symmetric", () => {
  const d = 3;
  const p = { mean: Float64Array.from([0, 1, 2]), cov: Float64Array.from([4, 0, 0, 0, 1, 0, 0, 0, 9]) };
  const q = { mean: Float64Array.from([1, 1, 0]), cov: Float64Array.from([1, 0, 0, 0, 1, 0, 0, 0, 4]) };
  close(frechetDistance(p, p, d), 0, 1e-9, "same");
  const want = 1 + 0 + 4 + (2 - 1) ** 2 + 0 + (3 - 2) ** 2;
  close(frechetDistance(p, q, d), want, 1e-9, "diagonal");
  close(frechetDistance(q, p, d), want, 1e-9, "symmetric");
  // A full covariance: the distance to itself after a rotation of the data is the rotation's effect alone.
  const r = mulberry32(5);
  const rows = 400;
  const f = new Float64Array(rows * 2);
  for (let i = 0; i < rows; i++) {
    const [a, b] = [r() - 0.5, r() - 0.5];
    f[2 * i] = a + b;
    f[2 * i + 1] = a - 2 * b;
  }
  const g = gaussian(f, 2);
  close(frechetDistance(g, g, 2), 0, 1e-9, "full covariance with itself");
  assert.ok(frechetDistance(g, { mean: g.mean, cov: Float64Array.from([g.cov[0]!, 0, 0, g.cov[3]!]) }, 2) > 1e-3, "correlation counts");
});

test("the scorer agrees with the compiled MNIST ViT and classifies real test digits", async () => {
  const dir = tempDir();
  const scorer = await loadScorer(dir);
  const data = loadMnist();
  const idx = Array.from({ length: 200 }, (_, i) => i * 10);
  const { images, labels } = gatherBatch(data.test, idx);
  const { predictions, features } = scorer.score(images, idx.length, 64);
  assert.is(features.length, idx.length * FEATURES);
  const c = compile(mnist);
  writeFileSync(join(dir, "vit.mjs"), c.module.js);
  const vit = await loadModule(await import(pathToFileURL(join(dir, "vit.mjs")).href), { weights: { safetensors: new Uint8Array(readFileSync(SCORER_WEIGHTS)) }, backend: "wasm" });
  const logits = vit.run({ pixels: tf.tensor4d(images, [idx.length, 1, 28, 28]) }).logits!;
  const want = Array.from(tf.argMax(logits, 1).dataSync());
  assert.equal(predictions, want);
  const accuracy = predictions.filter((p, i) => p === labels[i]).length / idx.length;
  assert.ok(accuracy > 0.9, `accuracy ${accuracy}`);
  scorer.dispose();
  vit.dispose();
});

test.run();
