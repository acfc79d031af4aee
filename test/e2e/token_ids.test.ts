/**
 * Token ids (issue 13, step 1): an i32 input through `embedding()` (the IR's
 * `gather`), compiled and run on wasm, cpu and onnxruntime, against the same
 * network fed with the embedding rows copied out of the table by hand; the
 * IR text round trip of an i32 input; and the errors for bad ids and for
 * ids used where only an embedding may read them.
 */

import * as tf from "@tensorflow/tfjs-core";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { compile, compileGraph, type Compiled } from "../../compiler/compile.ts";
import { CompileError } from "../../compiler/diagnostics.ts";
import { add, embedding, encoderBlock, input, linear, mean, model, param, trace } from "../../compiler/dsl/mod.ts";
import { parseGraph } from "../../compiler/ir/parse.ts";
import { printGraph } from "../../compiler/ir/print.ts";
import { emitOnnx } from "../../compiler/lower/emit_onnx.ts";
import { LoadError, loadModule, loadOnnx, type Model } from "../../runtime/mod.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { relativeError, tempDir } from "../_helpers.ts";

const [T, V, D] = [7, 11, 16];

/** The network after the embedding, shared by both specs. */
function body(x: ReturnType<typeof input>) {
  const h = encoderBlock(add(x, param("pos", [1, T, D])), { heads: 2, name: "layer.0" });
  return { logits: linear(mean(h, [1]), 3, { name: "head" }) };
}
const text = model("text", () => body(embedding(input("ids", ["B", T], { dtype: "i32" }), { name: "tok", vocab: V, dim: D })));
const embedded = model("embedded", () => body(input("x", ["B", T, D])));

async function loaded(c: Compiled, weights: ReadonlyMap<string, { data: Float32Array; shape: number[] }>, backend: "wasm" | "cpu"): Promise<Model> {
  const dir = tempDir("turbograph-ids-");
  writeFileSync(join(dir, "model.mjs"), c.module.js);
  return loadModule(await import(pathToFileURL(join(dir, "model.mjs")).href), { weights, backend });
}

const compiledText = compile(text, { verify: true });
const compiledEmbedded = compile(embedded, { verify: true });
const weights = randomWeights(compiledText.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), 5);
const bodyWeights = new Map([...weights].filter(([k]) => k !== "tok.weight"));
const batchIds = [[0, 3, 10, 3, 7, 1, 2], [10, 10, 0, 5, 4, 9, 8], [6, 6, 6, 6, 6, 6, 6]];

/** The embedding rows for `batchIds`, copied from the table by hand: [B, T, D]. */
function rowsByHand(): tf.Tensor {
  const table = weights.get("tok.weight")!.data;
  const out = new Float32Array(batchIds.length * T * D);
  batchIds.flat().forEach((id, i) => out.set(table.subarray(id * D, (id + 1) * D), i * D));
  return tf.tensor(out, [batchIds.length, T, D], "float32");
}

test("the plan declares the ids int32 with the table's vocab, and gather costs no FLOPs", () => {
  assert.equal(compiledText.plan.inputs, [{ name: "ids", shape: [{ batch: 1 }, T], dtype: "int32", vocab: V }]);
  assert.is(compiledText.plan.flops.perBatch, compiledEmbedded.plan.flops.perBatch);
});

for (const backend of ["wasm", "cpu"] as const) {
  test(`on ${backend}, the compiled embedding equals the rows copied by hand`, async () => {
    const [m, ref] = [await loaded(compiledText, weights, backend), await loaded(compiledEmbedded, bodyWeights, backend)];
    const ids = tf.tensor(batchIds, [batchIds.length, T], "int32");
    const x = rowsByHand();
    const [got, want] = [m.run({ ids }).logits!, ref.run({ x }).logits!];
    assert.equal(got.shape, [batchIds.length, 3]);
    const err = relativeError(got.dataSync(), want.dataSync());
    assert.ok(err < 1e-5, `relative error ${err}`);
    tf.dispose([ids, x, got, want]);
    m.dispose();
    ref.dispose();
  });
}

