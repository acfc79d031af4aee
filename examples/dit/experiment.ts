/**
 * The generation experiment (issue 14): how much faster merge and restore
 * make the MNIST DiT's sampler, and what it costs in image quality, Turbo
 * against tomesd's rule at the same merge ratios.
 *
 *   npx tsx examples/dit/experiment.ts [--samples 500] [--steps 50] [--batch 100]
 *       [--time-batch 64] [--rounds 7] [--ratios 0.3,0.5,0.7] [--weights FILE] [--out DIR] [--quick]
 *
 * Methods, each compiled from examples/dit/dit.ts with `compile(spec, { generation })`:
 *
 * - `unmerged`;
 * - `tomesd`: α = 0 (merge by redundancy alone, tomesd's rule), 2×2 windows;
 * - `turbo`: α = 5, c = 30, the semantic value the block's cross-attention map
 *   (spec/turbo.md, "Generation mode");
 *
 * at each ratio of `--ratios` around self-attention, and at 0.5 also around
 * self- and cross-attention, self-attention and the MLP, and all three.
 * Both rules merge the same number of tokens at the same places, so their
 * FLOPs differ only by Turbo's semantic value (counted).
 *
 * - **Quality.** `--samples` digits per method (class i mod 10 for sample i),
 *   DDIM with `--steps` steps from the same seeded noise for every method,
 *   on wasm; conditional accuracy and the Fréchet distance on the MNIST
 *   ViT's features against the 2000 test digits (examples/dit/quality.ts),
 *   with a bootstrap 95 % interval; McNemar's exact test of each method's
 *   conditional hits against the unmerged model's on the same seeds.
 * - **Speed.** One denoising step (one forward pass) at batch `--time-batch`,
 *   per method and engine: wasm (1 thread) and onnxruntime at 1 and 2
 *   threads (the same compiled program as ONNX); warm-up first, then
 *   `--rounds` rounds with the order rotated each round; median and min–max.
 *   ms per step and per image-step come from these, sampler seconds per
 *   image = steps × ms per image-step. The wall time of the quality run
 *   (DDIM on wasm at batch `--batch`) is recorded too, per image.
 *
 * Writes, under `--out` (default examples/dit), results/results.json (one
 * row per method, the issue's fields and more), results/record.json,
 * RESULTS.md, results/samples.png and results/samples_where.png.
 */

import * as tf from "@tensorflow/tfjs-core";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { compile, type Compiled } from "../../compiler/compile.ts";
import { linearAt } from "../../compiler/contract/plan.ts";
import { emitOnnx } from "../../compiler/lower/emit_onnx.ts";
import type { GenerationOptions, SubLayer } from "../../compiler/passes/insert_generation.ts";
import { load, loadModule, type Model, type OnnxModel } from "../../runtime/mod.ts";
import { mulberry32 } from "../vit/training.ts";
import { loadMnist } from "../vit/mnist_data.ts";
import { cssColor, mergeSpec, renderPng, type MergePanel } from "../vit/plots.ts";
import { median, signTestP } from "../vit/stats.ts";
import { ditConfig, promptIds } from "./config.ts";
import { ddimSample, linearSchedule, normals } from "./diffusion.ts";
import { dit } from "./dit.ts";
import { FEATURES, frechetDistance, gaussian, loadScorer } from "./quality.ts";

const here = new URL(".", import.meta.url).pathname;
const USAGE = "usage: experiment.ts [--samples N] [--steps N] [--batch N] [--time-batch N] [--rounds N] [--ratios X,…] [--weights FILE] [--quick]";

