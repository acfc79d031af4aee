/// <reference lib="deno.ns" />
/**
 * The WebGPU half of test/deno/webgpu.test.ts, run by Deno:
 *
 *   npx deno run --unstable-webgpu -A test/deno/webgpu_check.ts JOB_DIR
 *
 * JOB_DIR (written by the Node test) holds compiled folders, a weights file
 * and an input; for each model this script loads it on tfjs's webgpu backend
 * twice — from bytes in memory, as a browser would (`load({ module, weights })`
 * of runtime/web.ts), and from a `file:` URL — runs it with `runAsync()`, runs
 * it 100 more times watching tf.memory() for leaks, runs turboMerge's
 * conformance cases, and writes JOB_DIR/webgpu.json for the Node side to
 * compare against wasm. It asserts nothing itself except what only it can see
 * (a load error, a leak count, a reference mismatch), which it records.
 *
 * Every kernel runs in WGSL: WEBGPU_CPU_FORWARD is switched off, which would
 * otherwise run small ops on the CPU.
 */

import * as tf from "@tensorflow/tfjs-core";
import { load, selectBackend } from "../../runtime/web.ts";
import { checkAgainstReference } from "../runtime/kernels/_turbo_merge_reference.ts";

interface Job {
  models: { name: string; dir: string; outputs: string[] }[];
  weights: string;
  input: { name: string; shape: number[]; data: number[] };
  leakRuns: number;
}

interface ModelReport {
  name: string;
  /** Output name → values, from the bytes load. */
  outputs: Record<string, number[]>;
  /** Output name → values, from the file: URL load. */
  urlOutputs: Record<string, number[]>;
  tensorsBefore: number;
  tensorsAfter: number;
  msPerRun: number;
}

const dir = Deno.args[0];
if (dir === undefined) {
  console.error("usage: deno run --unstable-webgpu -A test/deno/webgpu_check.ts JOB_DIR");
  Deno.exit(2);
}
const job = JSON.parse(await Deno.readTextFile(`${dir}/job.json`)) as Job;
const report: { backend?: string; models: ModelReport[]; merge?: { plain: number; sources: number }; error?: string } = { models: [] };

async function values(outputs: Record<string, tf.Tensor>, names: string[]): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const name of names) out[name] = Array.from(await outputs[name]!.data());
  tf.dispose(Object.values(outputs));
  return out;
}

try {
  const info = await selectBackend("webgpu");
  tf.env().set("WEBGPU_CPU_FORWARD", false); // registered by the backend's import
  report.backend = `${info.name} (${info.reason})`;
  const weights = await Deno.readFile(job.weights);
  const input = tf.tensor(job.input.data, job.input.shape, "float32");
  for (const m of job.models) {
    const module = await Deno.readFile(`${m.dir}/model.mjs`);
    const fromBytes = await load({ module, weights, source: m.name }, { backend: "webgpu" });
    const outputs = await values(await fromBytes.runAsync({ [job.input.name]: input }), m.outputs);
    const folder = new URL(`file://${m.dir}/`);
    const fromUrl = await load(folder, { weights: new URL(`file://${job.weights}`), backend: "webgpu" });
    const urlOutputs = await values(await fromUrl.runAsync({ [job.input.name]: input }), m.outputs);
    fromUrl.dispose();
    const tensorsBefore = tf.memory().numTensors;
    const t0 = performance.now();
    for (let i = 0; i < job.leakRuns; i++) {
      const out = await fromBytes.runAsync({ [job.input.name]: input });
      await out[m.outputs[0]!]!.data();
      tf.dispose(Object.values(out));
    }
    const msPerRun = (performance.now() - t0) / Math.max(1, job.leakRuns);
    const tensorsAfter = tf.memory().numTensors;
    fromBytes.dispose();
    report.models.push({ name: m.name, outputs, urlOutputs, tensorsBefore, tensorsAfter, msPerRun });
    console.error(`webgpu: ${m.name}: ${job.leakRuns} runs, ${msPerRun.toFixed(1)} ms each, tensors ${tensorsBefore} → ${tensorsAfter}`);
  }
  input.dispose();
  const t0 = performance.now();
  report.merge = { plain: await checkAgainstReference(false), sources: await checkAgainstReference(true) };
  console.error(`webgpu: turboMerge reference cases ${report.merge.plain} + ${report.merge.sources} agree (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
} catch (e) {
  report.error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  console.error(`webgpu: ${report.error}`);
}
await Deno.writeTextFile(`${dir}/webgpu.json`, JSON.stringify(report));
