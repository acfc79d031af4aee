/**
 * The worker side of `loadParallel()`: each worker_thread owns one tfjs with
 * its own backend, loads the same compiled model and weights, and runs the
 * slices of a batch it is sent. Messages carry raw Float32Arrays.
 */

import * as tf from "@tensorflow/tfjs-core";
import { parentPort } from "node:worker_threads";
import { load, type LoadFromDiskOptions } from "./mod.ts";
import type { Model } from "./load.ts";

export interface InitMessage {
  kind: "init";
  dir: string;
  options: LoadFromDiskOptions;
}
export interface RunMessage {
  kind: "run";
  id: number;
  inputs: Record<string, { data: Float32Array; shape: number[] }>;
}
export type Reply =
  | { kind: "ready"; backend: string }
  | { kind: "result"; id: number; outputs: Record<string, { data: Float32Array; shape: number[] }> }
  | { kind: "error"; id: number | null; message: string };

let model: Model | undefined;
const port = parentPort!;

port.on("message", async (msg: InitMessage | RunMessage) => {
  try {
    if (msg.kind === "init") {
      model = await load(msg.dir, msg.options);
      port.postMessage({ kind: "ready", backend: model.info.backend.name } satisfies Reply);
      return;
    }
    if (model === undefined) throw new Error("the worker has no model yet");
    const inputs: Record<string, tf.Tensor> = {};
    for (const [name, t] of Object.entries(msg.inputs)) inputs[name] = tf.tensor(t.data, t.shape, "float32");
    const out = model.run(inputs);
    const outputs: Record<string, { data: Float32Array; shape: number[] }> = {};
    for (const [name, t] of Object.entries(out)) outputs[name] = { data: (await t.data()) as Float32Array, shape: t.shape };
    tf.dispose([...Object.values(inputs), ...Object.values(out)]);
    port.postMessage({ kind: "result", id: msg.id, outputs } satisfies Reply, Object.values(outputs).map((o) => o.data.buffer as ArrayBuffer));
  } catch (e) {
    port.postMessage({ kind: "error", id: msg.kind === "run" ? msg.id : null, message: (e as Error).message } satisfies Reply);
  }
});
