/**
 * One gradient computation of the MNIST ViT, shared by the training loop
 * (train_mnist.ts) and its data-parallel workers (train_worker.ts): the same
 * backend set-up, the same forward pass (`eagerVit`), the same loss.
 */

import * as tf from "@tensorflow/tfjs-core";
import { selectBackend, type BackendChoice } from "../../runtime/backend.ts";
import { registerSimdMatmul } from "../../runtime/kernels/simd_matmul.ts";
import type { VitConfig } from "./config.ts";
import { eagerVit } from "./eager.ts";
import { registerGradients } from "./gradients.ts";
import { MNIST_SIZE } from "./mnist_data.ts";
import { registerFastWasmKernels } from "./wasm_kernels.ts";

/** Gradients, the backend, and on wasm the fast matmul kernels; returns a line describing them. */
export async function setUpTraining(choice: BackendChoice): Promise<{ backend: string; description: string }> {
  registerGradients();
  const backend = await selectBackend(choice);
  // On wasm: runtime/kernels' SIMD batched matmul for untransposed batched products, and
  // wasm_kernels.ts around it (explicit transposes, XNNPACK for 2-D, zero-copy Identity).
  const simd = backend.name === "wasm" && registerSimdMatmul();
  const fast = backend.name === "wasm" && registerFastWasmKernels({ batched: simd ? "inner" : "views" });
  const kernels = fast ? `; fast kernels (batched matmul: ${simd ? "SIMD" : "XNNPACK views"})` : "";
  return { backend: backend.name, description: `backend ${backend.name} (${backend.reason})${kernels}` };
}

export interface StepResult {
  /** Mean loss over the images (with label smoothing). */
  loss: number;
  /** d loss / d parameter, in the order of the variables passed. */
  grads: tf.Tensor[];
  /** Predicted class of each image. */
  predictions: Int32Array;
}

/** Loss, gradients and predictions for `count` images (flat [count·784]) and their labels. */
export function gradientStep(
  config: VitConfig,
  params: Map<string, tf.Variable>,
  varList: tf.Variable[],
  images: Float32Array,
  labels: ArrayLike<number>,
  count: number,
  labelSmoothing: number,
): StepResult {
  const x = tf.tensor4d(images, [count, 1, MNIST_SIZE, MNIST_SIZE]);
  const y = tf.tidy(() => tf.oneHot(tf.tensor1d(Array.from(labels), "int32"), config.classes));
  let logits: tf.Tensor | undefined;
  const { value, grads } = tf.variableGrads(() => {
    const out = eagerVit(config, params, x);
    logits = tf.keep(out);
    return tf.losses.softmaxCrossEntropy(y, out, undefined, labelSmoothing) as tf.Scalar;
  }, varList);
  const loss = value.dataSync()[0]!;
  const predictions = Int32Array.from(tf.tidy(() => tf.argMax(logits!, 1).dataSync()));
  tf.dispose([x, y, value, logits!]);
  return { loss, grads: varList.map((v) => grads[v.name]!), predictions };
}

/** The tensors' values end to end (parameters and gradients travel between threads this way). */
export function flatten(tensors: readonly tf.Tensor[]): Float32Array<ArrayBuffer> {
  const out = new Float32Array(tensors.reduce((n, t) => n + t.size, 0));
  let offset = 0;
  for (const t of tensors) {
    out.set(t.dataSync() as Float32Array, offset);
    offset += t.size;
  }
  return out;
}

/** `flatten`'s inverse: consecutive pieces of `values` shaped like `like`, as new tensors. */
export function unflatten(values: Float32Array, like: readonly tf.Tensor[]): tf.Tensor[] {
  let offset = 0;
  return like.map((t) => {
    const piece = tf.tensor(values.subarray(offset, offset + t.size), t.shape, "float32");
    offset += t.size;
    return piece;
  });
}
