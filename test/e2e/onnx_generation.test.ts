/**
 * Generation mode on onnxruntime: the DiT of examples/dit with merge and
 * restore (compiler/lower/onnx_window_merge.ts) against the same compiled
 * program on wasm, with random weights, so a different choice of merged
 * tokens shows as a large difference in the predicted noise.
 */

import * as tf from "@tensorflow/tfjs-core";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { compile } from "../../compiler/compile.ts";
import { emitOnnx } from "../../compiler/lower/emit_onnx.ts";
import type { GenerationOptions } from "../../compiler/passes/insert_generation.ts";
import { ditTiny, promptIds } from "../../examples/dit/config.ts";
import { dit } from "../../examples/dit/dit.ts";
import { load, loadModule } from "../../runtime/mod.ts";
import { relativeError, tempDir } from "../_helpers.ts";

const settings: readonly (readonly [string, GenerationOptions, number])[] = [
  ["self-attention, tomesd's rule (alpha 0), ratio 0.5", { ratio: 0.5, alpha: 0 }, 3],
  ["self, cross and MLP, Turbo (alpha 5), ratio 0.7, seed 9", { ratio: 0.7, where: ["self", "cross", "mlp"], seed: 9 }, 2],
  ["self-attention, 1×2 windows on a 2×8 grid, batch 1", { ratio: 0.25, grid: [2, 8], window: [1, 2], alpha: 2 }, 1],
];

for (const [name, generation, batch] of settings) {
  test(`onnxruntime runs the tiny DiT in generation mode (${name}) like wasm within 1e-4`, async () => {
    const compiled = compile(dit(ditTiny), { verify: true, generation });
    assert.ok(compiled.graph.nodes.some((n) => n.op === "window_merge"), "the setting merges");
    const dir = tempDir("turbograph-onnx-dit-");
    writeFileSync(join(dir, "model.mjs"), compiled.module.js);
    writeFileSync(join(dir, "model.onnx"), emitOnnx(compiled.program, compiled.plan, "dit"));
    const wasm = await loadModule(await import(pathToFileURL(join(dir, "model.mjs")).href), { weights: { random: 5 }, backend: "wasm" });
    const ort = await load(dir, { backend: "onnxruntime", weights: { random: 5 }, threads: 1 });
    const noisy = tf.randomNormal([batch, 1, 8, 8], 0, 1, "float32", 2);
    const t = tf.tensor2d(Array.from({ length: batch }, (_, i) => [100 + 400 * i]));
    const prompt = tf.tensor2d(Array.from({ length: batch }, (_, i) => promptIds((3 * i) % 10)), [batch, 2], "int32");
    const want = wasm.run({ noisy, t, prompt }).noise!;
    const got = (await ort.run({ noisy, t, prompt })).noise!;
    assert.equal(got.shape, want.shape);
    const err = relativeError(got.dataSync(), want.dataSync());
    assert.ok(err < 1e-4, `relative error ${err}`);
    tf.dispose([noisy, t, prompt, want, got]);
    wasm.dispose();
    await ort.dispose();
  });
}

test.run();
