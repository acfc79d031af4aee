/**
 * The unary ops a diffusion transformer needs (sigmoid and SiLU for adaLN and
 * the timestep MLP, exp, sin and cos for sinusoidal embeddings): traced from
 * the DSL, through the IR text and back, compiled, and run on wasm, cpu and
 * onnxruntime against the same formula in plain tfjs.
 */

import * as tf from "@tensorflow/tfjs-core";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { compile } from "../../compiler/compile.ts";
import { add, cos, exp, input, linear, model, mul, scale, sigmoid, silu, sin } from "../../compiler/dsl/mod.ts";
import { parseGraph } from "../../compiler/ir/parse.ts";
import { printGraph } from "../../compiler/ir/print.ts";
import { emitOnnx } from "../../compiler/lower/emit_onnx.ts";
import { load, selectBackend } from "../../runtime/mod.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { relativeError, tempDir, toTensors } from "../_helpers.ts";

const spec = model("unary", () => {
  const x = input("x", ["B", 6, 8]);
  const y = linear(x, 8, { name: "proj" });
  // silu(y) + sin(y) · cos(exp(0.1·y)) + sigmoid(y)
  return { out: add(add(silu(y), mul(sin(y), cos(exp(scale(y, 0.1))))), sigmoid(y)) };
});

function reference(x: tf.Tensor, w: Map<string, tf.Tensor>): tf.Tensor {
  return tf.tidy(() => {
    const y = tf.reshape(tf.add(tf.matMul(tf.reshape(x, [-1, 8]), w.get("proj.weight")!), w.get("proj.bias")!), x.shape);
    const silu = tf.mul(y, tf.sigmoid(y));
    return tf.add(tf.add(silu, tf.mul(tf.sin(y), tf.cos(tf.exp(tf.mul(y, 0.1))))), tf.sigmoid(y));
  });
}

test("sigmoid, silu, exp, sin and cos survive the IR text round trip", () => {
  const c = compile(spec, { verify: true });
  const text = printGraph(c.traced);
  for (const op of ["sigmoid", "exp", "sin", "cos"]) assert.match(text, new RegExp(`= ${op} %`), `the IR text has ${op}`);
  assert.is(printGraph(parseGraph(text)), text);
});

for (const backend of ["wasm", "cpu", "onnxruntime"] as const) {
  test(`the compiled ops agree with tfjs on ${backend}`, async () => {
    const c = compile(spec, { verify: true });
    const dir = tempDir("turbograph-unary-");
    writeFileSync(join(dir, "model.mjs"), c.module.js);
    writeFileSync(join(dir, "model.onnx"), emitOnnx(c.program, c.plan, "unary"));
    const weights = randomWeights(c.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), 4);
    await selectBackend(backend === "onnxruntime" ? "cpu" : backend);
    const x = tf.randomUniform([3, 6, 8], -3, 3, "float32", 9);
    const m = backend === "onnxruntime" ? await load(dir, { backend, weights, threads: 1 }) : await load(dir, { backend, weights });
    const got = (await m.run({ x })).out!;
    const tensors = toTensors(weights);
    const want = reference(x, tensors);
    assert.equal(got.shape, [3, 6, 8]);
    const err = relativeError(got.dataSync(), want.dataSync());
    assert.ok(err < 1e-5, `relative error ${err}`);
    tf.dispose([x, got, want, ...tensors.values()]);
    await m.dispose();
  });
}

test.run();
