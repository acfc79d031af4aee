/**
 * The merging methods of the MNIST evaluation (examples/vit/merge_methods.ts:
 * ToMe, semantic value only, Turbo S1, Turbo S2) compiled into the `mnist`
 * ViT with the committed weights, against `eagerVit` merging by hand with
 * the same options, on 8 test images: the same classes and logits within
 * 1e-4 relative error, at a moderate and at the largest Υ, and with a token
 * floor. With `trackSources`, the final tokens partition the original ones.
 * (test/examples/mnist_weights.test.ts checks the unmerged model and Turbo's
 * defaults.) A missing weights file fails every test with the reason.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "../../compiler/compile.ts";
import type { TurboOptions } from "../../compiler/passes/insert_turbo.ts";
import { vitConfigs } from "../../examples/vit/config.ts";
import { eagerVit } from "../../examples/vit/eager.ts";
import { mergeMethods, type MergeMethod } from "../../examples/vit/merge_methods.ts";
import { gatherBatch, loadMnist } from "../../examples/vit/mnist_data.ts";
import { mnist } from "../../examples/vit/vit.ts";
import { load, selectBackend } from "../../runtime/mod.ts";
import { fromHfVit, parseSafetensors } from "../../runtime/weights/mod.ts";
import { relativeError, tempDir, toTensors } from "../_helpers.ts";

const weightsPath = fileURLToPath(new URL("../../examples/vit/weights/mnist_vit.safetensors", import.meta.url));
const missing =
  `examples/vit/weights/mnist_vit.safetensors is missing: it is the committed MNIST checkpoint ` +
  `(train it with \`npx tsx examples/vit/train_mnist.ts\`, or restore it from git)`;
const config = vitConfigs.mnist;
const count = 8;

await selectBackend("wasm");

let cached: Map<string, tf.Tensor> | undefined;
function params(): Map<string, tf.Tensor> {
  if (!existsSync(weightsPath)) throw new Error(missing);
  cached ??= toTensors(fromHfVit(parseSafetensors(new Uint8Array(readFileSync(weightsPath)), weightsPath)));
  return cached;
}

// 8 test images, spread over the digits (the split is ordered by digit, 200 each).
const { test: split } = loadMnist();
const batch = gatherBatch(split, Array.from({ length: count }, (_, i) => i * 250 + 3));
const pixels = () => tf.tensor4d(batch.images, [count, 1, 28, 28]);

function argmax(logits: ArrayLike<number>): number[] {
  const K = config.classes;
  return Array.from({ length: logits.length / K }, (_, i) => {
    let best = 0;
    for (let k = 1; k < K; k++) if (logits[i * K + k]! > logits[i * K + best]!) best = k;
    return best;
  });
}

async function runCompiled(turbo: TurboOptions): Promise<{ logits: Float32Array; sources?: { data: Float32Array; shape: number[] } }> {
  params(); // fail with the reason when the weights are missing
  const compiled = compile(mnist, { turbo });
  const dir = tempDir("turbograph-mnist-turbo-");
  writeFileSync(join(dir, "model.mjs"), compiled.module.js);
  const model = await load(dir, { weights: weightsPath, backend: "wasm" });
  const x = pixels();
  const out = model.run({ pixels: x });
  const logits = out.logits!.dataSync() as Float32Array;
  const sources = out.sources === undefined ? undefined : { data: out.sources.dataSync() as Float32Array, shape: out.sources.shape };
  tf.dispose([x, ...Object.values(out)]);
  model.dispose();
  return sources === undefined ? { logits } : { logits, sources };
}

function eagerLogits(turbo: ReturnType<MergeMethod["options"]>): Float32Array {
  const x = pixels();
  const y = eagerVit(config, params(), x, turbo);
  const out = y.dataSync() as Float32Array;
  tf.dispose([x, y]);
  return out;
}

test("the committed MNIST weights are there", () => {
  assert.ok(existsSync(weightsPath), missing);
});

const cases: Array<{ method: MergeMethod; r: number; threshold: number }> = [
  ...mergeMethods.flatMap((method) => [24, 98].map((r) => ({ method, r, threshold: 0 }))),
  ...mergeMethods.filter((m) => m.id === "tome" || m.id === "turbo-s1").map((method) => ({ method, r: 64, threshold: 50 })),
];

for (const { method, r, threshold } of cases) {
  test(`${method.label}, Υ = ${r}${threshold > 0 ? `, threshold ${threshold}` : ""}: compiled = eager (classes, logits within 1e-4)`, async () => {
    const options = method.options(r, threshold)!;
    const got = await runCompiled(options);
    const want = eagerLogits(options);
    const err = relativeError(got.logits, want);
    assert.ok(err < 1e-4, `relative error ${err}`);
    assert.equal(argmax(got.logits), argmax(want));
  });
}

test("trackSources: the final tokens of Turbo S1 at Υ = 24 partition the 197 original tokens; logits unchanged", async () => {
  const options = mergeMethods.find((m) => m.id === "turbo-s1")!.options(24, 0)!;
  const got = await runCompiled({ ...options, trackSources: true });
  const [B, n, all] = got.sources!.shape as [number, number, number];
  assert.equal([B, all], [count, 197]);
  assert.is(n, 197 - 6 * 24);
  for (let b = 0; b < B; b++) {
    const covered = new Int32Array(all);
    for (let f = 0; f < n; f++) {
      for (let t = 0; t < all; t++) {
        const v = got.sources!.data[(b * n + f) * all + t]!;
        assert.ok(v === 0 || v === 1, `sources[${b}, ${f}, ${t}] = ${v}`);
        covered[t]! += v;
      }
    }
    assert.ok(covered.every((c) => c === 1), `image ${b}: every original token in exactly one final token`);
    assert.is(got.sources!.data[b * n * all], 1, "final token 0 is the class token");
  }
  assert.ok(relativeError(got.logits, eagerLogits(options)) < 1e-4);
});

test.run();
