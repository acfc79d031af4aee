/**
 * The benchmark behind BENCHMARKS.md: `npm run bench` (options after `--`).
 *
 * One process, random weights, the default backend (wasm here). For each
 * model, every variant is warmed up, then the variants run interleaved with
 * the order rotated every repetition (A B C, B C A, C A B, …) so slow drifts
 * of the machine hit them alike; medians and the min–max spread are reported. Variants:
 *   - eager: the hand-written tfjs ViT (examples/vit/eager.ts) at its best: the
 *     SIMD batched matmul and GELU that turbograph installs switched on for it too,
 *   - compiled Υ = 0, and compiled with Turbo at each Υ (r per block),
 *   - onnxruntime (bench/onnx.ts), in the same rotation: turbograph's own ONNX
 *     graph of each compiled program at 1 and 2 intra-op threads, and PyTorch's
 *     torch.onnx.export of the same weights (when a python with torch is found;
 *     otherwise the rows are left out with the reason), logits checked first.
 * Merge share: bench/turbo_share.ts. For S/16 also compiled Υ = 0 on 2 worker threads, so the eager comparison
 * covers both cores. Then: a kernel-by-kernel profile of ViT-S/16 (compiled Υ = 0 and eager),
 * the SIMD batched matmul against the stock kernel on the attention shapes,
 * and 1 vs 2 worker threads.
 *
 *   npm run bench -- [--batch 8] [--reps 5] [--b16-batch 2] [--workers-batch 16] [--quick]
 */

import * as tf from "@tensorflow/tfjs-core";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import { compile, type Compiled } from "../compiler/compile.ts";
import type { ModelSpec } from "../compiler/dsl/trace.ts";
import { vitConfigs, type VitConfig } from "../examples/vit/config.ts";
import { eagerVit } from "../examples/vit/eager.ts";
import { b16, s16 } from "../examples/vit/vit.ts";
import { setSimdMatmulEnabled } from "../runtime/kernels/simd_matmul.ts";
import { gelu } from "../runtime/kernels/gelu.ts";
import { loadModule, loadParallel, registerSimdMatmul, selectBackend, type Model } from "../runtime/mod.ts";
import { linearAt } from "../compiler/contract/plan.ts";
import { randomWeights } from "../runtime/weights/mod.ts";
import { profileTable, profileVit } from "./profile.ts";
import { loadTimed } from "./turbo_share.ts";
import { exportReference, profileShare, referenceRow, relativeError, turbographRow, type OrtShare } from "./onnx.ts";
import type * as Ort from "onnxruntime-node";

const { values: args } = parseArgs({
  options: {
    batch: { type: "string", default: "8" },
    reps: { type: "string", default: "5" },
    "b16-batch": { type: "string", default: "2" },
    "workers-batch": { type: "string", default: "16" },
    quick: { type: "boolean", default: false },
    out: { type: "string", default: "." },
  },
});
const reps = args.quick ? 2 : Number(args.reps);
const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const log = (msg: string) => process.stderr.write(`${msg}\n`);

interface Variant {
  name: string;
  /** The engine that runs it: tfjs on wasm, or onnxruntime (CPU execution provider). */
  engine: "wasm" | "onnxruntime";
  /** Threads it computes on: intra-op threads for onnxruntime, worker threads for wasm. */
  threads: number;
  /** Υ of a compiled variant; null for the eager tfjs model and the reference ONNX export. */
  r: number | null;
  /** Worker threads (loadParallel) for a compiled variant; undefined: this thread. */
  workers?: number;
  run: () => void | Promise<void>;
  times: number[];
  flops: number;
  flopsRatio: number;
  /** Share of Turbo's steps in the step time of one instrumented run, one entry per repetition. */
  mergeShare: number[];
  /** One instrumented run; returns Turbo's share of its step time (bench/turbo_share.ts). */
  share?: () => number;
  disposeTimed?: () => void;
  peak?: { measured: number; predicted: number | null };
  /** onnxruntime's profile of this variant: Turbo's share and what it could not attribute. */
  ortShare?: OrtShare;
}

