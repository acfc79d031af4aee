/**
 * Checks shared by the tests of examples/vit/wasm_kernels.ts in its two modes:
 * with the fast kernels registered on wasm, a small ViT's training gradients
 * and a set of matmuls (transposes, broadcast batches, 2-D) equal the cpu
 * backend's. Each mode needs its own process (kernel registration is global).
 */

import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import * as assert from "uvu/assert";
import type { VitConfig } from "../../examples/vit/config.ts";
import { vitParams } from "../../examples/vit/config.ts";
import { eagerVit } from "../../examples/vit/eager.ts";
import { registerGradients } from "../../examples/vit/gradients.ts";
import { selectBackend } from "../../runtime/mod.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { relativeError } from "../_helpers.ts";

/** mulberry32 uniform numbers in [-1, 1). */
export function uniform(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

const small: VitConfig = { name: "grad", image: 8, patch: 4, channels: 1, dim: 8, depth: 2, heads: 2, mlpRatio: 2, classes: 3, eps: 1e-6 };

function vitGradients(): { names: string[]; values: Float32Array[] } {
  const weights = randomWeights(vitParams(small), 5);
  const names = [...weights.keys()];
  const vars = names.map((n) => tf.variable(tf.tensor(weights.get(n)!.data, weights.get(n)!.shape), true, `${n}.${tf.getBackend()}`));
  const params = new Map(names.map((n, i) => [n, vars[i]! as tf.Tensor]));
  const x = tf.tensor(uniform(2 * 64, 3), [2, 1, 8, 8]) as tf.Tensor4D;
  const y = tf.oneHot(tf.tensor1d([0, 2], "int32"), 3);
  const { grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, eagerVit(small, params, x)) as tf.Scalar, vars);
  const values = vars.map((v) => grads[v.name]!.dataSync() as Float32Array);
  tf.dispose([...vars, x, y, ...Object.values(grads)]);
  return { names, values };
}

const matmuls: Array<[number[], number[], boolean, boolean]> = [
  [[5, 7, 3], [5, 3, 4], false, false],
  [[5, 3, 7], [5, 3, 4], true, false],
  [[5, 7, 3], [5, 4, 3], false, true],
  [[2, 3, 3, 7], [2, 3, 4, 3], true, true],
  [[6, 7, 3], [3, 4], false, false],
  [[6, 7, 3], [1, 4, 3], false, true],
  [[70, 30], [30, 20], false, false],
  [[30, 70], [20, 30], true, true],
  [[8, 197, 197], [8, 197, 16], true, false],
];

/**
 * Computes the references on cpu, then switches to wasm, calls `register`
 * (which must return true) and compares; ends on cpu.
 */
export async function checkFastKernels(register: () => boolean): Promise<void> {
  registerGradients();
  await selectBackend("cpu");
  const cpu = vitGradients();
  const inputs = matmuls.map(([a, b], i) => [uniform(a.reduce((x, y) => x * y), 20 + i), uniform(b.reduce((x, y) => x * y), 40 + i)] as const);
  const want = matmuls.map(([sa, sb, ta, tb], i) => tf.tidy(() => {
    const c = tf.matMul(tf.tensor(inputs[i]![0], sa), tf.tensor(inputs[i]![1], sb), ta, tb);
    return { shape: c.shape, data: c.dataSync() };
  }));

  await selectBackend("wasm");
  assert.ok(register(), "the kernels were registered");
  const wasm = vitGradients();
  // Per tensor: |wasm − cpu| ≤ 1e-4·max|cpu| + 1e-7 (the attention key biases' gradients are 0 up to rounding).
  cpu.names.forEach((n, i) => {
    const ref = cpu.values[i]!;
    const scale = ref.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const diff = wasm.values[i]!.reduce((m, v, k) => Math.max(m, Math.abs(v - ref[k]!)), 0);
    assert.ok(diff <= 1e-4 * scale + 1e-7, `gradient of ${n}: max difference ${diff}, scale ${scale}`);
  });

  const before = tf.memory().numTensors;
  matmuls.forEach(([sa, sb, ta, tb], i) => {
    const a = tf.tensor(inputs[i]![0], sa);
    const b = tf.tensor(inputs[i]![1], sb);
    const got = tf.matMul(a, b, ta, tb);
    assert.equal(got.shape, want[i]!.shape, `matmul ${i}: shape`);
    const err = relativeError(got.dataSync(), want[i]!.data);
    assert.ok(err < 1e-5, `matmul ${i}: relative error ${err}`);
    const values = Array.from(got.dataSync());
    const copy = tf.clone(got);
    tf.dispose([a, b, got]);
    assert.equal(Array.from(copy.dataSync()), values, "a clone outlives its source");
    copy.dispose();
  });
  assert.is(tf.memory().numTensors, before, "no tensor left behind");
  await selectBackend("cpu");
}
