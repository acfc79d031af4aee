/**
 * A data-parallel worker of train_mnist.ts (`--workers N` starts N − 1 of
 * them): it holds a replica of the parameters, and for each step receives the
 * current parameters and its slice of the batch, and returns the gradients of
 * the slice's mean loss, flattened in the parameters' order.
 */

import * as tf from "@tensorflow/tfjs-core";
import { parentPort } from "node:worker_threads";
import type { BackendChoice } from "../../runtime/backend.ts";
import type { VitConfig } from "./config.ts";
import { flatten, gradientStep, setUpTraining, unflatten } from "./train_step.ts";

export interface TrainInit {
  kind: "init";
  config: VitConfig;
  backend: BackendChoice;
  /** Parameter names and shapes, in the order of every flat array exchanged. */
  params: Array<{ name: string; shape: number[] }>;
}
export interface TrainStep {
  kind: "step";
  /** All parameters, flat. */
  values: Float32Array;
  images: Float32Array;
  labels: Int32Array;
  count: number;
  labelSmoothing: number;
}
export type TrainReply =
  | { kind: "ready"; backend: string }
  | { kind: "grads"; loss: number; grads: Float32Array; predictions: Int32Array }
  | { kind: "error"; message: string };

const port = parentPort!;
let state: { config: VitConfig; params: Map<string, tf.Variable>; varList: tf.Variable[] } | undefined;

port.on("message", async (msg: TrainInit | TrainStep) => {
  try {
    if (msg.kind === "init") {
      const { backend } = await setUpTraining(msg.backend);
      const params = new Map<string, tf.Variable>();
      for (const p of msg.params) params.set(p.name, tf.variable(tf.zeros(p.shape), true, p.name));
      const varList = [...params.values()];
      state = { config: msg.config, params, varList };
      port.postMessage({ kind: "ready", backend } satisfies TrainReply);
      return;
    }
    if (state === undefined) throw new Error("internal: train worker got a step before init");
    const { varList } = state;
    tf.tidy(() => unflatten(msg.values, varList).forEach((t, i) => varList[i]!.assign(t)));
    const r = gradientStep(state.config, state.params, varList, msg.images, msg.labels, msg.count, msg.labelSmoothing);
    const grads = flatten(r.grads);
    tf.dispose(r.grads);
    port.postMessage({ kind: "grads", loss: r.loss, grads, predictions: r.predictions } satisfies TrainReply, [grads.buffer, r.predictions.buffer as ArrayBuffer]);
  } catch (e) {
    port.postMessage({ kind: "error", message: (e as Error).message } satisfies TrainReply);
  }
});