/** `weights`: the model's tensors, shared by every variant (a load borrows tf.Tensor weights, it does not copy them). */
async function compiledVariant(spec: ModelSpec, r: number, batch: number, x: tf.Tensor, weights: ReadonlyMap<string, tf.Tensor>): Promise<{ v: Variant; model: Model; dir: string; compiled: Compiled }> {
  const c = compile(spec, r === 0 ? {} : { turbo: { r } });
  const dir = mkdtempSync(join(tmpdir(), "turbograph-bench-"));
  writeFileSync(join(dir, "model.mjs"), c.module.js);
  const module = await import(pathToFileURL(join(dir, "model.mjs")).href);
  const model = await loadModule(module, { weights, backend: "wasm" });
  // A second copy with every step timed, run outside the timed repetitions: the merge share.
  const timed = r === 0 ? undefined : await loadTimed(c, module, { weights, backend: "wasm" });
  const v: Variant = {
    name: r === 0 ? "compiled, Υ = 0" : `compiled, Υ = ${r}`,
    engine: "wasm",
    threads: 1,
    r,
    times: [],
    mergeShare: [],
    flops: linearAt(c.plan.flops, batch),
    flopsRatio: c.plan.turbo?.flopsRatio ?? 1,
    run: () => {
      const out = model.run({ pixels: x });
      out.logits!.dataSync();
      tf.dispose(Object.values(out));
    },
    share: timed === undefined ? undefined : () => {
      tf.dispose(Object.values(timed.model.run({ pixels: x })));
      const all = timed.stepMs.reduce((a, b) => a + b, 0);
      const turbo = timed.turboSteps.reduce((a, i) => a + timed.stepMs[i]!, 0);
      return turbo / all;
    },
    disposeTimed: () => timed?.model.dispose(),
  };
  return { v, model, dir, compiled: c };
}

/** The Υ = 0 program run by `workers` worker threads (random weights, seed 7, as in this process). */
async function parallelVariant(dir: string, workers: number, flops: number, x: tf.Tensor) {
  const model = await loadParallel(dir, { weights: { random: 7 }, backend: "wasm", workers });
  const v: Variant = {
    name: `compiled, Υ = 0, ${workers} workers`,
    engine: "wasm",
    threads: workers,
    r: 0,
    workers,
    times: [],
    mergeShare: [],
    flops,
    flopsRatio: 1,
    run: async () => {
      tf.dispose(Object.values(await model.run({ pixels: x })));
    },
  };
  return { v, model };
}

async function peakOf(f: () => tf.Tensor): Promise<number> {
  const before = tf.memory().numBytes;
  let out: tf.Tensor | undefined;
  const p = await tf.profile(() => (out = f()));
  out?.dispose();
  return p.peakBytes - before;
}

/** What the onnxruntime rows of one model run: the reference export's threads, and turbograph's graph at (Υ, threads). */
interface OrtPlan {
  referenceThreads: number[];
  compiled: { r: number; threads: number }[];
}

/** Why the onnxruntime rows were left out, when they were (no onnxruntime-node, no PyTorch for the reference). */
const skipped: string[] = [];

let ortModule: typeof Ort | null | undefined;
async function onnxruntime(): Promise<typeof Ort | null> {
  if (ortModule === undefined) {
    try {
      ortModule = (await import("onnxruntime-node")) as typeof Ort;
    } catch (e) {
      ortModule = null;
      skipped.push(`onnxruntime rows: onnxruntime-node does not load (${(e as Error).message.split("\n")[0]}); npm install onnxruntime-node`);
    }
  }
  return ortModule;
}

/**
 * The onnxruntime variants: turbograph's own ONNX graph of each compiled
 * program (bench/onnx.ts) and the reference export of the same weights. Before
 * anything is timed, their logits are checked: each turbograph graph against
 * the wasm run of the same program, the reference against turbograph's Υ = 0
 * graph; a disagreement stops the benchmark (a fast wrong graph is no result).
 */
