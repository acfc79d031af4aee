/**
 * The compiled program on tfjs's WebGPU backend under Deno, against wasm in
 * Node. Compiles the example ViT (tiny) unmerged and with Turbo (sources
 * tracked), runs it here on wasm, then runs test/deno/webgpu_check.ts under
 * `deno run --unstable-webgpu` (the `deno` dev dependency), which loads the
 * same folders from bytes and from a file: URL, runs them, counts tensors over
 * 100 runs and runs turboMerge's conformance cases on webgpu.
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
import { tiny } from "../../examples/vit/vit.ts";
import { load, selectBackend } from "../../runtime/mod.ts";
import { encodeSafetensors, randomWeights } from "../../runtime/weights/mod.ts";
import { pixels, relativeError, tempDir } from "../_helpers.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const deno = join(root, "node_modules", ".bin", "deno");
const LEAK_RUNS = 100;

interface Report {
  backend?: string;
  error?: string;
  merge?: { plain: number; sources: number };
  models: { name: string; outputs: Record<string, number[]>; urlOutputs: Record<string, number[]>; tensorsBefore: number; tensorsAfter: number; msPerRun: number }[];
}

/** Where the Vulkan loader looks for drivers; llvmpipe's is lvp_icd.*.json. */
function vulkanDrivers(): string[] {
  const dirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"];
  return dirs.flatMap((d) => (existsSync(d) ? readdirSync(d).map((f) => join(d, f)) : []));
}

const job = tempDir("turbograph-webgpu-");
const models = [
  { name: "unmerged", turbo: undefined },
  { name: "turbo r=3 (S1), sources", turbo: { r: 3, trackSources: true } },
  { name: "tome r=4:3, sources", turbo: { r: [4, 3], alpha: 0, trackSources: true } },
] as const;
const compiled = models.map((m, i) => {
  const c = compile(tiny, { verify: true, ...(m.turbo ? { turbo: m.turbo } : {}) });
  const dir = join(job, `model-${i}`);
  mkdirSync(dir);
  writeFileSync(join(dir, "model.mjs"), c.module.js);
  return { ...m, dir, plan: c.plan };
});
const weights = randomWeights(compiled[0]!.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), 5);
writeFileSync(join(job, "weights.safetensors"), encodeSafetensors(weights));

test("the example ViT on webgpu (Deno) agrees with wasm: logits within 1e-4, identical merges, no leak over 100 runs; merge conformance on webgpu", async () => {
  const drivers = vulkanDrivers();
  assert.ok(existsSync(deno), `${deno} is missing: run npm install (deno is a dev dependency)`);

  await selectBackend("wasm");
  const x = pixels([2, 3, 32, 32], 17);
  const input = { name: "pixels", shape: x.shape, data: Array.from(await x.data()) };
  const expected: Record<string, number[]>[] = [];
  for (const m of compiled) {
    const model = await load(m.dir, { weights, backend: "wasm" });
    const out = model.run({ pixels: x });
    expected.push(Object.fromEntries(Object.entries(out).map(([k, t]) => [k, Array.from(t.dataSync())])));
    tf.dispose(Object.values(out));
    model.dispose();
  }
  x.dispose();
  writeFileSync(join(job, "job.json"), JSON.stringify({
    models: compiled.map((m) => ({ name: m.name, dir: m.dir, outputs: m.plan.outputs.map((o) => o.name) })),
    weights: join(job, "weights.safetensors"),
    input,
    leakRuns: LEAK_RUNS,
  }));

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
        if (key === "logits") {
          const err = relativeError(g, w);
          assert.ok(err <= 1e-4, `${m.name} (${how}): logits relative error ${err} on webgpu against wasm`);
        } else {
          assert.equal(g, w, `${m.name} (${how}): ${key} differs between webgpu and wasm`);
        }
      }
    }
    if (m.turbo !== undefined) {
      const merged = m.plan.blocks.reduce((a, b) => a + b.merged, 0);
      assert.ok(merged > 0, `${m.name} merges something`);
      assert.is(got.outputs.sources!.length, 2 * (17 - merged) * 17, `${m.name}: sources: one row of 17 original tokens per kept token`);
    }
    assert.is(got.tensorsAfter, got.tensorsBefore, `${m.name}: tensors leaked over ${LEAK_RUNS} runs`);
  });
  assert.ok(report.merge !== undefined && report.merge.plain > 0 && report.merge.plain === report.merge.sources, `merge cases: ${JSON.stringify(report.merge)}`);
});

test.run();
