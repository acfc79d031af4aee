/// <reference lib="deno.ns" />
/**
 * The WebGPU benchmark, run by Deno (Node has no WebGPU):
 *
 *   npx deno run --unstable-webgpu -A bench/webgpu.ts [--models s16,b16] [--batches 1,8,64,256]
 *       [--upsilon 8,13,16] [--reps 5] [--json FILE] [--write] [--allow-software]
 *
 * For each model and batch: the compiled program unmerged and with Turbo at
 * each Υ (r per block, S1, the defaults of spec/turbo.md) on tfjs's webgpu
 * backend with every kernel in WGSL (WEBGPU_CPU_FORWARD off), one shared
 * upload of seeded random weights, one warm-up run each, then the variants
 * interleaved with the order rotated every repetition. A run is
 * `runAsync()` + `await logits.data()`: the read-back is part of what a user
 * waits for. Reported per row: median and min–max ms, images/s, the speed-up
 * against Υ = 0 beside the plan's FLOPs ratio, GFLOP/s, the adapter and the
 * load average.
 *
 * `--write` puts the table into BENCHMARKS.md between the webgpu markers (below
 * the notes marker, so `npm run bench` keeps it), replacing the previous one.
 *
 * On a software adapter (Mesa's llvmpipe, what WebGPU falls back to without a
 * GPU) it refuses unless --allow-software is given, and then labels the table
 * a correctness run: llvmpipe's speed says nothing about a GPU's.
 */

import * as tf from "@tensorflow/tfjs-core";
import { compile } from "../compiler/compile.ts";
import type { ModelSpec } from "../compiler/dsl/trace.ts";
import { linearAt } from "../compiler/contract/plan.ts";
import { b16, s16, tiny } from "../examples/vit/vit.ts";
import { load, randomWeights, selectBackend, type Model } from "../runtime/web.ts";

const specs: Record<string, { spec: ModelSpec }> = { tiny: { spec: tiny }, s16: { spec: s16 }, b16: { spec: b16 } };

function option(name: string, fallback: string): string {
  const at = Deno.args.indexOf(`--${name}`);
  return at === -1 ? fallback : (Deno.args[at + 1] ?? fallback);
}
function list(name: string, fallback: string): number[] {
  const raw = option(name, fallback);
  const xs = raw.split(",").map(Number);
  if (xs.some((x) => !Number.isInteger(x) || x < 0)) fail(`--${name} "${raw}" must be a comma-separated list of non-negative integers`);
  return xs;
}
function fail(message: string): never {
  console.error(`bench/webgpu.ts: ${message}`);
  Deno.exit(2);
}

const models = option("models", "s16,b16").split(",");
for (const m of models) if (specs[m] === undefined) fail(`unknown model "${m}"; expected ${Object.keys(specs).join(", ")}`);
const batches = list("batches", "1,8,64,256");
const upsilons = [0, ...list("upsilon", "8,13,16").filter((r) => r > 0)];
const reps = list("reps", "5")[0]!;
const allowSoftware = Deno.args.includes("--allow-software");
const jsonPath = option("json", "");
const write = Deno.args.includes("--write");

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const log = (msg: string) => console.error(msg);

let info;
try {
  info = await selectBackend("webgpu");
} catch (e) {
  fail(e instanceof Error ? e.message : String(e));
}
tf.env().set("WEBGPU_CPU_FORWARD", false);
const software = /fallback|llvmpipe|swiftshader|lavapipe/i.test(info.reason);
if (software && !allowSoftware) {
  fail(`the only WebGPU adapter is a software one (${info.reason}); its speed says nothing about a GPU. Pass --allow-software for a correctness run`);
}

interface Row {
  model: string;
  batch: number;
  upsilon: number;
  timesMs: number[];
  medianMs: number;
  imagesPerS: number;
  gflops: number;
  flopsRatio: number;
  speedup: number;
  tokensOut: number;
}
const rows: Row[] = [];
const load0 = Deno.loadavg();