async function ortVariants(
  name: string, config: VitConfig, batch: number, plan: OrtPlan, x: tf.Tensor,
  weights: ReadonlyMap<string, { data: Float32Array; shape: number[] }>, params: ReadonlyMap<string, tf.Tensor>,
  compiled: readonly { v: Variant; model: Model; compiled: Compiled }[],
): Promise<{ variants: Variant[]; agreement: { variant: string; against: string; relError: number }[]; dispose: () => Promise<void> }> {
  const ort = await onnxruntime();
  if (ort === null) return { variants: [], agreement: [], dispose: async () => {} };
  const variants: Variant[] = [];
  const rows: { dispose(): Promise<void> }[] = [];
  const agreement: { variant: string; against: string; relError: number }[] = [];
  const check = (variant: string, against: string, relError: number) => {
    agreement.push({ variant, against, relError });
    if (!(relError <= 1e-3)) throw new Error(`${name}: ${variant} disagrees with ${against}: largest logit difference ${relError.toExponential(2)} of the largest logit`);
  };
  const compiledAt = (r: number) => compiled.find((c) => c.v.r === r)!;
  const tgLogits = new Map<number, tf.Tensor>();
  for (const { r, threads } of plan.compiled) {
    const c = compiledAt(r);
    const row = await turbographRow(c.compiled, threads, x, params);
    rows.push(row);
    const label = `onnxruntime, Υ = ${r}, ${threads} thread${threads > 1 ? "s" : ""}`;
    const got = await row.logits();
    const want = c.model.run({ pixels: x }).logits!;
    check(label, `compiled Υ = ${r} on wasm`, await relativeError(got, want));
    tf.dispose(want);
    if (tgLogits.has(r)) got.dispose();
    else tgLogits.set(r, got);
    const v: Variant = {
      name: label, engine: "onnxruntime", threads, r, times: [], mergeShare: [], flops: c.v.flops, flopsRatio: c.v.flopsRatio, run: row.run,
    };
    if (r !== 0 && threads === 1) v.ortShare = await profileShare(c.compiled, row.bytes, threads, x, params, Math.max(2, Math.min(reps, 3)));
    variants.push(v);
  }
  if (plan.referenceThreads.length > 0) {
    log(`${name}: exporting the reference ONNX graph with PyTorch`);
    const ref = exportReference(ort, config, weights);
    if ("skipped" in ref) skipped.push(`${name} reference rows: ${ref.skipped}`);
    else {
      for (const threads of plan.referenceThreads) {
        const row = await referenceRow(ref, threads, x);
        rows.push(row);
        const label = `onnxruntime, PyTorch ${ref.torch} export, ${threads} thread${threads > 1 ? "s" : ""}`;
        const got = await row.logits();
        const base = tgLogits.get(0);
        if (base !== undefined) check(label, "turbograph's Υ = 0 graph on onnxruntime", await relativeError(got, base));
        got.dispose();
        variants.push({ name: label, engine: "onnxruntime", threads, r: null, times: [], mergeShare: [], flops: compiledAt(0).v.flops, flopsRatio: 1, run: row.run });
      }
    }
  }
  tf.dispose([...tgLogits.values()]);
  return { variants, agreement, dispose: async () => { for (const r of rows) await r.dispose(); } };
}

