/**
 * examples/vit/gradients.ts (the gradient rules training uses) against finite
 * differences, and examples/vit/wasm_kernels.ts (XNNPACK batched matmul,
 * zero-copy Identity) against the cpu backend.
 */

import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { VitConfig } from "../../examples/vit/config.ts";
import { vitParams } from "../../examples/vit/config.ts";
import { eagerVit } from "../../examples/vit/eager.ts";
import { gradientKernels, registerGradients } from "../../examples/vit/gradients.ts";
import { registerFastWasmKernels } from "../../examples/vit/wasm_kernels.ts";
import { checkFastKernels, uniform } from "./_wasm_kernel_checks.ts";
import { selectBackend } from "../../runtime/mod.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";

registerGradients();
await selectBackend("cpu");

const randomTensor = (shape: number[], seed: number, scale = 1): tf.Tensor =>
  tf.mul(tf.tensor(uniform(shape.reduce((a, b) => a * b, 1), seed), shape), scale);

/**
 * Checks the gradient of `f` at each input against a central difference along
 * a random direction: (f(x + εd) − f(x − εd)) / 2ε ≈ ⟨∇f, d⟩. The direction is
 * scaled to the input's root-mean-square, so each step is 1 % of its values.
 */
function checkGradient(name: string, f: (...xs: tf.Tensor[]) => tf.Scalar, xs: tf.Tensor[], tolerance = 2e-2): void {
  const grads = tf.grads(f)(xs);
  xs.forEach((x, i) => {
    const rms = Math.sqrt(tf.mean(tf.square(x)).dataSync()[0]!);
    const d = randomTensor(x.shape as number[], 1000 + i, rms > 0 ? rms : 1);
    const eps = 1e-2;
    const at = (sign: number) => f(...xs.map((y, j) => (j === i ? tf.add(y, tf.mul(d, sign * eps)) : y))).dataSync()[0]!;
    const numeric = (at(1) - at(-1)) / (2 * eps);
    const analytic = tf.sum(tf.mul(grads[i]!, d)).dataSync()[0]!;
    const err = Math.abs(numeric - analytic) / Math.max(1e-3, Math.abs(numeric));
    assert.ok(err < tolerance, `${name}, input ${i}: analytic ${analytic}, numeric ${numeric} (error ${err})`);
  });
}

const w = (shape: number[]) => randomTensor(shape, 7);