interface Method {
  id: string;
  method: "unmerged" | "tomesd" | "turbo";
  ratio: number;
  where: readonly SubLayer[];
}

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      samples: { type: "string", default: "500" },
      steps: { type: "string", default: "50" },
      batch: { type: "string", default: "100" },
      "time-batch": { type: "string", default: "64" },
      rounds: { type: "string", default: "7" },
      ratios: { type: "string", default: "0.3,0.5,0.7" },
      weights: { type: "string", default: join(here, "weights/mnist_dit.safetensors") },
      out: { type: "string", default: here },
      quick: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const int = (k: "samples" | "steps" | "batch" | "time-batch" | "rounds") => {
    const n = Number(values[k]);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${k} must be a positive integer, not "${values[k]}"\n${USAGE}`);
    return n;
  };
  const ratios = values.ratios!.split(",").map((x) => {
    const r = Number(x);
    if (!(r > 0 && r < 1)) throw new Error(`--ratios: "${x}" is not in (0, 1)\n${USAGE}`);
    return r;
  });
  const quick = values.quick === true;
  return {
    samples: quick ? 40 : int("samples"),
    steps: quick ? 10 : int("steps"),
    batch: int("batch"),
    timeBatch: quick ? 16 : int("time-batch"),
    rounds: quick ? 2 : int("rounds"),
    ratios,
    weights: values.weights!,
    out: values.out!,
    quick,
  };
}

function methods(ratios: readonly number[]): Method[] {
  const out: Method[] = [{ id: "unmerged", method: "unmerged", ratio: 0, where: [] }];
  const wheres: readonly (readonly SubLayer[])[] = [["self", "cross"], ["self", "mlp"], ["self", "cross", "mlp"]];
  for (const method of ["tomesd", "turbo"] as const) {
    for (const ratio of ratios) out.push({ id: `${method}-${ratio}-self`, method, ratio, where: ["self"] });
    if (ratios.includes(0.5)) for (const where of wheres) out.push({ id: `${method}-0.5-${where.join("+")}`, method, ratio: 0.5, where });
  }
  return out;
}

const generationOf = (m: Method): GenerationOptions | undefined =>
  m.method === "unmerged" ? undefined : { ratio: m.ratio, where: m.where, alpha: m.method === "tomesd" ? 0 : 5, scale: 30, seed: 0 };

interface Timing {
  median: number;
  min: number;
  max: number;
}

const summary = (xs: readonly number[]): Timing => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

async function main(argv: string[]): Promise<number> {
  const o = parse(argv);
  const command = ["npx", "tsx", "examples/dit/experiment.ts", ...argv].join(" ");
  const started = performance.now();
  const loadStart = loadavg();
  const dir = mkdtempSync(join(tmpdir(), "turbograph-dit-"));
  const weightBytes = new Uint8Array(readFileSync(o.weights));
  const weightRecord = JSON.parse(readFileSync(`${o.weights}.json`, "utf8")) as { steps: number; command: string };
  const list = methods(o.ratios);
  const schedule = linearSchedule();

  // Compile every method, for wasm and as ONNX.
  const compiled = new Map<string, Compiled>();
  const wasm = new Map<string, Model>();
  const ort = new Map<string, Map<number, OnnxModel>>();
  for (const m of list) {
    const generation = generationOf(m);
    const c = compile(dit(ditConfig), { source: "examples/dit/dit.ts", ...(generation === undefined ? {} : { generation }) });
    compiled.set(m.id, c);
    const sub = join(dir, m.id);
    mkdirSync(sub);
    writeFileSync(join(sub, "model.mjs"), c.module.js);
    writeFileSync(join(sub, "model.onnx"), emitOnnx(c.program, c.plan, "examples/dit/dit.ts"));
    const weights = { safetensors: weightBytes, source: o.weights };
    wasm.set(m.id, await loadModule(await import(pathToFileURL(join(sub, "model.mjs")).href), { weights, backend: "wasm" }));
    const engines = new Map<number, OnnxModel>();
    for (const threads of [1, 2]) engines.set(threads, await load(sub, { backend: "onnxruntime", weights, threads }));
    ort.set(m.id, engines);
  }
  console.error(`compiled ${list.length} methods: ${list.map((m) => m.id).join(", ")}`);

  /** The denoiser of a method on an engine: predicted noise for flat images at one timestep. */
  const denoiser = (id: string, engine: "wasm" | 1 | 2) => async (noisy: Float32Array, t: number, count: number, classes: readonly number[]) => {
    const x = tf.tensor4d(noisy, [count, 1, 28, 28]);
    const tt = tf.fill([count, 1], t);
    const prompt = tf.tensor2d(classes.flatMap((k) => promptIds(k)), [count, 2], "int32");
    const out = engine === "wasm" ? wasm.get(id)!.run({ noisy: x, t: tt, prompt }) : await ort.get(id)!.get(engine)!.run({ noisy: x, t: tt, prompt });
    const eps = out.noise!.dataSync() as Float32Array;
    tf.dispose([x, tt, prompt, out.noise!]);
    return eps;
  };

  // Speed: one step at a fixed batch, interleaved with rotating order after a warm-up.
  const engines = ["wasm", 1, 2] as const;
  const timeNoise = normals(o.timeBatch * 784, mulberry32(99));
  const timeClasses = Array.from({ length: o.timeBatch }, (_, i) => i % 10);
  const times = new Map<string, number[]>();
  const keys = list.flatMap((m) => engines.map((e) => ({ id: m.id, engine: e, key: `${m.id}@${e}` })));
  for (const k of keys) {
    await denoiser(k.id, k.engine)(timeNoise, 500, o.timeBatch, timeClasses);
    times.set(k.key, []);
  }
  for (let round = 0; round < o.rounds; round++) {
    const order = keys.map((_, i) => keys[(i + round) % keys.length]!);
    for (const k of order) {
      const t0 = performance.now();
      await denoiser(k.id, k.engine)(timeNoise, 500, o.timeBatch, timeClasses);
      times.get(k.key)!.push(performance.now() - t0);
    }
    console.error(`timing round ${round + 1}/${o.rounds}`);
  }

  // Quality: the same seeded noise and classes for every method.
  const scorer = await loadScorer(dir);
  const mnist = loadMnist();
  const reference = gaussian(scorer.score(mnist.test.images, mnist.test.count).features, FEATURES);
  const classes = Array.from({ length: o.samples }, (_, i) => i % 10);
  const start = normals(o.samples * 784, mulberry32(2024));
  const bootstrapDraw = mulberry32(7);
  const rows: Row[] = [];
  const hitsOf = new Map<string, boolean[]>();
  const pictures = new Map<string, Float32Array>();
  for (const m of list) {
    const t0 = performance.now();
    const images = new Float32Array(o.samples * 784);
    for (let b = 0; b < o.samples; b += o.batch) {
      const count = Math.min(o.batch, o.samples - b);
      const cls = classes.slice(b, b + count);
      const run = denoiser(m.id, "wasm");
      const x = await ddimSample(schedule, (noisy, t, n) => run(noisy, t, n, cls), start.slice(b * 784, (b + count) * 784), count, o.steps);
      images.set(x.map((v) => Math.min(1, Math.max(0, (v + 1) / 2))), b * 784);
    }
    const sampleSeconds = (performance.now() - t0) / 1000;
    const { predictions, features } = scorer.score(images, o.samples);
    const hits = predictions.map((p, i) => p === classes[i]);
    hitsOf.set(m.id, hits);
    const fd = frechetDistance(gaussian(features, FEATURES), reference, FEATURES);
    const boot: number[] = [];
    for (let r = 0; r < 200; r++) {
      const pick = new Float64Array(features.length);
      for (let i = 0; i < o.samples; i++) {
        const j = Math.floor(bootstrapDraw() * o.samples);
        pick.set(features.subarray(j * FEATURES, (j + 1) * FEATURES), i * FEATURES);
      }
      boot.push(frechetDistance(gaussian(pick, FEATURES), reference, FEATURES));
    }
    boot.sort((a, b) => a - b);
    pictures.set(m.id, images.slice(0, 20 * 784));
    const c = compiled.get(m.id)!;
    const timing = Object.fromEntries(engines.map((e) => [e === "wasm" ? "wasm" : `onnxruntime-${e}t`, summary(times.get(`${m.id}@${e}`)!)]));
    const best = Math.min(...Object.values(timing).map((t) => t.median));
    const base = hitsOf.get("unmerged")!;
    const b = hits.filter((h, i) => h && !base[i]).length;
    const cc = hits.filter((h, i) => !h && base[i]).length;
    rows.push({
      method: m.method,
      ratio: m.ratio,
      where: m.where.join("+") || "-",
      ms_per_step: Number(best.toFixed(2)),
      cond_accuracy: Number((hits.filter(Boolean).length / o.samples).toFixed(4)),
      fd: Number(fd.toFixed(3)),
      gflops: Number((linearAt(c.plan.flops, 1) / 1e9).toFixed(4)),
      samples: o.samples,
      id: m.id,
      fd_ci95: [Number(boot[5]!.toFixed(3)), Number(boot[194]!.toFixed(3))],
      p_vs_unmerged: m.method === "unmerged" ? null : Number(signTestP(b, cc).toPrecision(3)),
      ms_per_step_by_engine: timing,
      ms_per_image_step: Number((best / o.timeBatch).toFixed(3)),
      sampler_ms_per_image: Number(((best / o.timeBatch) * o.steps).toFixed(1)),
      quality_run_seconds: Number(sampleSeconds.toFixed(1)),
      wasm_sampler_ms_per_image: Number(((1000 * sampleSeconds) / o.samples).toFixed(1)),
      tokens_merged_per_sublayer: m.method === "unmerged" ? 0 : c.plan.blocks.find((x) => x.name === "block.0")!.merged / m.where.length,
    });
    const r = rows[rows.length - 1]!;
    console.error(`${m.id}: cond acc ${(100 * r.cond_accuracy).toFixed(1)}%, FD ${r.fd} [${r.fd_ci95.join(", ")}], ${r.ms_per_step} ms/step at batch ${o.timeBatch} (fastest engine), ${r.quality_run_seconds} s to sample`);
  }
  scorer.dispose();

  const results = join(o.out, "results");
  mkdirSync(results, { recursive: true });
  const issueRows = rows.map(({ method, ratio, where, ms_per_step, cond_accuracy, fd, gflops, samples, ...more }) => ({ method, ratio, where, ms_per_step, cond_accuracy, fd, gflops, samples, ...more }));
  writeFileSync(join(results, "results.json"), `${JSON.stringify(issueRows, null, 2)}\n`);
  const record = {
    command,
    weights: { file: o.weights, steps: weightRecord.steps, command: weightRecord.command },
    samples: o.samples,
    ddimSteps: o.steps,
    timeBatch: o.timeBatch,
    rounds: o.rounds,
    noiseSeed: 2024,
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? "?", node: process.version, loadavgStart: loadStart, loadavgEnd: loadavg() },
    seconds: Math.round((performance.now() - started) / 1000),
    date: new Date().toISOString(),
  };
  writeFileSync(join(results, "record.json"), `${JSON.stringify(record, null, 2)}\n`);
  writeFileSync(join(o.out, "RESULTS.md"), report(rows, record));

  // Sample grids: the first 20 samples (two per class) of each method, same seeds.
  const panels = (ids: readonly string[]): MergePanel[] =>
    ids.flatMap((id) => Array.from({ length: 20 }, (_, i) => ({
      row: id,
      column: `${classes[i]}${i >= 10 ? "′" : ""}`,
      colors: Array.from(pictures.get(id)!.subarray(i * 784, (i + 1) * 784), (v) => cssColor([v, v, v])),
    })));
  const columns = Array.from({ length: 20 }, (_, i) => `${classes[i]}${i >= 10 ? "′" : ""}`);
  const selfIds = list.filter((m) => m.where.length <= 1).map((m) => m.id);
  const whereIds = ["unmerged", ...list.filter((m) => m.ratio === 0.5).map((m) => m.id)];
  await renderPng(mergeSpec(panels(selfIds), 28, `DDIM ${o.steps} steps, same noise per column: merge and restore around self-attention`, selfIds, columns), join(results, "samples.png"));
  await renderPng(mergeSpec(panels(whereIds), 28, "Ratio 0.5, by where the merges go", whereIds, columns), join(results, "samples_where.png"));
  for (const m of wasm.values()) m.dispose();
  for (const e of ort.values()) for (const m of e.values()) await m.dispose();
  rmSync(dir, { recursive: true, force: true });
  console.log(`wrote ${join(o.out, "results")}/results.json, record.json, samples.png, samples_where.png and ${join(o.out, "RESULTS.md")} (${record.seconds} s)`);
  return 0;
}

interface Row {
  method: string;
  ratio: number;
  where: string;
  ms_per_step: number;
  cond_accuracy: number;
  fd: number;
  gflops: number;
  samples: number;
  id: string;
  fd_ci95: number[];
  p_vs_unmerged: number | null;
  ms_per_step_by_engine: Record<string, Timing>;
  ms_per_image_step: number;
  sampler_ms_per_image: number;
  quality_run_seconds: number;
  wasm_sampler_ms_per_image: number;
  tokens_merged_per_sublayer: number;
}

function report(rows: readonly Row[], rec: { command: string; weights: { steps: number; command: string }; samples: number; ddimSteps: number; timeBatch: number; rounds: number; machine: { cpus: number; cpu: string; loadavgStart: number[]; loadavgEnd: number[] }; seconds: number }): string {
  const base = rows.find((r) => r.method === "unmerged")!;
  const engineNames = Object.keys(base.ms_per_step_by_engine);
  const speed = (r: Row, engine: string) => base.ms_per_step_by_engine[engine]!.median / r.ms_per_step_by_engine[engine]!.median;
  const fastestBase = Math.min(...engineNames.map((e) => base.ms_per_step_by_engine[e]!.median));
  const lines = [
    "# examples/dit: generation-mode results",
    "",
    `Generated by \`${rec.command}\` (${rec.seconds} s). Weights: examples/dit/weights/mnist_dit.safetensors after ${rec.weights.steps} training steps (\`${rec.weights.command}\`).`,
    "",
    `- **Quality**: ${rec.samples} digits per method (class i mod 10), DDIM ${rec.ddimSteps} steps from the same seeded noise for every method, on wasm. Conditional accuracy: the MNIST ViT (97.1 % on real test digits) labels the digit as the class asked for. FD: Fréchet distance on the ViT's 32 final features against the 2000 test digits, [bootstrap 95 %]. p: McNemar's exact test of the conditional hits against the unmerged model on the same seeds.`,
    `- **Speed**: one denoising step at batch ${rec.timeBatch}, median of ${rec.rounds} interleaved rounds (order rotated, after warm-up) on each engine; "vs unmerged" compares each engine with the unmerged model on the same engine; "ms/step" is the fastest engine's median. ${rec.machine.cpus}× ${rec.machine.cpu}; load average ${rec.machine.loadavgStart[0]!.toFixed(2)} → ${rec.machine.loadavgEnd[0]!.toFixed(2)}.`,
    `- The fastest unmerged engine takes ${fastestBase.toFixed(1)} ms per step at batch ${rec.timeBatch}; the speed-up that matters is against that figure (last column).`,
    "",
    `| method | ratio | where | GFLOP/sample | cond. acc. | p | FD [95 %] | ${engineNames.map((e) => `${e} ms (vs unmerged)`).join(" | ")} | vs fastest unmerged |`,
    `|---|---|---|---|---|---|---|${engineNames.map(() => "---").join("|")}|---|`,
    ...rows.map((r) =>
      `| ${r.method} | ${r.ratio || "-"} | ${r.where} | ${r.gflops.toFixed(4)} | ${(100 * r.cond_accuracy).toFixed(1)} % | ${r.p_vs_unmerged === null ? "-" : r.p_vs_unmerged} | ${r.fd.toFixed(2)} [${r.fd_ci95.map((x) => x.toFixed(2)).join(", ")}] | ` +
      `${engineNames.map((e) => `${r.ms_per_step_by_engine[e]!.median.toFixed(1)} [${r.ms_per_step_by_engine[e]!.min.toFixed(1)}–${r.ms_per_step_by_engine[e]!.max.toFixed(1)}] (${speed(r, e).toFixed(2)}×)`).join(" | ")} | ${(fastestBase / r.ms_per_step).toFixed(2)}× |`
    ),
    "",
    ...targets(rows, fastestBase),
    "",
    "Samples (same noise and class per column): `results/samples.png` (self-attention merges at each ratio) and `results/samples_where.png` (ratio 0.5, by sub-layer).",
    "",
  ];
  return lines.join("\n");
}