async function benchModel(name: string, spec: ModelSpec, config: VitConfig, batch: number, rs: number[], ortPlan: OrtPlan, workers = 0) {
  log(`${name}: batch ${batch}, compiling and loading ${rs.length + 1} variants`);
  const x = tf.randomUniform([batch, config.channels, config.image, config.image], 0, 1, "float32", 1);
  const plain = compile(spec);
  const weights = randomWeights(plain.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), 7);
  const params = new Map([...weights].map(([k, w]) => [k, tf.tensor(w.data, w.shape, "float32")]));
  // The eager baseline at its best: the SIMD batched matmul turbograph installs
  // stays on for it, and it uses the runtime's SIMD GELU instead of tf.erf.
  registerSimdMatmul();
  const eager: Variant = {
    name: "eager tfjs (turbograph's SIMD kernels on)",
    engine: "wasm",
    threads: 1,
    r: null,
    times: [],
    mergeShare: [],
    flops: linearAt(plain.plan.flops, batch),
    flopsRatio: 1,
    run: () => {
      eagerVit(config, params, x as tf.Tensor4D, undefined, undefined, { gelu }).dataSync();
    },
  };
  const compiled = [];
  for (const r of [0, ...rs]) compiled.push(await compiledVariant(spec, r, batch, x, params));
  const parallel = workers > 1 ? await parallelVariant(compiled[0]!.dir, workers, compiled[0]!.v.flops, x) : undefined;
  const ortRows = await ortVariants(name, config, batch, ortPlan, x, weights, params, compiled);
  const variants = [eager, ...compiled.map((c) => c.v), ...(parallel ? [parallel.v] : []), ...ortRows.variants];
  for (const v of variants) {
    await v.run();
    v.share?.();
    v.times.length = 0;
  }
  for (let rep = 0; rep < reps; rep++) {
    // Rotate the order every repetition, so no variant always runs first or right after the same neighbour.
    for (let j = 0; j < variants.length; j++) {
      const v = variants[(j + rep) % variants.length]!;
      const t0 = performance.now();
      await v.run();
      v.times.push(performance.now() - t0);
    }
    for (const v of variants) if (v.share !== undefined) v.mergeShare.push(v.share());
    log(`  rep ${rep + 1}/${reps}: ${variants.map((v) => `${v.engine === "onnxruntime" ? "ort " : ""}${v.r ?? (v.engine === "wasm" ? "eager" : "ref")}×${v.threads} ${v.times[rep]!.toFixed(0)} ms`).join(", ")}`);
  }
  eager.peak = { measured: await peakOf(() => eagerVit(config, params, x as tf.Tensor4D, undefined, undefined, { gelu })), predicted: null };
  for (const { v, model } of compiled) {
    v.peak = { measured: await peakOf(() => model.run({ pixels: x }).logits!), predicted: model.predictedPeakBytes(batch) };
    model.dispose();
    v.disposeTimed?.();
  }
  // Each worker has its own tfjs; its memory is not visible from here.
  await parallel?.model.dispose();
  await ortRows.dispose();
  tf.dispose([...params.values(), x]);
  return { name, batch, variants, agreement: ortRows.agreement };
}

function matmulBench() {
  const shapes: [string, number[], number[]][] = [
    ["q·kᵀ, S/16 batch 8", [48, 197, 64], [48, 64, 197]],
    ["p·v, S/16 batch 8", [48, 197, 197], [48, 197, 64]],
    ["q·kᵀ after Υ=16 merges (101 tokens)", [48, 101, 64], [48, 64, 101]],
  ];
  return shapes.map(([name, sa, sb]) => {
    const a = tf.randomNormal(sa);
    const b = tf.randomNormal(sb);
    const flops = 2 * sa[0]! * sa[1]! * sa[2]! * sb[2]!;
    const time = (on: boolean) => {
      setSimdMatmulEnabled(on);
      tf.matMul(a, b).dispose();
      const ts: number[] = [];
      // The wasm backend runs kernels synchronously, so the call's wall time is
      // the kernel's; reading a multi-megabyte result back (dataSync) would
      // dominate and is not part of a model run.
      for (let i = 0; i < Math.max(3, reps); i++) {
        const t0 = performance.now();
        const y = tf.matMul(a, b);
        ts.push(performance.now() - t0);
        y.dispose();
      }
      return flops / median(ts) / 1e6;
    };
    const stock = time(false);
    const simd = time(true);
    tf.dispose([a, b]);
    return { name, shapeA: sa, shapeB: sb, stockGflops: stock, simdGflops: simd };
  });
}