test("on onnxruntime, the int32 ids go through Gather and agree with wasm", async () => {
  const ort = await loadOnnx(emitOnnx(compiledText.program, compiledText.plan, "text"), { weights, threads: 1 });
  const wasm = await loaded(compiledText, weights, "wasm");
  const ids = tf.tensor(batchIds, [batchIds.length, T], "int32");
  const got = (await ort.run({ ids })).logits!;
  const want = wasm.run({ ids }).logits!;
  const err = relativeError(got.dataSync(), want.dataSync());
  assert.ok(err < 1e-4, `relative error ${err}`);
  const bad = tf.tensor([[0, 1, 2, 3, 4, 5, 11]], [1, T], "int32");
  let error: unknown;
  await ort.run({ ids: bad }).catch((e: unknown) => (error = e));
  assert.ok(error instanceof LoadError && /token id 11 at \[0,6\]/.test(error.message), String(error));
  tf.dispose([ids, got, want, bad]);
  wasm.dispose();
  await ort.dispose();
});

test("bad ids are LoadErrors at run(): out of range, negative, and float ids", async () => {
  const m = await loaded(compiledText, weights, "cpu");
  const run = (ids: tf.Tensor) => {
    try {
      m.run({ ids });
    } catch (e) {
      return e;
    } finally {
      ids.dispose();
    }
    return undefined;
  };
  const high = run(tf.tensor([[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 11, 4, 5, 6]], [2, T], "int32"));
  assert.ok(high instanceof LoadError);
  assert.is(high.message, `run(): input "ids" holds token id 11 at [1,3]; ids must be in [0, ${V}) (the embedding table has ${V} rows)`);
  const negative = run(tf.tensor([[-1, 1, 2, 3, 4, 5, 6]], [1, T], "int32"));
  assert.ok(negative instanceof LoadError && /token id -1 at \[0,0\]/.test(negative.message));
  const float = run(tf.tensor([[0.5, 1, 2, 3, 4, 5, 6]], [1, T], "float32"));
  assert.ok(float instanceof LoadError && /has dtype float32 but int32 is expected \(token ids/.test(float.message), String(float));
  m.dispose();
});

test("an i32 input survives the IR text round trip and compiles to the same plan", () => {
  const g = trace(text);
  const printed = printGraph(g);
  assert.match(printed, /i32\[B,7\]/);
  const again = compileGraph(parseGraph(printed, "text.tir"));
  assert.equal(again.plan.inputs, compiledText.plan.inputs);
  assert.is(again.plan.flops.perBatch, compiledText.plan.flops.perBatch);
});

test("ids anywhere but an embedding, and bad embedding options, are located compile errors", () => {
  const misuse = model("misuse", () => ({ y: linear(input("ids", ["B", T], { dtype: "i32" }), 3, { name: "fc" }) }));
  const cases: [() => unknown, RegExp][] = [
    [() => compile(misuse), /i32 token ids go through an embedding \(gather\) before any other op/],
    [() => compile(model("bad", () => ({ y: embedding(input("ids", ["B", T], { dtype: "i32" }), { name: "tok", vocab: 0, dim: 4 }) }))), /embedding "tok": vocab must be a positive integer, not the number 0/],
    [() => compile(model("f32ids", () => ({ y: embedding(input("ids", ["B", T]), { name: "tok", vocab: 4, dim: 4 }) }))), /the ids must be i32 token ids, not f32/],
    [() => compile(model("dtype", () => ({ y: input("x", ["B", 2], { dtype: "f64" as never }) }))), /input "x": dtype .*"f64".* is not "f32" or "i32"/],
  ];
  for (const [f, message] of cases) {
    let error: unknown;
    try {
      f();
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof CompileError, `not a CompileError: ${String(error)}`);
    assert.match((error as Error).message, message);
    assert.ok((error as CompileError).loc?.file.endsWith("token_ids.test.ts"), `located at ${JSON.stringify((error as CompileError).loc)}`);
  }
});

test.run();