const cases: Array<[string, (...xs: tf.Tensor[]) => tf.Scalar, number[][]]> = [
  ["Add (broadcast)", (a, b) => tf.sum(tf.mul(tf.add(a!, b!), w([2, 3, 4]))), [[2, 3, 4], [3, 1]]],
  ["Sub (broadcast)", (a, b) => tf.sum(tf.mul(tf.sub(a!, b!), w([2, 3, 4]))), [[2, 1, 4], [4]]],
  ["Multiply (broadcast)", (a, b) => tf.sum(tf.mul(tf.mul(a!, b!), w([2, 3, 4]))), [[2, 3, 4], [1, 3, 1]]],
  ["RealDiv", (a, b) => tf.sum(tf.mul(tf.div(a!, tf.add(tf.square(b!), 1)), w([3, 4]))), [[3, 4], [3, 4]]],
  ["Neg, Exp", (a) => tf.sum(tf.mul(tf.exp(tf.neg(a!)), w([3, 4]))), [[3, 4]]],
  ["Square, Rsqrt", (a) => tf.sum(tf.mul(tf.rsqrt(tf.add(tf.square(a!), 0.5)), w([3, 4]))), [[3, 4]]],
  ["Erf", (a) => tf.sum(tf.mul(tf.erf(a!), w([3, 4]))), [[3, 4]]],
  ["Softmax", (a) => tf.sum(tf.mul(tf.softmax(a!), w([2, 3, 5]))), [[2, 3, 5]]],
  ["Sum, Mean", (a) => tf.sum(tf.mul(tf.add(tf.sum(a!, 1, true), tf.mean(a!, -1, true)), w([2, 1, 1]))), [[2, 3, 4]]],
  ["moments", (a) => tf.sum(tf.mul(tf.moments(a!, -1, true).variance, w([2, 3, 1]))), [[2, 3, 4]]],
  ["Reshape, Transpose", (a) => tf.sum(tf.mul(tf.transpose(tf.reshape(a!, [2, 3, 4]), [2, 0, 1]), w([4, 2, 3]))), [[6, 4]]],
  ["Tile", (a) => tf.sum(tf.mul(tf.tile(a!, [3, 1, 2]), w([3, 2, 6]))), [[1, 2, 3]]],
  ["Slice", (a) => tf.sum(tf.mul(tf.slice(a!, [1, 0, 2], [2, -1, 2]), w([2, 3, 2]))), [[3, 3, 5]]],
  ["Concat", (a, b) => tf.sum(tf.mul(tf.concat([a!, b!], 1), w([2, 5, 3]))), [[2, 2, 3], [2, 3, 3]]],
  ["Sigmoid", (a) => tf.sum(tf.mul(tf.sigmoid(a!), w([3, 4]))), [[3, 4]]],
  ["Sqrt", (a) => tf.sum(tf.mul(tf.sqrt(tf.add(tf.square(a!), 0.5)), w([3, 4]))), [[3, 4]]],
  ["GatherV2 (embedding rows, one read twice)", (a) => tf.sum(tf.mul(tf.gather(a!, tf.tensor2d([[0, 2], [2, 1]], [2, 2], "int32")), w([2, 2, 3]))), [[4, 3]]],
  ["SplitV", (a) => { const [p, q] = tf.split(a!, [1, 3], 1); return tf.sum(tf.add(tf.sum(tf.mul(p!, w([2, 1]))), tf.sum(tf.mul(q!, tf.square(q!))))); }, [[2, 4]]],
  ["ExpandDims", (a) => tf.sum(tf.mul(tf.expandDims(a!, 1), w([2, 1, 3]))), [[2, 3]]],
  ["Cast", (a) => tf.sum(tf.mul(tf.cast(a!, "float32"), w([3, 4]))), [[3, 4]]],
  ["BatchMatMul 2-D", (a, b) => tf.sum(tf.mul(tf.matMul(a!, b!), w([3, 5]))), [[3, 4], [4, 5]]],
  ["BatchMatMul transposeA", (a, b) => tf.sum(tf.mul(tf.matMul(a!, b!, true, false), w([2, 3, 5]))), [[2, 4, 3], [2, 4, 5]]],
  ["BatchMatMul transposeB", (a, b) => tf.sum(tf.mul(tf.matMul(a!, b!, false, true), w([2, 3, 5]))), [[2, 3, 4], [2, 5, 4]]],
  ["BatchMatMul both", (a, b) => tf.sum(tf.mul(tf.matMul(a!, b!, true, true), w([2, 3, 5]))), [[2, 4, 3], [2, 5, 4]]],
];

for (const [name, f, shapes] of cases) {
  test(`gradient rule: ${name} matches finite differences`, () => {
    checkGradient(name, f, shapes.map((s, i) => randomTensor(s, 10 + i)));
  });
}

test("every kernel of the ViT's training loss has a rule", () => {
  const covered = new Set(gradientKernels);
  for (const k of ["Reshape", "Transpose", "BatchMatMul", "Add", "Tile", "Concat", "Mean", "Cast", "Sub", "Square", "Rsqrt", "Multiply", "Softmax", "Erf", "Slice", "Sum", "RealDiv"]) {
    assert.ok(covered.has(k), k);
  }
});

const small: VitConfig = { name: "grad", image: 8, patch: 4, channels: 1, dim: 8, depth: 2, heads: 2, mlpRatio: 2, classes: 3, eps: 1e-6 };

function vitLoss(params: Map<string, tf.Tensor>): tf.Scalar {
  const x = randomTensor([2, 1, 8, 8], 3) as tf.Tensor4D;
  const y = tf.oneHot(tf.tensor1d([0, 2], "int32"), 3);
  return tf.losses.softmaxCrossEntropy(y, eagerVit(small, params, x)) as tf.Scalar;
}

test("the eager ViT's loss: analytic gradients match finite differences for every parameter", () => {
  const weights = randomWeights(vitParams(small), 5);
  const names = [...weights.keys()];
  const tensors = names.map((n) => tf.tensor(weights.get(n)!.data, weights.get(n)!.shape));
  checkGradient("vit", (...xs) => vitLoss(new Map(names.map((n, i) => [n, xs[i]!]))), tensors, 5e-2);
});

test("on wasm with the fast kernels (XNNPACK views): gradients and matmuls equal the cpu backend's", async () => {
  await checkFastKernels(() => registerFastWasmKernels());
});

test.run();