/** The issue's targets at ratio 0.5 around self-attention, read off the rows. */
function targets(rows: readonly Row[], fastestBase: number): string[] {
  const base = rows.find((r) => r.method === "unmerged")!;
  const at = (method: string) => rows.find((r) => r.method === method && r.ratio === 0.5 && r.where === "self");
  const turbo = at("turbo");
  const tomesd = at("tomesd");
  if (turbo === undefined || tomesd === undefined) return [];
  const points = (r: Row) => 100 * (r.cond_accuracy - base.cond_accuracy);
  const check = (ok: boolean) => (ok ? "met" : "**not met**");
  return [
    "## Targets (ratio 0.5, self-attention)",
    "",
    `- ≥ 1.5× faster per step than unmerged: Turbo ${(fastestBase / turbo.ms_per_step).toFixed(2)}× against the fastest unmerged engine (tomesd ${(fastestBase / tomesd.ms_per_step).toFixed(2)}×): ${check(fastestBase / turbo.ms_per_step >= 1.5)}.`,
    `- Conditional accuracy within 2 points of unmerged: Turbo ${points(turbo) >= 0 ? "+" : ""}${points(turbo).toFixed(1)} points (p = ${turbo.p_vs_unmerged}), tomesd ${points(tomesd) >= 0 ? "+" : ""}${points(tomesd).toFixed(1)}: ${check(points(turbo) >= -2)}.`,
    `- FD no worse than tomesd's: Turbo ${turbo.fd.toFixed(2)} [${turbo.fd_ci95.map((x) => x.toFixed(2)).join(", ")}] against ${tomesd.fd.toFixed(2)} [${tomesd.fd_ci95.map((x) => x.toFixed(2)).join(", ")}] (unmerged ${base.fd.toFixed(2)}): ${check(turbo.fd <= tomesd.fd)}${turbo.fd <= tomesd.fd || turbo.fd_ci95[0]! <= tomesd.fd_ci95[1]! ? "" : ", and the intervals do not overlap"}.`,
  ];
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  console.error(`dit/experiment: error: ${(e as Error).message}`);
  process.exitCode = 2;
}
