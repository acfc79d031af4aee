/**
 * The compiled program on tfjs's WebGPU backend under Deno, against wasm in
 * Node. Compiles the example ViT (tiny) unmerged, with Turbo and with ToMe
 * (sources tracked), and the VQA model (token ids through a gather, the text
 * class token as semantic value), runs them here on wasm, then runs test/deno/webgpu_check.ts under
 * `deno run --unstable-webgpu` (the `deno` dev dependency), which loads the
 * same folders from bytes and from a file: URL, runs them, counts tensors over
 * 100 runs, runs turboMerge's conformance cases on webgpu, and runs
 * generation mode's windowMerge and restore on the inputs given to wasm here.
 *
 * Without a GPU, WebGPU runs on Mesa's software Vulkan (llvmpipe): a real
 * execution of the WGSL kernels, slowly. Where neither a GPU driver nor
 * llvmpipe is installed the test fails with the command that installs it
 * (`apt-get install mesa-vulkan-drivers`); it installs nothing itself.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "../../compiler/compile.ts";
import type { ModelSpec } from "../../compiler/dsl/trace.ts";
import type { TurboOptions } from "../../compiler/passes/insert_turbo.ts";
import { tiny } from "../../examples/vit/vit.ts";
import { QUESTION_LENGTH, vqaConfig, vqaDims, vqaParams } from "../../examples/vqa/config.ts";
import { loadMnist, makeBatch, PAIR_HEIGHT, PAIR_WIDTH, testItems } from "../../examples/vqa/data.ts";
import vqaSpec from "../../examples/vqa/vqa.ts";
import { restore, windowMerge } from "../../runtime/kernels/window_merge.ts";
import { load, selectBackend } from "../../runtime/mod.ts";
import { encodeSafetensors, randomWeights, type WeightTensor } from "../../runtime/weights/mod.ts";
import { pixels as pixels4, relativeError, tempDir } from "../_helpers.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const deno = join(root, "node_modules", ".bin", "deno");
const LEAK_RUNS = 100;

interface Report {
  backend?: string;
  error?: string;
  merge?: { plain: number; sources: number };
  windowMerge?: { x: number[]; restoreRows: number[]; restored: number[] };
  parallel?: string;
  models: { name: string; outputs: Record<string, number[]>; urlOutputs: Record<string, number[]>; tensorsBefore: number; tensorsAfter: number; msPerRun: number; peakBytes: number; predictedPeakBytes: number }[];
}

/** Where the Vulkan loader looks for drivers; llvmpipe's is lvp_icd.*.json. */
function vulkanDrivers(): string[] {
  const dirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"];
  return dirs.flatMap((d) => (existsSync(d) ? readdirSync(d).map((f) => join(d, f)) : []));
}

const job = tempDir("turbograph-webgpu-");

interface InputData {
  name: string;
  shape: number[];
  dtype: "float32" | "int32";
  data: number[];
}

async function inputData(name: string, t: tf.Tensor): Promise<InputData> {
  return { name, shape: t.shape, dtype: t.dtype as "float32" | "int32", data: Array.from(await t.data()) };
}

function writeModel(index: number, spec: ModelSpec, turbo: TurboOptions | undefined, weights: ReadonlyMap<string, WeightTensor> | undefined) {
  const c = compile(spec, { verify: true, ...(turbo ? { turbo } : {}) });
  const dir = join(job, `model-${index}`);
  mkdirSync(dir);
  writeFileSync(join(dir, "model.mjs"), c.module.js);
  const w = weights ?? randomWeights(c.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), 5);
  writeFileSync(join(dir, "weights.safetensors"), encodeSafetensors(w));
  return { dir, plan: c.plan, weights: w, weightsPath: join(dir, "weights.safetensors") };
}

