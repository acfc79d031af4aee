/**
 * The WebAssembly SIMD batched matmul against the stock tfjs kernels: same
 * results for odd sizes, batch 1, broadcast batches, and the transposed
 * operands it hands back to the stock kernel.
 */

import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { registerSimdMatmul } from "../../../runtime/kernels/simd_matmul.ts";
import { relativeError } from "../../_helpers.ts";

tf.env().set("PROD", true);

type Case = { a: number[]; b: number[]; ta?: boolean; tb?: boolean };
const cases: Case[] = [
  { a: [48, 197, 64], b: [48, 64, 197] },
  { a: [48, 197, 197], b: [48, 197, 64] },
  { a: [3, 5, 7], b: [3, 7, 9] },
  { a: [2, 1, 1], b: [2, 1, 1] },
  { a: [4, 3, 17], b: [4, 17, 33] },
  { a: [2, 3, 4, 5], b: [2, 3, 5, 6] },
  { a: [1, 6, 5], b: [1, 5, 4] },
  { a: [5, 6, 5], b: [1, 5, 19] },
  { a: [1, 6, 5], b: [5, 5, 18] },
  { a: [7, 3], b: [3, 21] },
  { a: [3, 5, 7], b: [3, 9, 7], tb: true },
  { a: [4, 6, 8], b: [1, 10, 8], tb: true },
  { a: [16, 99, 64], b: [16, 98, 64], tb: true },
  { a: [3, 7, 5], b: [3, 7, 9], ta: true },
];

/** The reference: the cpu backend's matmul. */
async function reference(c: Case, a: Float32Array, b: Float32Array): Promise<Float32Array> {
  await tf.setBackend("cpu");
  const y = tf.matMul(tf.tensor(a, c.a), tf.tensor(b, c.b), c.ta, c.tb);
  const out = y.dataSync() as Float32Array;
  await tf.setBackend("wasm");
  return out;
}

test("`registerSimdMatmul()` installs on the wasm backend", async () => {
  await tf.setBackend("wasm");
  assert.ok(registerSimdMatmul());
  assert.ok(registerSimdMatmul(), "idempotent");
});

for (const c of cases) {
  test(`SIMD matmul ${JSON.stringify(c.a)}·${JSON.stringify(c.b)}${c.ta ? " transposeA" : ""}${c.tb ? " transposeB" : ""} equals the cpu kernel`, async () => {
    await tf.setBackend("wasm");
    registerSimdMatmul();
    const a = tf.randomNormal(c.a, 0, 1, "float32", 1).dataSync() as Float32Array;
    const b = tf.randomNormal(c.b, 0, 1, "float32", 2).dataSync() as Float32Array;
    const want = await reference(c, a, b);
    const before = tf.memory().numTensors;
    const ta = tf.tensor(a, c.a);
    const tb = tf.tensor(b, c.b);
    const y = tf.matMul(ta, tb, c.ta, c.tb);
    const got = y.dataSync();
    assert.is(got.length, want.length);
    assert.ok(relativeError(got, want) < 1e-5, `relative error ${relativeError(got, want)}`);
    tf.dispose([ta, tb, y]);
    assert.is(tf.memory().numTensors, before);
  });
}

test("a matmul whose operands live far apart in the heap after growth is still right", async () => {
  await tf.setBackend("wasm");
  registerSimdMatmul();
  const big = tf.zeros([64, 1024, 1024]); // grows the wasm memory by 256 MiB
  const a = tf.randomNormal([6, 33, 20], 0, 1, "float32", 3);
  const b = tf.randomNormal([6, 20, 31], 0, 1, "float32", 4);
  const got = tf.matMul(a, b).dataSync();
  const want = await reference({ a: [6, 33, 20], b: [6, 20, 31] }, a.dataSync() as Float32Array, b.dataSync() as Float32Array);
  assert.ok(relativeError(got, want) < 1e-5);
  big.dispose();
});

test.run();
