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
 * conformance cases and generation mode's windowMerge/restore, and writes JOB_DIR/webgpu.json for the Node side to
 * compare against wasm. It asserts nothing itself except what only it can see
 * (a load error, a leak count, a reference mismatch), which it records.
 *
 * Every kernel runs in WGSL: WEBGPU_CPU_FORWARD is switched off, which would
 * otherwise run small ops on the CPU.
 */

import * as tf from "@tensorflow/tfjs-core";
import { load, selectBackend } from "../../runtime/web.ts";
import { loadParallel } from "../../runtime/mod.ts";
import { restore, windowMerge, type WindowMergeOptions } from "../../runtime/kernels/window_merge.ts";
import { checkAgainstReference } from "../runtime/kernels/_turbo_merge_reference.ts";

interface InputData {
  name: string;
  shape: number[];
  dtype: "float32" | "int32";
  data: number[];
}

interface Job {
  models: { name: string; dir: string; weights: string; inputs: InputData[]; outputs: string[]; leakRuns: number }[];
  /** windowMerge on the same inputs as on wasm: its tokens and restore rows come back for comparison. */
  windowMerge: { inputs: { x: InputData; metric: InputData; semantic: InputData }; options: WindowMergeOptions };
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
  /** Peak bytes of one run's tensors (tf.profile) and the plan's prediction for this batch. */
  peakBytes: number;
  predictedPeakBytes: number;
}

const dir = Deno.args[0];
if (dir === undefined) {
  console.error("usage: deno run --unstable-webgpu -A test/deno/webgpu_check.ts JOB_DIR");
  Deno.exit(2);
}
const job = JSON.parse(await Deno.readTextFile(`${dir}/job.json`)) as Job;
const report: {
  backend?: string;
  models: ModelReport[];
  merge?: { plain: number; sources: number };
  windowMerge?: { x: number[]; restoreRows: number[]; restored: number[] };
  /** What loadParallel() says under Deno (it must refuse, not half-work). */
  parallel?: string;
  error?: string;
} = { models: [] };

async function values(outputs: Record<string, tf.Tensor>, names: string[]): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const name of names) out[name] = Array.from(await outputs[name]!.data());
  tf.dispose(Object.values(outputs));
  return out;
}

const tensorOf = (i: InputData) => tf.tensor(i.data, i.shape, i.dtype);

try {
  const info = await selectBackend("webgpu");
  tf.env().set("WEBGPU_CPU_FORWARD", false); // registered by the backend's import
  report.backend = `${info.name} (${info.reason})`;
  for (const m of job.models) {
    const weights = await Deno.readFile(m.weights);
    const inputs = Object.fromEntries(m.inputs.map((i) => [i.name, tensorOf(i)]));
    const module = await Deno.readFile(`${m.dir}/model.mjs`);
    const fromBytes = await load({ module, weights, source: m.name }, { backend: "webgpu" });
    const outputs = await values(await fromBytes.runAsync(inputs), m.outputs);
    const folder = new URL(`file://${m.dir}/`);
    const fromUrl = await load(folder, { weights: new URL(`file://${m.weights}`), backend: "webgpu" });
    const urlOutputs = await values(await fromUrl.runAsync(inputs), m.outputs);
    fromUrl.dispose();
    const bytesBefore = tf.memory().numBytes;
    const profile = await tf.profile(async () => {
      const out = await fromBytes.runAsync(inputs);
      await out[m.outputs[0]!]!.data();
      tf.dispose(Object.values(out));
    });
    const peakBytes = profile.peakBytes - bytesBefore;
    const predictedPeakBytes = fromBytes.predictedPeakBytes(m.inputs[0]!.shape[0]!);
    const tensorsBefore = tf.memory().numTensors;
    const t0 = performance.now();
    for (let i = 0; i < m.leakRuns; i++) {
      const out = await fromBytes.runAsync(inputs);
      await out[m.outputs[0]!]!.data();
      tf.dispose(Object.values(out));
    }
    const msPerRun = (performance.now() - t0) / Math.max(1, m.leakRuns);
    const tensorsAfter = tf.memory().numTensors;
    fromBytes.dispose();
    tf.dispose(Object.values(inputs));
    report.models.push({ name: m.name, outputs, urlOutputs, tensorsBefore, tensorsAfter, msPerRun, peakBytes, predictedPeakBytes });
    console.error(`webgpu: ${m.name}: ${m.leakRuns} runs, ${msPerRun.toFixed(1)} ms each, tensors ${tensorsBefore} → ${tensorsAfter}, peak ${peakBytes} B (plan ${predictedPeakBytes} B)`);
  }
  const t0 = performance.now();
  report.merge = { plain: await checkAgainstReference(false), sources: await checkAgainstReference(true) };
  console.error(`webgpu: turboMerge reference cases ${report.merge.plain} + ${report.merge.sources} agree (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  const w = job.windowMerge;
  const [x, metric, semantic] = [tensorOf(w.inputs.x), tensorOf(w.inputs.metric), tensorOf(w.inputs.semantic)];
  const merged = windowMerge({ x: x as tf.Tensor3D, metric: metric as tf.Tensor3D, semantic: semantic as tf.Tensor2D }, w.options);
  const restored = restore(merged.x, merged.restoreRows, x.shape[1]!);
  report.windowMerge = { x: Array.from(await merged.x.data()), restoreRows: Array.from(await merged.restoreRows.data()), restored: Array.from(await restored.data()) };
  tf.dispose([x, metric, semantic, merged.x, merged.restoreRows, restored]);
  report.parallel = await loadParallel(job.models[0]!.dir, { workers: 2, weights: { random: 1 } }).then(
    () => "loaded",
    (e: Error) => `${e.name}: ${e.message}`,
  );
} catch (e) {
  report.error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  console.error(`webgpu: ${report.error}`);
}
await Deno.writeTextFile(`${dir}/webgpu.json`, JSON.stringify(report));