const vitCases = [
  { name: "ViT unmerged", turbo: undefined },
  { name: "ViT Turbo r=3 (S1), sources", turbo: { r: 3, trackSources: true } },
  { name: "ViT ToMe r=4:3, sources", turbo: { r: [4, 3], alpha: 0, trackSources: true } },
] as const;
const vqaWeights = randomWeights(vqaParams(vqaConfig), 11);
const compiled = [
  ...vitCases.map((m, i) => ({ ...m, ...writeModel(i, tiny, m.turbo as TurboOptions | undefined, undefined), tokens: 17 })),
  { name: "VQA (token ids, gather) Turbo text cls r=12, sources", turbo: { r: 12, trackSources: true }, ...writeModel(3, vqaSpec, { r: 12, trackSources: true }, vqaWeights), tokens: vqaDims(vqaConfig).tokens },
];

test("the example ViT and the VQA model on webgpu (Deno) agree with wasm: logits within 1e-4, identical merges, the plan's peak memory, no leak over 100 runs; turboMerge and windowMerge on webgpu", async () => {
  const drivers = vulkanDrivers();
  assert.ok(existsSync(deno), `${deno} is missing: run npm install (deno is a dev dependency)`);
  await selectBackend("wasm");

  const pixels = pixels4([2, 3, 32, 32], 17);
  const mnist = loadMnist().test;
  const pairs = makeBatch(mnist, testItems(mnist, 1));
  const question = tf.tensor2d(pairs.question, [pairs.count, QUESTION_LENGTH], "int32");
  const pairPixels = tf.tensor4d(pairs.pixels, [pairs.count, 1, PAIR_HEIGHT, PAIR_WIDTH]);
  const inputsOf = (i: number): Record<string, tf.Tensor> => (i < vitCases.length ? { pixels } : { question, pixels: pairPixels });
  const expected: Record<string, number[]>[] = [];
  const wasmPeaks: number[] = [];
  const models: { name: string; dir: string; weights: string; outputs: string[]; inputs: InputData[]; leakRuns: number }[] = [];
  for (const [i, m] of compiled.entries()) {
    const model = await load(m.dir, { weights: m.weights, backend: "wasm" });
    const out = model.run(inputsOf(i));
    expected.push(Object.fromEntries(Object.entries(out).map(([k, t]) => [k, Array.from(t.dataSync())])));
    tf.dispose(Object.values(out));
    const bytesBefore = tf.memory().numBytes;
    const profile = await tf.profile(() => {
      tf.dispose(Object.values(model.run(inputsOf(i))));
    });
    wasmPeaks.push(profile.peakBytes - bytesBefore);
    model.dispose();
    models.push({
      name: m.name, dir: m.dir, weights: m.weightsPath, outputs: m.plan.outputs.map((o) => o.name),
      inputs: await Promise.all(Object.entries(inputsOf(i)).map(([k, t]) => inputData(k, t))),
      leakRuns: i < vitCases.length ? LEAK_RUNS : 10, // the VQA model: 0.4 s a run on llvmpipe
    });
  }

  // Generation mode's merge and restore on wasm, where window_merge.test.ts holds it to the reference.
  const wx = tf.randomUniform([2, 196, 8], -1, 1, "float32", 1) as tf.Tensor3D;
  const wmetric = tf.randomUniform([2, 196, 6], -1, 1, "float32", 2) as tf.Tensor3D;
  const wsemantic = tf.randomUniform([2, 196], 0, 0.01, "float32", 3) as tf.Tensor2D;
  const wOptions = { grid: [14, 14] as [number, number], seed: 1, r: 98, alpha: 5, scale: 30 };
  const wm = windowMerge({ x: wx, metric: wmetric, semantic: wsemantic }, wOptions);
  const wRestored = restore(wm.x, wm.restoreRows, 196);
  const wantWindow = { x: Array.from(wm.x.dataSync()), restoreRows: Array.from(wm.restoreRows.dataSync()), restored: Array.from(wRestored.dataSync()) };

  writeFileSync(join(job, "job.json"), JSON.stringify({
    models,
    windowMerge: { inputs: { x: await inputData("x", wx), metric: await inputData("metric", wmetric), semantic: await inputData("semantic", wsemantic) }, options: wOptions },
  }));
  tf.dispose([pixels, question, pairPixels, wx, wmetric, wsemantic, wm.x, wm.restoreRows, wRestored]);

  const run = spawnSync(deno, ["run", "--unstable-webgpu", "-A", join(root, "test/deno/webgpu_check.ts"), job], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? "/tmp", NO_COLOR: "1" },
    timeout: 300_000,
  });
  process.stderr.write(run.stderr);
  assert.is(run.status, 0, `deno exited with ${run.status} (${run.error?.message ?? run.signal ?? ""})`);
  const report = JSON.parse(readFileSync(join(job, "webgpu.json"), "utf8")) as Report;
  if (report.error !== undefined && /adapter|navigator\.gpu/.test(report.error)) {
    assert.unreachable(
      `WebGPU has no adapter on this machine (${report.error}). Vulkan drivers found: ${drivers.length === 0 ? "none" : drivers.join(", ")}. ` +
        "Without a GPU, install Mesa's software Vulkan (llvmpipe): apt-get install mesa-vulkan-drivers",
    );
  }
  assert.is(report.error, undefined, `the Deno side failed: ${report.error}`);
  assert.match(report.backend ?? "", /^webgpu/);

  assert.is(report.models.length, compiled.length);
  report.models.forEach((got, i) => {
    const want = expected[i]!;
    const m = compiled[i]!;
    assert.equal(Object.keys(got.outputs).sort(), Object.keys(want).sort(), `${m.name}: outputs`);
    for (const [key, w] of Object.entries(want)) {
      for (const [how, outputs] of [["bytes", got.outputs], ["file: URL", got.urlOutputs]] as const) {
        const g = outputs[key]!;
        if (key === "sources" || key.startsWith("size.")) {
          assert.equal(g, w, `${m.name} (${how}): ${key} differs between webgpu and wasm`);
        } else {
          const err = relativeError(g, w);
          assert.ok(err <= 1e-4, `${m.name} (${how}): ${key} relative error ${err} on webgpu against wasm`);
        }
      }
    }
    if (m.turbo !== undefined) {
      const merged = m.plan.blocks.reduce((a, b) => a + b.merged, 0);
      assert.ok(merged > 0, `${m.name} merges something`);
      assert.is(got.outputs.sources!.length, models[i]!.inputs[0]!.shape[0]! * (m.tokens - merged) * m.tokens, `${m.name}: sources: one row of the original tokens per kept token`);
    }
    // The same tensors live at once as on wasm. Unmerged, that is the plan's peak. With a
    // merge, the merge's own temporaries come on top on every backend (the plan counts
    // its inputs and outputs only; spec/pipeline.md, "Memory plan").
    assert.is(got.peakBytes, wasmPeaks[i], `${m.name}: a run's peak is ${got.peakBytes} B on webgpu, ${wasmPeaks[i]} B on wasm`);
    if (m.turbo === undefined) assert.ok(Math.abs(got.peakBytes - got.predictedPeakBytes) <= 0.1 * got.predictedPeakBytes, `${m.name}: a run's peak is ${got.peakBytes} B on webgpu, the plan says ${got.predictedPeakBytes} B`);
    assert.is(got.tensorsAfter, got.tensorsBefore, `${m.name}: tensors leaked over ${models[i]!.leakRuns} runs`);
  });
  assert.ok(report.merge !== undefined && report.merge.plain > 0 && report.merge.plain === report.merge.sources, `merge cases: ${JSON.stringify(report.merge)}`);
  const gotWindow = report.windowMerge!;
  assert.equal(gotWindow.restoreRows, wantWindow.restoreRows, "windowMerge: restore rows on webgpu");
  assert.ok(relativeError(gotWindow.x, wantWindow.x) <= 1e-5, "windowMerge: merged tokens on webgpu");
  assert.ok(relativeError(gotWindow.restored, wantWindow.restored) <= 1e-5, "restore on webgpu");
  assert.match(report.parallel ?? "", /^LoadError: loadParallel\(\): worker-thread parallelism is Node-only/, "loadParallel under Deno");
});

test.run();
