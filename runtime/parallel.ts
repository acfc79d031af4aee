/**
 * Data parallelism over worker_threads (Node only). The wasm backend has no
 * threads under Node, so using several cores means several tfjs instances:
 * `loadParallel()` starts `workers` workers, each loading the same compiled
 * model and weights; `run()` splits the batch into contiguous slices, runs
 * them at once and joins the outputs along the batch axis.
 */

import * as tf from "@tensorflow/tfjs-core";
import { Worker } from "node:worker_threads";
import type { LoadFromDiskOptions } from "./mod.ts";
import { dimValue, type Plan } from "../compiler/contract/plan.ts";
import type { InitMessage, Reply, RunMessage } from "./worker.ts";
import { importCompiled } from "./node_io.ts";
import { isCompiledModule, LoadError } from "./load.ts";

export interface ParallelOptions extends LoadFromDiskOptions {
  /** Number of worker threads (≥ 1). */
  workers: number;
}

export interface ParallelModel {
  readonly info: { readonly plan: Plan; readonly workers: number; readonly backend: string };
  /** Runs the batch split over the workers; the caller owns the returned tensors. */
  run(inputs: Readonly<Record<string, tf.Tensor>>): Promise<Record<string, tf.Tensor>>;
  dispose(): Promise<void>;
}

/**
 * Starts a worker running the module at `url`. Published JavaScript runs as
 * is; a TypeScript module (development, tests, examples) first gets tsx's
 * loader registered inside the worker, because Node 20 does not pass module
 * hooks from --import on to workers.
 */
export function startModuleWorker(url: URL): Worker {
  if (!url.pathname.endsWith(".ts")) return new Worker(url);
  const target = JSON.stringify(url.href);
  const api = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  return new Worker(`import(${api}).then((tsx) => { tsx.register(); return import(${target}); });`, { eval: true });
}

const startWorker = (): Worker => startModuleWorker(new URL(import.meta.url.endsWith(".ts") ? "./worker.ts" : "./worker.js", import.meta.url));

const batchAxis = (shape: Plan["inputs"][number]["shape"]) => shape.findIndex((d) => typeof d !== "number");

export async function loadParallel(compiledDir: string, options: ParallelOptions): Promise<ParallelModel> {
  const { workers: count, ...loadOptions } = options;
  if ("Deno" in globalThis) {
    throw new LoadError("loadParallel(): worker-thread parallelism is Node-only (its workers start through Node's TypeScript loader); under Deno use load() once per process, or run it from Node");
  }
  if (!Number.isInteger(count) || count < 1) throw new LoadError(`loadParallel(): workers ${count} must be a positive integer`);
  const compiled = await importCompiled(compiledDir);
  if (!isCompiledModule(compiled)) throw new LoadError(`"${compiledDir}" does not hold a turbograph compiled model`);
  const plan = compiled.plan;
  const workers = Array.from({ length: count }, () => startWorker());
  const pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  const ready = workers.map((w) => new Promise<string>((resolve, reject) => {
    w.on("message", (r: Reply) => {
      if (r.kind === "ready") resolve(r.backend);
      else if (r.kind === "error" && r.id === null) reject(new LoadError(`worker failed to load the model: ${r.message}`));
      else if (r.id !== null) {
        const p = pending.get(r.id);
        pending.delete(r.id);
        if (r.kind === "error") p?.reject(new LoadError(`run() in a worker: ${r.message}`));
        else p?.resolve(r);
      }
    });
    w.on("error", (e) => reject(e));
    w.postMessage({ kind: "init", dir: compiledDir, options: loadOptions } satisfies InitMessage);
  }));
  const backends = await Promise.all(ready);

  const call = (w: Worker, inputs: RunMessage["inputs"]) => new Promise<Reply>((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    w.postMessage({ kind: "run", id, inputs } satisfies RunMessage, Object.values(inputs).map((i) => i.data.buffer as ArrayBuffer));
  });

  return {
    info: { plan, workers: count, backend: backends[0]! },
    async run(inputs) {
      const first = plan.inputs[0]!;
      const t = inputs[first.name];
      if (t === undefined) throw new LoadError(`run(): missing input "${first.name}"`);
      const axis = batchAxis(first.shape);
      const batch = t.shape[axis]! / (first.shape[axis] as { batch: number }).batch;
      const parts = Math.min(count, batch);
      const sizes = Array.from({ length: parts }, (_, i) => Math.floor(batch / parts) + (i < batch % parts ? 1 : 0));
      const slices: RunMessage["inputs"][] = sizes.map(() => ({}));
      for (const spec of plan.inputs) {
        const x = inputs[spec.name];
        if (x === undefined) throw new LoadError(`run(): missing input "${spec.name}"`);
        const ax = batchAxis(spec.shape);
        const pieces = tf.split(x, sizes.map((s) => dimValue(spec.shape[ax]!, s)), ax);
        pieces.forEach((p, i) => {
          slices[i]![spec.name] = { data: p.dataSync() as Float32Array, shape: p.shape };
          p.dispose();
        });
      }
      const replies = await Promise.all(slices.map((s, i) => call(workers[i]!, s)));
      const out: Record<string, tf.Tensor> = {};
      for (const spec of plan.outputs.length > 0 ? Object.keys((replies[0] as Extract<Reply, { kind: "result" }>).outputs) : []) {
        const parts = replies.map((r) => (r as Extract<Reply, { kind: "result" }>).outputs[spec]!);
        const planned = plan.outputs.find((o) => o.name === spec);
        const ax = planned === undefined ? 0 : Math.max(0, batchAxis(planned.shape));
        const tensors = parts.map((p) => tf.tensor(p.data, p.shape, "float32"));
        out[spec] = tensors.length === 1 ? tensors[0]! : tf.concat(tensors, ax);
        if (tensors.length > 1) tf.dispose(tensors);
      }
      return out;
    },
    async dispose() {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}