for (const name of models) {
  const { spec } = specs[name]!;
  const variants = upsilons.map((r) => ({ r, compiled: compile(spec, r === 0 ? {} : { turbo: { r } }) }));
  const plan0 = variants[0]!.compiled.plan;
  const host = randomWeights(plan0.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), 1);
  const weights = new Map([...host].map(([k, v]) => [k, tf.tensor(v.data, v.shape, "float32")]));
  const loaded: { r: number; model: Model; flops: number; ratio: number; tokensOut: number; times: number[] }[] = [];
  for (const v of variants) {
    const model = await load({ module: v.compiled.module.js, weights, source: `${name} Υ=${v.r}` }, { backend: "webgpu" });
    const encoder = v.compiled.plan.blocks.filter((b) => b.name.startsWith("layer."));
    loaded.push({ r: v.r, model, flops: 0, ratio: v.compiled.plan.turbo?.flopsRatio ?? 1, tokensOut: encoder[encoder.length - 1]?.tokensOut ?? 0, times: [] });
  }
  for (const batch of batches) {
    const input = plan0.inputs[0]!;
    const x = tf.randomUniform(input.shape.map((d) => (typeof d === "number" ? d : batch)), 0, 1, "float32", 7);
    const once = async (m: Model) => {
      const out = await m.runAsync({ [input.name]: x });
      await out[plan0.outputs[0]!.name]!.data();
      tf.dispose(Object.values(out));
    };
    for (const l of loaded) {
      l.times = [];
      l.flops = linearAt(variants.find((v) => v.r === l.r)!.compiled.plan.flops, batch);
      try {
        await once(l.model); // warm-up: shader compilation, buffer pools
      } catch (e) {
        fail(`${name} batch ${batch} Υ=${l.r}: ${e instanceof Error ? e.message : String(e)} (too large for this adapter? lower --batches)`);
      }
    }
    for (let rep = 0; rep < reps; rep++) {
      for (let k = 0; k < loaded.length; k++) {
        const l = loaded[(k + rep) % loaded.length]!;
        const t0 = performance.now();
        await once(l.model);
        l.times.push(performance.now() - t0);
      }
    }
    x.dispose();
    const base = median(loaded[0]!.times);
    for (const l of loaded) {
      const med = median(l.times);
      rows.push({ model: name, batch, upsilon: l.r, timesMs: l.times, medianMs: med, imagesPerS: (1000 * batch) / med, gflops: l.flops / med / 1e6, flopsRatio: l.ratio, speedup: base / med, tokensOut: l.tokensOut });
      log(`${name} batch ${batch} Υ=${l.r}: ${med.toFixed(1)} ms (${Math.min(...l.times).toFixed(1)}–${Math.max(...l.times).toFixed(1)}), ${(base / med).toFixed(2)}× at FLOPs ratio ${l.ratio.toFixed(2)}×`);
    }
  }
  for (const l of loaded) l.model.dispose();
  tf.dispose([...weights.values()]);
}

const load1 = Deno.loadavg();
const lines = [
  `WebGPU (tfjs-backend-webgpu 4.22, every kernel in WGSL) on ${info.reason.replace(/^requested; /, "")}; Deno ${Deno.version.deno}; ${reps} repetitions after one warm-up, interleaved, order rotated; load average ${load0[0].toFixed(2)} before, ${load1[0].toFixed(2)} after.`,
  ...(software ? ["", "**A software adapter: a correctness run, not a speed measurement.**"] : []),
  "",
  "| model | batch | Υ | tokens out | median ms | min–max | images/s | speed-up vs Υ = 0 | FLOPs ratio | GFLOP/s |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ...rows.map((r) =>
    `| ${r.model} | ${r.batch} | ${r.upsilon} | ${r.tokensOut} | ${r.medianMs.toFixed(1)} | ${Math.min(...r.timesMs).toFixed(1)}–${Math.max(...r.timesMs).toFixed(1)} | ${r.imagesPerS.toFixed(1)} | ${r.speedup.toFixed(2)}× | ${r.flopsRatio.toFixed(2)}× | ${r.gflops.toFixed(1)} |`
  ),
];
console.log(lines.join("\n"));
if (write) {
  const path = new URL("../BENCHMARKS.md", import.meta.url);
  const [start, end] = ["<!-- webgpu:start (written by bench/webgpu.ts; do not edit by hand) -->", "<!-- webgpu:end -->"];
  const block = [start, "", `\`npx deno run --unstable-webgpu -A bench/webgpu.ts ${Deno.args.join(" ")}\` on ${new Date().toISOString().slice(0, 10)}:`, "", ...lines, "", end].join("\n");
  const text = await Deno.readTextFile(path);
  const at = text.indexOf(start);
  const next = at === -1 ? `${text.trimEnd()}\n\n${block}\n` : text.slice(0, at) + block + text.slice(text.indexOf(end, at) + end.length);
  await Deno.writeTextFile(path, next);
  log("wrote the WebGPU table into BENCHMARKS.md");
}
if (jsonPath !== "") {
  await Deno.writeTextFile(jsonPath, JSON.stringify({ command: `npx deno run --unstable-webgpu -A bench/webgpu.ts ${Deno.args.join(" ")}`, adapter: info.reason, software, deno: Deno.version.deno, loadavg: [load0, load1], rows }, null, 2));
}
