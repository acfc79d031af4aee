/**
 * Data-parallel gradients for train_mnist.ts: N − 1 worker threads
 * (train_worker.ts, each with its own tfjs) compute the gradients of all but
 * the first slice of each batch while this thread computes the first; the
 * slices' mean-loss gradients are averaged weighted by slice size, which is
 * the whole batch's gradient up to float rounding.
 */

import * as tf from "@tensorflow/tfjs-core";
import type { Worker } from "node:worker_threads";
import type { BackendChoice } from "../../runtime/backend.ts";
import { startModuleWorker } from "../../runtime/parallel.ts";
import type { VitConfig } from "./config.ts";
import { MNIST_PIXELS } from "./mnist_data.ts";
import { flatten, gradientStep, unflatten, type StepResult } from "./train_step.ts";
import type { TrainInit, TrainReply, TrainStep } from "./train_worker.ts";

/** N − 1 worker threads computing the gradients of all but the first slice of each batch. */
export class ShardedGradients {
  private constructor(private readonly workers: Worker[]) {}

  static async start(count: number, config: VitConfig, backend: BackendChoice, params: TrainInit["params"]): Promise<ShardedGradients> {
    const workers = Array.from({ length: count }, () => startModuleWorker(new URL("./train_worker.ts", import.meta.url)));
    const s = new ShardedGradients(workers);
    await Promise.all(workers.map((w) => s.call(w, { kind: "init", config, backend, params })));
    return s;
  }

  private call(w: Worker, msg: TrainInit | TrainStep, transfer: ArrayBuffer[] = []): Promise<TrainReply> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(new Error(`train worker: ${e.message}`));
      w.once("error", onError);
      w.once("message", (r: TrainReply) => {
        w.off("error", onError);
        if (r.kind === "error") reject(new Error(`train worker: ${r.message}`));
        else resolve(r);
      });
      w.postMessage(msg, transfer);
    });
  }

  /** The whole batch's mean-loss gradients, this thread computing the first slice meanwhile. */
  async step(config: VitConfig, params: Map<string, tf.Variable>, varList: tf.Variable[], images: Float32Array, labels: ArrayLike<number>, count: number, labelSmoothing: number): Promise<StepResult> {
    const parts = this.workers.length + 1;
    const sizes = Array.from({ length: parts }, (_, i) => Math.floor(count / parts) + (i < count % parts ? 1 : 0));
    const starts = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
    const values = flatten(varList);
    const pixels = MNIST_PIXELS;
    const replies = this.workers.map((w, i) => {
      const [start, n] = [starts[i + 1]!, sizes[i + 1]!];
      if (n === 0) return Promise.resolve(undefined);
      const slice = images.slice(start * pixels, (start + n) * pixels);
      const msg: TrainStep = { kind: "step", values, images: slice, labels: Int32Array.from(Array.from(labels).slice(start, start + n)), count: n, labelSmoothing };
      return this.call(w, msg, [slice.buffer]);
    });
    const own = gradientStep(config, params, varList, images.subarray(0, sizes[0]! * pixels), Array.from(labels).slice(0, sizes[0]!), sizes[0]!, labelSmoothing);
    const results = await Promise.all(replies).catch((e: unknown) => {
      tf.dispose(own.grads);
      throw e;
    });
    const predictions = new Int32Array(count);
    predictions.set(own.predictions, 0);
    let loss = (own.loss * sizes[0]!) / count;
    const grads = tf.tidy(() => {
      let acc = own.grads.map((g) => tf.mul(g, sizes[0]! / count));
      results.forEach((r, i) => {
        if (r === undefined) return;
        if (r.kind !== "grads") throw new Error(`internal: train worker answered ${r.kind} to a step`);
        const weight = sizes[i + 1]! / count;
        loss += r.loss * weight;
        predictions.set(r.predictions, starts[i + 1]!);
        const parts = unflatten(r.grads, varList);
        acc = acc.map((g, k) => tf.add(g, tf.mul(parts[k]!, weight)));
      });
      return acc;
    });
    tf.dispose(own.grads);
    return { loss, grads, predictions };
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