async function workersBench(batch: number) {
  log(`workers: S/16, Υ = 0, batch ${batch}`);
  const c = compile(s16);
  const dir = mkdtempSync(join(tmpdir(), "turbograph-bench-"));
  writeFileSync(join(dir, "model.mjs"), c.module.js);
  const x = tf.randomUniform([batch, 3, 224, 224], 0, 1, "float32", 3);
  const result: { workers: number; times: number[] }[] = [];
  const models = [];
  for (const workers of [1, 2]) models.push({ workers, model: await loadParallel(dir, { weights: { random: 7 }, backend: "wasm", workers }), times: [] as number[] });
  for (const m of models) tf.dispose(Object.values(await m.model.run({ pixels: x })));
  for (let rep = 0; rep < Math.max(2, Math.ceil(reps / 2)); rep++) {
    for (const m of models) {
      const t0 = performance.now();
      tf.dispose(Object.values(await m.model.run({ pixels: x })));
      m.times.push(performance.now() - t0);
    }
  }
  for (const m of models) {
    result.push({ workers: m.workers, times: m.times });
    await m.model.dispose();
  }
  x.dispose();
  return { batch, result, flops: linearAt(c.plan.flops, batch) };
}

const backend = await selectBackend("wasm");
const started = Date.now();
const loadBefore = loadavg()[0]!;
const s16Result = await benchModel("ViT-S/16", s16, vitConfigs.s16, Number(args.batch), [8, 13, 16], {
  referenceThreads: [1, 2],
  compiled: [{ r: 0, threads: 1 }, { r: 8, threads: 1 }, { r: 13, threads: 1 }, { r: 16, threads: 1 }, { r: 0, threads: 2 }, { r: 16, threads: 2 }],
}, 2);
const b16Result = await benchModel("ViT-B/16", b16, vitConfigs.b16, Number(args["b16-batch"]), [8, 16], {
  referenceThreads: [1],
  compiled: [{ r: 0, threads: 1 }, { r: 8, threads: 1 }, { r: 16, threads: 1 }],
});
log("kernel profiles: S/16 compiled and eager");
const profiles = {
  compiled: await profileVit(s16, vitConfigs.s16, Number(args.batch), 0, Math.min(reps, 3), false),
  eager: await profileVit(s16, vitConfigs.s16, Number(args.batch), 0, Math.min(reps, 3), true),
};
log("matmul kernels");
const matmuls = matmulBench();
const workers = await workersBench(Number(args["workers-batch"]));
const seconds = (Date.now() - started) / 1000;
const loadAfter = loadavg()[0]!;

const machine = `${cpus().length} × ${cpus()[0]?.model ?? "unknown cpu"}, Node ${process.version}, tfjs ${tf.version_core}, backend ${backend.name}; 1-minute load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after (other processes on the machine slow every figure alike)`;
const json = { command, machine, date: new Date().toISOString(), seconds, reps, models: [s16Result, b16Result].map((m) => ({
  name: m.name, batch: m.batch, agreement: m.agreement, variants: m.variants.map((v) => ({ name: v.name, engine: v.engine, threads: v.threads, r: v.r, timesMs: v.times, medianMs: median(v.times), flops: v.flops, flopsRatio: v.flopsRatio, mergeShare: v.mergeShare, ortShare: v.ortShare, peak: v.peak })),
})), skipped, profiles, matmuls, workers };

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const s16Median = (r: number | null) => median(s16Result.variants.find((v) => v.engine === "wasm" && v.threads === 1 && v.r === r)!.times);
const lines: string[] = [
  "# Benchmarks",
  "",
  `Generated by \`${command}\` on ${json.date.slice(0, 10)} in ${seconds.toFixed(0)} s. Do not edit by hand: rerun the command.`,
  "",
  `Machine: ${machine}. Random weights; every figure is the median of ${reps} interleaved runs after a warm-up (spread: min–max), the order of the variants rotated every repetition.`,
  "",
  "The eager baseline is the hand-written tfjs ViT (`examples/vit/eager.ts`) at its best: turbograph's SIMD batched matmul is installed for it too and it uses the runtime's SIMD GELU. *Merge share* is the share of a run's step time spent in work Turbo added — the merge, the sizes, the similarity metric, the class token's attention row and the log-size add of proportional attention (`bench/turbo_share.ts` reads them from the graph) — from a separately loaded copy whose every step is timed, run once per repetition outside the timed runs; median over repetitions.",
  "",
];
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
for (const m of [s16Result, b16Result]) {
  const eager = m.variants.find((v) => v.engine === "wasm" && v.r === null)!;
  /** Υ = 0 on the same engine with the same threads. */
  const baseOf = (v: Variant) => m.variants.find((b) => b.engine === v.engine && b.threads === v.threads && b.r === 0);
  /** The reference export with the same threads. */
  const refOf = (v: Variant) => m.variants.find((b) => b.engine === "onnxruntime" && b.r === null && b.threads === v.threads);
  const ratio = (a: Variant | undefined, v: Variant) => (a === undefined || a === v ? "–" : `${(median(a.times) / median(v.times)).toFixed(2)}×`);
  lines.push(
    `## ${m.name}, batch ${m.batch}`,
    "",
    "| variant | engine | threads | median ms | spread ms | images/s | vs eager | vs Υ = 0 (same engine, threads) | vs reference export (same threads) | predicted FLOPs ratio | GFLOP/s | merge share | peak measured | peak planned |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  );
  for (const v of m.variants) {
    const med = median(v.times);
    const mergeShare = v.mergeShare.length > 0 ? pct(median(v.mergeShare)) : v.ortShare !== undefined ? `${pct(v.ortShare.turbo)} (profiler)` : "–";
    lines.push(`| ${v.name} | ${v.engine} | ${v.threads} | ${med.toFixed(0)} | ${Math.min(...v.times).toFixed(0)}–${Math.max(...v.times).toFixed(0)} | ${((1000 * m.batch) / med).toFixed(2)} | ${ratio(eager, v)} | ${v.r === null ? "–" : ratio(baseOf(v), v)} | ${v.engine === "onnxruntime" && v.r !== null ? ratio(refOf(v), v) : "–"} | ${v.r === null ? "–" : `${v.flopsRatio.toFixed(2)}×`} | ${(v.flops / med / 1e6).toFixed(1)} | ${mergeShare} | ${v.peak === undefined ? "–" : mib(v.peak.measured)} | ${v.peak?.predicted == null ? "–" : mib(v.peak.predicted)} |`);
  }
  lines.push("");
  if (m.agreement.length > 0) {
    lines.push(`Logits checked before timing (largest difference over the largest logit): ${m.agreement.map((a) => `${a.variant} vs ${a.against} ${a.relError.toExponential(1)}`).join("; ")}.`, "");
  }
  const pairs = m.variants.filter((v) => v.threads > 1).map((v) => ({ v, one: m.variants.find((o) => o.engine === v.engine && o.r === v.r && o.threads === 1) })).filter((p) => p.one !== undefined);
  if (pairs.length > 0) {
    lines.push(`${pairs[0]!.v.threads} threads against 1 (same engine and variant): ${pairs.map(({ v, one }) => `${v.name} ${(median(one!.times) / median(v.times)).toFixed(2)}×`).join("; ")}.`, "");
  }
  const profiled = m.variants.filter((v) => v.ortShare !== undefined);
  if (profiled.length > 0) {
    lines.push(
      `onnxruntime merge share: from onnxruntime's profiler over ${profiled[0]!.ortShare!.runs} runs of a separately loaded session; each node's kernel time goes to the program step its name carries. ` +
        `Nodes onnxruntime fused under a new name name no step: ${profiled.map((v) => `${pct(v.ortShare!.unattributed)} of Υ = ${v.r}'s time (${v.ortShare!.unattributedOps.join(", ")})`).join("; ")}.`,
      "",
    );
  }
}
if (skipped.length > 0) lines.push("Left out:", "", ...skipped.map((s) => `- ${s}`), "");
{
  const matmul2d = (p: typeof profiles.compiled) => p.rows.find((r) => r.kernel === "MatMul 2-D")?.msPerRun ?? 0;
  const c2d = matmul2d(profiles.compiled);
  const eagerMedian = s16Median(null);
  const c2dShare = c2d / profiles.compiled.kernelMsPerRun;
  const c2dWall = c2dShare * s16Median(0);
  lines.push(
    `## Where the time goes (ViT-S/16, batch ${args.batch}, kernel by kernel)`,
    "",
    `From \`tf.profile\` (\`npx tsx bench/profile.ts [--eager]\` prints the same). Compiled, Υ = 0: ${profiles.compiled.kernelMsPerRun.toFixed(0)} ms of kernels per run.`,
    "",
    ...profileTable(profiles.compiled.rows),
    "",
    `Eager: ${profiles.eager.kernelMsPerRun.toFixed(0)} ms of kernels per run.`,
    "",
    ...profileTable(profiles.eager.rows),
    "",
    `Both run their linear layers as 2-D matmuls on tfjs-wasm's XNNPACK path: ${c2d.toFixed(0)} ms per profiled run compiled, ${matmul2d(profiles.eager).toFixed(0)} ms eager. ` +
      `They are ${(100 * c2dShare).toFixed(1)} % of the compiled graph's kernel time, so of its median run in the S/16 table about ${c2dWall.toFixed(0)} ms. ` +
      `Even if every other kernel took no time, on one core the compiled graph could run at most ${(eagerMedian / c2dWall).toFixed(2)}× the eager implementation ` +
      `(eager's median run, ${eagerMedian.toFixed(0)} ms, over that) unless the 2-D matmuls themselves get faster than XNNPACK. ` +
      `(Shares, not milliseconds, carry over between the table and the profile: the two are measured minutes apart on a machine whose speed drifts.)`,
    "",
  );
}
lines.push("## Batched matmul kernels (wasm)", "", "| shape | stock GFLOP/s | SIMD GFLOP/s | speed-up |", "|---|---|---|---|");
for (const k of matmuls) lines.push(`| ${k.name}: [${k.shapeA}]·[${k.shapeB}] | ${k.stockGflops.toFixed(2)} | ${k.simdGflops.toFixed(2)} | ${(k.simdGflops / k.stockGflops).toFixed(2)}× |`);
const w1 = median(workers.result[0]!.times);
const w2 = median(workers.result[1]!.times);
lines.push("", `## Worker threads (S/16, Υ = 0, batch ${workers.batch})`, "", "| workers | median ms | images/s | GFLOP/s |", "|---|---|---|---|");
for (const w of workers.result) {
  const med = median(w.times);
  lines.push(`| ${w.workers} | ${med.toFixed(0)} | ${((1000 * workers.batch) / med).toFixed(2)} | ${(workers.flops / med / 1e6).toFixed(1)} |`);
}
{
  const eagerRate = (1000 * s16Result.batch) / s16Median(null);
  lines.push("", `Two workers: ${(w1 / w2).toFixed(2)}× one worker; ${((1000 * workers.batch) / w2 / eagerRate).toFixed(2)}× the images/s of the eager implementation (one thread, batch ${s16Result.batch}, table above).`, "");
}

mkdirSync(args.out!, { recursive: true });
writeFileSync(join(args.out!, "BENCHMARKS.json"), JSON.stringify(json, null, 2) + "\n");
// Text after the notes marker (the analysis written by people) survives a rerun.
const notesMarker = "<!-- notes: everything below is kept when the benchmark rewrites this file -->";
const mdPath = join(args.out!, "BENCHMARKS.md");
const previous = existsSync(mdPath) ? readFileSync(mdPath, "utf8") : "";
const notes = previous.includes(notesMarker) ? previous.slice(previous.indexOf(notesMarker) + notesMarker.length) : "\n";
writeFileSync(mdPath, lines.join("\n") + `\n${notesMarker}${notes}`);
log(`wrote ${join(args.out!, "BENCHMARKS.md")} and BENCHMARKS.json in ${seconds.toFixed(0)} s`);
process.stdout.write(lines.join("\n") + "\n");
