/**
 * The MNIST evaluation of Turbo against ToMe (issue #5): compiles the trained
 * `mnist` ViT once per merging method and Υ, runs the test split through each
 * compiled model, times them interleaved, and writes
 *
 *   examples/vit/RESULTS.md                    tables and the computed verdict
 *   examples/vit/results/results.json          every number behind them
 *   examples/vit/results/accuracy_vs_speed.png accuracy vs images/s and vs FLOPs (the paper's Figure 4)
 *   examples/vit/results/redundancy.png        S and C per block (the paper's Figure 3)
 *   examples/vit/results/merges.png            which patches merged into each final token, ToMe vs Turbo
 *
 *   npx tsx examples/vit/eval.ts [--weights examples/vit/weights/mnist_vit.safetensors]
 *       [--backend auto|wasm|cpu|tensorflow|onnxruntime] [--threads N] [--batch 64] [--upsilons 8,16,…] [--thresholds 50,100]
 *       [--rounds 5] [--picture-upsilon N] [--out examples/vit] [--readme README.md] [--quick]
 *
 * Without --out/--quick it also rewrites the block of README.md between the
 * `mnist-results` markers (the headline table); `--readme ""` skips that.
 * `--quick` (development): every 4th test image, four Υ, one timing round, one
 * threshold, and output to a temporary directory unless `--out` is given.
 *
 * `--backend onnxruntime` compiles each model with its ONNX graph too and runs
 * that on onnxruntime-node (`--threads`: its intra-op threads); everything
 * else is the same.
 *
 * Accuracy is deterministic (fixed images, fixed programs, no randomness), so
 * a rerun gives the same accuracies; images/s depends on the machine's load.
 */

import * as tf from "@tensorflow/tfjs-core";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { compile } from "../../compiler/compile.ts";
import { emitOnnx } from "../../compiler/lower/emit_onnx.ts";
import { load, type BackendChoice } from "../../runtime/mod.ts";
import { fromHfVit, isHfVit, parseSafetensors } from "../../runtime/weights/mod.ts";
import { vitConfigs, vitDims, type VitConfig } from "./config.ts";
import { allMethods, mergeMethods, noMerging, SEMANTIC_ONLY_ALPHA, type MergeMethod, type MethodId } from "./merge_methods.ts";
import { gatherBatch, loadMnist, MNIST_SIZE, type MnistSplit } from "./mnist_data.ts";
import { inputPanels, mergePanels } from "./merge_picture.ts";
import { argmaxRows, median, signTestP } from "./stats.ts";
import { mergeSpec, redundancySpec, renderPng, speedSpec, type MergePanel } from "./plots.ts";
import { formatDuration, Progress } from "./progress.ts";
import { redundancyProfile, type RedundancyProfile } from "./redundancy.ts";
import { mnist, vit } from "./vit.ts";

const DEFAULT_WEIGHTS = "examples/vit/weights/mnist_vit.safetensors";
const DEFAULT_UPSILONS = [8, 16, 24, 32, 48, 64, 98];
const QUICK_UPSILONS = [16, 32, 64, 98];
const DEFAULT_THRESHOLDS = [25, 50, 100];
/** Methods run in the threshold ablation (the paper's Table 9). */
const ABLATION_METHODS: readonly MethodId[] = ["tome", "turbo-s1"];
/** Test images shown in merges.png: the 8th image of these digits. */
const PICTURE_DIGITS = [0, 2, 3, 4, 5, 7, 9];

interface Args {
  weights: string;
  backend: BackendChoice | "onnxruntime";
  /** onnxruntime's intra-op threads. */
  threads: number | undefined;
  batch: number;
  upsilons: number[];
  thresholds: number[];
  rounds: number;
  pictureUpsilon: number | undefined;
  out: string;
  /** README whose block between the mnist-results markers is replaced ("" for none). */
  readme: string;
  quick: boolean;
}

function parse(argv: string[]): Args {
  const { values } = parseArgs({
    args: argv,
    options: {
      weights: { type: "string", default: DEFAULT_WEIGHTS },
      backend: { type: "string", default: "auto" },
      threads: { type: "string" },
      batch: { type: "string", default: "64" },
      upsilons: { type: "string" },
      thresholds: { type: "string" },
      rounds: { type: "string" },
      "picture-upsilon": { type: "string" },
      out: { type: "string" },
      readme: { type: "string" },
      quick: { type: "boolean", default: false },
    },
  });
  const int = (name: string, text: string, min: number): number => {
    const v = Number(text);
    if (!Number.isInteger(v) || v < min) throw new Error(`--${name} "${text}" must be an integer ≥ ${min}`);
    return v;
  };
  const list = (name: string, text: string | undefined, fallback: number[]): number[] =>
    text === undefined ? fallback : text.split(",").filter((s) => s !== "").map((s) => int(name, s, 1));
  const quick = values.quick === true;
  const upsilons = [...new Set(list("upsilons", values.upsilons, quick ? QUICK_UPSILONS : DEFAULT_UPSILONS))].sort((a, b) => a - b);
  if (upsilons.length === 0) throw new Error("--upsilons is empty");
  return {
    weights: values.weights!,
    backend: values.backend as BackendChoice | "onnxruntime",
    threads: values.threads === undefined ? undefined : int("threads", values.threads, 1),
    batch: int("batch", values.batch!, 1),
    upsilons,
    thresholds: list("thresholds", values.thresholds, quick ? [DEFAULT_THRESHOLDS[0]!] : DEFAULT_THRESHOLDS),
    rounds: int("rounds", values.rounds ?? (quick ? "1" : "5"), 1),
    pictureUpsilon: values["picture-upsilon"] === undefined ? undefined : int("picture-upsilon", values["picture-upsilon"], 1),
    out: values.out ?? (quick ? mkdtempSync(join(tmpdir(), "turbograph-eval-quick-")) : "examples/vit"),
    readme: values.readme ?? (quick || values.out !== undefined ? "" : "README.md"),
    quick,
  };
}

/**
 * The model's config: `vitConfigs.mnist`, unless the training record next to
 * the weights (`<weights>.json`, written by train_mnist.ts) names other
 * sizes, as probe runs with `--dim`/`--heads`/`--depth` do.
 */
function configFor(weights: string): { config: VitConfig; from: string } {
  const record = `${weights}.json`;
  if (!existsSync(record)) return { config: vitConfigs.mnist, from: "examples/vit/config.ts (mnist)" };
  const c = (JSON.parse(readFileSync(record, "utf8")) as { config?: Partial<VitConfig> }).config;
  if (c === undefined) return { config: vitConfigs.mnist, from: "examples/vit/config.ts (mnist)" };
  const config: VitConfig = { ...vitConfigs.mnist, ...c };
  const same = (Object.keys(vitConfigs.mnist) as Array<keyof VitConfig>).every((k) => k === "name" || config[k] === vitConfigs.mnist[k]);
  return same ? { config: vitConfigs.mnist, from: "examples/vit/config.ts (mnist)" } : { config, from: record };
}

interface RunSpec {
  method: MergeMethod;
  upsilon: number;
  threshold: number;
  part: "baseline" | "sweep" | "ablation";
}

interface RunResult {
  method: MethodId;
  label: string;
  upsilon: number;
  threshold: number;
  part: RunSpec["part"];
  /** Tokens after each encoder block. */
  tokens: number[];
  /** Tokens after the last encoder block (what the classifier's class token has attended over). */
  tokensLast: number;
  /** FLOPs per image from the plan, and the unmerged model's over this. */
  flopsPerImage: number;
  flopsRatio: number;
  accuracy: number;
  correct: number;
  images: number;
  /** Interleaved timing: median, min and max over rounds of images/s at the timing batch. */
  imagesPerSecond: number;
  imagesPerSecondRange: [number, number];
  /** Predicted class of every evaluated image, as a string of digits (to compare reruns). */
  predictions: string;
}

const runKey = (r: { method: string; upsilon: number; threshold: number }) => `${r.method}/${r.upsilon}/${r.threshold}`;

function planRuns(args: Args): RunSpec[] {
  const runs: RunSpec[] = [{ method: noMerging, upsilon: 0, threshold: 0, part: "baseline" }];
  for (const upsilon of args.upsilons) for (const method of mergeMethods) runs.push({ method, upsilon, threshold: 0, part: "sweep" });
  const top = args.upsilons.slice(-2);
  for (const upsilon of top) {
    for (const threshold of args.thresholds) {
      for (const id of ABLATION_METHODS) runs.push({ method: allMethods.find((m) => m.id === id)!, upsilon, threshold, part: "ablation" });
    }
  }
  return runs;
}

function compileToDir(spec: ReturnType<typeof vit>, method: MergeMethod, upsilon: number, threshold: number, extra: { trackSources?: boolean } = {}) {
  const turbo = method.options(upsilon, threshold);
  const compiled = compile(spec, turbo === undefined ? { source: "examples/vit/eval.ts" } : { source: "examples/vit/eval.ts", turbo: { ...turbo, ...extra } });
  const dir = mkdtempSync(join(tmpdir(), "turbograph-eval-"));
  writeFileSync(join(dir, "model.mjs"), compiled.module.js);
  writeFileSync(join(dir, "model.onnx"), emitOnnx(compiled.program, compiled.plan, "examples/vit/eval.ts"));
  return { compiled, dir };
}

/** A loaded model on either kind of backend: tfjs (run() returns tensors) or onnxruntime (a promise). */
interface Runner {
  run(inputs: Record<string, tf.Tensor>): Promise<Record<string, tf.Tensor>>;
  dispose(): Promise<void>;
  /** The backend and why, for the results. */
  info: string;
}

async function loadRunner(dir: string, weightBytes: Uint8Array, args: Args): Promise<Runner> {
  const weights = { safetensors: new Uint8Array(weightBytes), source: args.weights };
  if (args.backend === "onnxruntime") {
    const m = await load(dir, { backend: "onnxruntime", weights, ...(args.threads === undefined ? {} : { threads: args.threads }) });
    return { run: (inputs) => m.run(inputs), dispose: () => m.dispose(), info: `onnxruntime (${m.info.backend.reason}${args.threads === undefined ? "" : `; ${args.threads} intra-op threads`})` };
  }
  const m = await load(dir, { weights, backend: args.backend });
  return {
    run: async (inputs) => m.run(inputs),
    dispose: async () => m.dispose(),
    info: `${m.info.backend.name} (${m.info.backend.reason}${m.info.kernels.length > 0 ? `; turbograph kernels: ${m.info.kernels.join(", ")}` : ""})`,
  };
}

const pct = (v: number, digits = 2) => (100 * v).toFixed(digits);
async function main(argv: string[]): Promise<number> {
  const args = parse(argv);
  const started = new Date();
  const t0 = performance.now();
  if (!existsSync(args.weights)) {
    throw new Error(`weights "${args.weights}" not found; train them with examples/vit/train_mnist.ts or pass --weights`);
  }
  const weightBytes = readFileSync(args.weights);
  const weightsSha = createHash("sha256").update(weightBytes).digest("hex");
  const { config, from: configFrom } = configFor(args.weights);
  const spec = config === vitConfigs.mnist ? mnist : vit(config);
  const loadAvgStart = loadavg();

  const { test } = loadMnist();
  const indices = Array.from({ length: args.quick ? Math.ceil(test.count / 4) : test.count }, (_, i) => (args.quick ? 4 * i : i));
  const data = gatherBatch(test, indices);
  const count = indices.length;
  const per = MNIST_SIZE * MNIST_SIZE;

  const runs = planRuns(args);
  const steps = Math.ceil(count / args.batch);
  console.error(
    `eval: ${runs.length} compiled models × ${count} test images (batch ${args.batch}); weights ${args.weights} (${weightsSha.slice(0, 12)}); model ${config.name} from ${configFrom}`,
  );

  // 1. Accuracy: every model over the evaluated test images.
  const progress = new Progress({ total: runs.length * steps, logEverySeconds: 15 });
  const models: Array<{ run: RunSpec; model: Runner; result: Omit<RunResult, "imagesPerSecond" | "imagesPerSecondRange"> }> = [];
  let baselineFlops = 0;
  let backendInfo = "";
  for (const [r, run] of runs.entries()) {
    const { compiled, dir } = compileToDir(spec, run.method, run.upsilon, run.threshold);
    const model = await loadRunner(dir, weightBytes, args);
    rmSync(dir, { recursive: true, force: true });
    backendInfo = model.info;
    const plan = compiled.plan;
    const layers = plan.blocks.filter((b) => /^layer\.\d+$/.test(b.name));
    if (layers.length !== config.depth) throw new Error(`internal: the plan has ${layers.length} encoder blocks, the config ${config.depth}`);
    if (run.part === "baseline") baselineFlops = plan.flops.perBatch;
    const predictions: number[] = [];
    let correct = 0;
    for (let s = 0; s < steps; s++) {
      const b = Math.min(args.batch, count - s * args.batch);
      const pixels = tf.tensor4d(data.images.subarray(s * args.batch * per, (s * args.batch + b) * per), [b, 1, MNIST_SIZE, MNIST_SIZE]);
      const out = await model.run({ pixels });
      const pred = argmaxRows(out.logits!.dataSync() as Float32Array, config.classes);
      tf.dispose([pixels, ...Object.values(out)]);
      for (let i = 0; i < b; i++) {
        predictions.push(pred[i]!);
        if (pred[i] === data.labels[s * args.batch + i]) correct++;
      }
      const label = `${r + 1}/${runs.length} ${run.method.label}${run.upsilon > 0 ? ` Υ=${run.upsilon}` : ""}${run.threshold > 0 ? ` thr=${run.threshold}` : ""}`;
      progress.update(r * steps + s + 1, label, [s * args.batch + b, count], `acc ${pct(correct / (s * args.batch + b))}%`, s + 1 === steps);
    }
    models.push({
      run,
      model,
      result: {
        method: run.method.id,
        label: run.method.label,
        upsilon: run.upsilon,
        threshold: run.threshold,
        part: run.part,
        tokens: layers.map((l) => l.tokensOut ?? 0),
        tokensLast: layers[layers.length - 1]!.tokensOut ?? 0,
        flopsPerImage: plan.flops.perBatch,
        flopsRatio: 0,
        accuracy: correct / count,
        correct,
        images: count,
        predictions: predictions.join(""),
      },
    });
  }
  progress.finish();
  for (const m of models) m.result.flopsRatio = baselineFlops / m.result.flopsPerImage;

  // 2. Speed: the same fixed batch through every model, interleaved over rounds.
  const timingIndices = Array.from({ length: args.batch }, (_, i) => Math.floor((i * count) / args.batch));
  const timingPixels = tf.tensor4d(gatherBatch({ images: data.images, labels: data.labels, count } as MnistSplit, timingIndices).images, [args.batch, 1, MNIST_SIZE, MNIST_SIZE]);
  const runOnce = async (model: Runner) => {
    const out = await model.run({ pixels: timingPixels });
    await out.logits!.data();
    tf.dispose(Object.values(out));
  };
  const repeats = 2;
  console.error(`timing: ${models.length} models, ${args.rounds} interleaved round(s) of ${repeats} batches of ${args.batch} each, after a warm-up`);
  for (const m of models) await runOnce(m.model);
  const speeds = models.map(() => [] as number[]);
  const timing = new Progress({ total: args.rounds * models.length, logEverySeconds: 15 });
  for (let round = 0; round < args.rounds; round++) {
    for (let j = 0; j < models.length; j++) {
      // Rotate the order each round so no model always runs right after the same neighbour.
      const i = (j + round * Math.ceil(models.length / args.rounds)) % models.length;
      const start = performance.now();
      for (let k = 0; k < repeats; k++) await runOnce(models[i]!.model);
      speeds[i]!.push((repeats * args.batch) / ((performance.now() - start) / 1000));
      timing.update(round * models.length + j + 1, `timing round ${round + 1}/${args.rounds}`, [j + 1, models.length], "", j + 1 === models.length);
    }
  }
  timing.finish();
  timingPixels.dispose();
  const results: RunResult[] = models.map((m, i) => ({
    ...m.result,
    imagesPerSecond: median(speeds[i]!),
    imagesPerSecondRange: [Math.min(...speeds[i]!), Math.max(...speeds[i]!)],
  }));
  const backendName = args.backend === "onnxruntime" ? "onnxruntime" : tf.getBackend();

  // 3. Redundancy per block (Figure 3), eager forward pass of the unmerged model.
  const hf = parseSafetensors(new Uint8Array(weightBytes), args.weights);
  const named = isHfVit(hf.keys()) ? fromHfVit(hf) : hf;
  const params = new Map([...named].map(([k, v]) => [k, tf.tensor(v.data, v.shape, "float32")]));
  const analysisProgress = new Progress({ total: count, logEverySeconds: 15 });
  const profile: RedundancyProfile = redundancyProfile(config, params, data.images, count, {
    batch: args.batch,
    onBatch: (done) => analysisProgress.update(done, "redundancy S, C", [done, count], "", done === count),
  });
  analysisProgress.finish();
  tf.dispose([...params.values()]);

  // 4. Which patches merged: ToMe vs Turbo S1 at the same Υ.
  const tome = (u: number, t = 0) => results.find((r) => r.method === "tome" && r.upsilon === u && r.threshold === t)!;
  const base = results.find((r) => r.method === "none")!;
  const pictureUpsilon = args.pictureUpsilon ?? pickPictureUpsilon(args.upsilons, tome);
  const pictureIndices = PICTURE_DIGITS.map((d) => d * 200 + 7);
  const picture = gatherBatch(test, pictureIndices);
  const columns = pictureIndices.map((j, i) => `test #${j}: ${picture.labels[i]}`);
  const rows: string[] = ["input"];
  const panels: MergePanel[] = inputPanels(picture.images, pictureIndices.length, "input", columns);
  for (const method of [mergeMethods.find((m) => m.id === "tome")!, mergeMethods.find((m) => m.id === "turbo-s1")!]) {
    const { dir } = compileToDir(spec, method, pictureUpsilon, 0, { trackSources: true });
    const model = await loadRunner(dir, weightBytes, args);
    rmSync(dir, { recursive: true, force: true });
    const pixels = tf.tensor4d(picture.images, [pictureIndices.length, 1, MNIST_SIZE, MNIST_SIZE]);
    const out = await model.run({ pixels });
    const shape = out.sources!.shape as [number, number, number];
    const sources = out.sources!.dataSync();
    const preds = argmaxRows(out.logits!.dataSync() as Float32Array, config.classes);
    tf.dispose([pixels, ...Object.values(out)]);
    await model.dispose();
    const row = `${method.label}, Υ = ${pictureUpsilon}: ${shape[1]} tokens left`;
    rows.push(row);
    panels.push(...mergePanels(sources, shape, picture.images, config.patch, row, columns));
    console.error(`merges.png: ${method.label} Υ=${pictureUpsilon} predicts ${preds.join(",")} for ${Array.from(picture.labels).join(",")}`);
  }

  // 5. Files.
  const resultsDir = join(args.out, "results");
  mkdirSync(resultsDir, { recursive: true });
  const point = (r: RunResult) => ({ method: r.label, upsilon: r.upsilon, threshold: r.threshold, accuracy: 100 * r.accuracy, imagesPerSecond: r.imagesPerSecond, flopsFraction: 1 / r.flopsRatio });
  const subtitle = `${count} MNIST test images, ${backendName}, batch ${args.batch}`;
  await renderPng(
    speedSpec(
      results.filter((r) => r.part === "sweep").map(point),
      point(base),
      `Accuracy vs speed, Υ = ${args.upsilons.join(", ")} (${subtitle})`,
      mergeMethods.map((m) => m.label),
    ),
    join(resultsDir, "accuracy_vs_speed.png"),
  );
  await renderPng(redundancySpec(profile.blocks, `Redundancy per block, unmerged model (${count} test images)`), join(resultsDir, "redundancy.png"));
  await renderPng(
    mergeSpec(panels, MNIST_SIZE, `Patches merged into one final token share a colour (grey: never merged); bright = ink`, rows, columns),
    join(resultsDir, "merges.png"),
    1,
  );

  const seconds = (performance.now() - t0) / 1000;
  const command = `npx tsx examples/vit/eval.ts${argv.length > 0 ? ` ${argv.join(" ")}` : ""}`;
  const record = {
    command,
    date: started.toISOString(),
    seconds,
    weights: { path: args.weights, sha256: weightsSha },
    config,
    configFrom,
    backend: backendName,
    backendInfo,
    batch: args.batch,
    images: count,
    split: args.quick ? "every 4th test image (quick)" : "the full test split",
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? "?", loadavgStart: loadAvgStart, loadavgEnd: loadavg(), node: process.version },
    timing: { rounds: args.rounds, batchesPerRound: repeats, batch: args.batch },
    semanticOnlyAlpha: SEMANTIC_ONLY_ALPHA,
    pictureUpsilon,
    pictureIndices,
    methods: allMethods.map((m) => ({ id: m.id, label: m.label, rule: m.rule, options: m.options(16, 0) ?? null })),
    redundancy: profile,
    runs: results,
  };
  writeFileSync(join(resultsDir, "results.json"), `${JSON.stringify(record, null, 1)}\n`);
  writeFileSync(join(args.out, "RESULTS.md"), resultsMarkdown(record, args, results, profile, relative(args.out, resultsDir) || "."));
  if (args.readme !== "") {
    updateReadme(args.readme, readmeBlock(record, args, results));
    console.error(`updated the MNIST results block of ${args.readme}`);
  }
  console.error(`wrote ${join(args.out, "RESULTS.md")} and ${resultsDir}/{results.json,accuracy_vs_speed.png,redundancy.png,merges.png} in ${formatDuration(seconds)}`);
  for (const m of models) await m.model.dispose();
  console.log(headline(args.upsilons, results).join("\n"));
  return 0;
}

/**
 * The picture's Υ: the largest swept Υ that still leaves at least 16 tokens
 * after the last block (few enough groups to tell apart, while the methods
 * still choose different tokens), else the smallest swept Υ.
 */
function pickPictureUpsilon(upsilons: readonly number[], tome: (u: number) => RunResult): number {
  const ok = upsilons.filter((u) => tome(u).tokensLast >= 16);
  return ok.length > 0 ? ok[ok.length - 1]! : upsilons[0]!;
}

/** Whether every block merges all of its A half but the class token (r_ℓ = ⌊(N_ℓ − 1)/2⌋): then E chooses nothing. */
function saturated(r: RunResult, tokens0: number): boolean {
  let n = tokens0;
  for (const next of r.tokens) {
    if (n - next !== Math.floor((n - 1) / 2)) return false;
    n = next;
  }
  return true;
}

function find(results: readonly RunResult[], method: MethodId, upsilon: number, threshold = 0): RunResult | undefined {
  return results.find((r) => r.method === method && r.upsilon === upsilon && r.threshold === threshold);
}

/** Paired comparison on the same images: a right where b is wrong, and the reverse. */
function paired(a: RunResult, b: RunResult, labels: readonly number[]): { won: number; lost: number; p: number } {
  let won = 0;
  let lost = 0;
  for (let i = 0; i < labels.length; i++) {
    const ra = Number(a.predictions[i]) === labels[i];
    const rb = Number(b.predictions[i]) === labels[i];
    if (ra && !rb) won++;
    if (rb && !ra) lost++;
  }
  return { won, lost, p: signTestP(won, lost) };
}

function headline(upsilons: readonly number[], results: readonly RunResult[]): string[] {
  const base = find(results, "none", 0)!;
  const lines = [`no merging: ${pct(base.accuracy)}%  ${base.imagesPerSecond.toFixed(0)} img/s`];
  for (const u of upsilons) {
    const parts = mergeMethods.map((m) => {
      const r = find(results, m.id, u)!;
      return `${m.label} ${pct(r.accuracy)}%`;
    });
    const r = find(results, "turbo-s1", u)!;
    lines.push(`Υ=${u} (${r.tokensLast} tokens, FLOPs ÷${r.flopsRatio.toFixed(2)}, ~${r.imagesPerSecond.toFixed(0)} img/s): ${parts.join("  ")}`);
  }
  return lines;
}

interface RecordLike {
  command: string;
  date: string;
  seconds: number;
  weights: { path: string; sha256: string };
  config: VitConfig;
  configFrom: string;
  backend: string;
  backendInfo: string;
  batch: number;
  images: number;
  split: string;
  machine: { cpus: number; cpu: string; loadavgStart: number[]; loadavgEnd: number[]; node: string };
  timing: { rounds: number; batchesPerRound: number; batch: number };
  pictureUpsilon: number;
}

function resultsMarkdown(rec: RecordLike, args: Args, results: readonly RunResult[], profile: RedundancyProfile, dir: string): string {
  const { test } = loadMnist();
  const indices = Array.from({ length: rec.images }, (_, i) => (args.quick ? 4 * i : i));
  const labels = indices.map((i) => test.labels[i]!);
  const base = find(results, "none", 0)!;
  const ups = args.upsilons;
  const speedup = (r: RunResult) => r.imagesPerSecond / base.imagesPerSecond;
  const L: string[] = [];
  const c = rec.config;
  L.push("# MNIST: Turbo vs ToMe on the trained ViT");
  L.push("");
  L.push(`*Generated by \`${rec.command}\` on ${rec.date.slice(0, 16).replace("T", " ")} UTC in ${formatDuration(rec.seconds)}; do not edit by hand, rerun the command.*`);
  L.push("");
  L.push(
    `- **Model**: ViT \`${c.name}\` (${c.image}×${c.image}, patch ${c.patch} → ${vitDims(c).tokens} tokens, width ${c.dim}, ${c.depth} blocks, ${c.heads} heads, MLP ×${c.mlpRatio}), config from ${rec.configFrom}; weights \`${rec.weights.path}\` (sha256 ${rec.weights.sha256.slice(0, 16)}…).`,
  );
  L.push(`- **Data**: ${rec.images} MNIST test images (${rec.split}; examples/vit/mnist_data.ts: the last 200 of each digit). Accuracy is deterministic: a rerun gives the same numbers.`);
  L.push(`- **Compiled** with \`compile(mnist, { turbo })\` once per row and run with \`load()\` on the default backend: **${rec.backendInfo}**.`);
  L.push(
    `- **images/s**: one fixed batch of ${rec.timing.batch} test images, ${rec.timing.batchesPerRound} batches per model per round, ${rec.timing.rounds} rounds interleaved over all models (order rotated each round), after one warm-up batch each; the median round is shown, [min–max] in results/results.json. The machine (${rec.machine.cpus}× ${rec.machine.cpu}, Node ${rec.machine.node}) is shared: load average ${rec.machine.loadavgStart[0]!.toFixed(2)} at the start and ${rec.machine.loadavgEnd[0]!.toFixed(2)} at the end, so images/s is noisy (see the spread column); FLOPs are exact.`,
  );
  L.push(`- **FLOPs ÷** = FLOPs of the unmerged model ÷ FLOPs of this one, from the compiled plan (the speed-up if time followed FLOPs).`);
  L.push("");
  L.push("Methods (every one merges each chosen token into its most similar token of the other half, by the keys' cosine; they differ only in *which* tokens merge):");
  L.push("");
  L.push("| method | information degree E (highest E merges first) |");
  L.push("|---|---|");
  for (const m of mergeMethods) L.push(`| ${m.label} | ${m.rule} |`);
  L.push("");
  L.push(
    `"Semantic only" has no fusion of its own in turbograph: it is S1 with α = ${SEMANTIC_ONLY_ALPHA}, so α·c·I (≈ 1500 for an average token) dominates R ∈ [−1, 1] and R only orders tokens whose class attention differs by less than 2/(α·c) ≈ 7·10⁻⁶.`,
  );
  L.push("");

  // Headline.
  L.push("## Accuracy at equal Υ (equal FLOPs)");
  L.push("");
  L.push(`No merging: **${pct(base.accuracy)} %** (${base.correct}/${base.images}), ${base.imagesPerSecond.toFixed(1)} images/s.`);
  L.push("");
  L.push(`| Υ | tokens after last block | FLOPs ÷ | ${mergeMethods.map((m) => m.label).join(" | ")} | Turbo S1 − ToMe | S1 right & ToMe wrong / reverse (p) |`);
  L.push(`|---|---|---|${mergeMethods.map(() => "---").join("|")}|---|---|`);
  for (const u of ups) {
    const s1 = find(results, "turbo-s1", u)!;
    const tm = find(results, "tome", u)!;
    const best = Math.max(...mergeMethods.map((m) => find(results, m.id, u)!.accuracy));
    const cells = mergeMethods.map((m) => {
      const r = find(results, m.id, u)!;
      const text = `${pct(r.accuracy)}`;
      return r.accuracy === best ? `**${text}**` : text;
    });
    const pr = paired(s1, tm, labels);
    const d = 100 * (s1.accuracy - tm.accuracy);
    L.push(`| ${u} | ${s1.tokensLast} | ${s1.flopsRatio.toFixed(2)} | ${cells.join(" | ")} | ${d >= 0 ? "+" : ""}${d.toFixed(2)} | ${pr.won} / ${pr.lost} (${pr.p < 0.001 ? "<0.001" : pr.p.toFixed(3)}) |`);
  }
  L.push("");
  L.push("Accuracies in %; bold: the best method at that Υ. The last column counts the test images Turbo S1 gets right and ToMe wrong, and the reverse; p is McNemar's exact two-sided test of those counts (a small p means the difference is not chance).");
  L.push("");

  // Verdict, computed.
  L.push("### What the table says");
  L.push("");
  for (const line of verdict(ups, results, base, labels, c.dim)) L.push(`- ${line}`);
  L.push("");

  // Full table.
  L.push("## Every run");
  L.push("");
  L.push("| method | Υ | threshold | tokens after each block | tokens after last block | FLOPs ÷ | images/s [min–max] | measured speed-up | accuracy % |");
  L.push("|---|---|---|---|---|---|---|---|---|");
  for (const r of results) {
    L.push(
      `| ${r.label} | ${r.upsilon} | ${r.threshold} | ${r.tokens.join(" → ")} | ${r.tokensLast} | ${r.flopsRatio.toFixed(2)} | ${r.imagesPerSecond.toFixed(1)} [${r.imagesPerSecondRange[0].toFixed(0)}–${r.imagesPerSecondRange[1].toFixed(0)}] | ${speedup(r).toFixed(2)}× | ${pct(r.accuracy)} |`,
    );
  }
  L.push("");

  // Threshold ablation.
  const top = ups.slice(-2);
  L.push(`## Threshold ablation (the paper's Table 9) at Υ = ${top.join(" and ")}`);
  L.push("");
  L.push("The threshold is a token floor: no block takes the sequence below it (r_ℓ = min(Υ, ⌊(N_ℓ − 1)/2⌋, max(0, N_ℓ − threshold))), so a higher threshold merges less in the last blocks.");
  L.push("");
  L.push(`| Υ | threshold | tokens after last block | FLOPs ÷ | ${ABLATION_METHODS.map((id) => allMethods.find((m) => m.id === id)!.label).join(" | ")} | images/s (${allMethods.find((m) => m.id === ABLATION_METHODS[1])!.label}) |`);
  L.push(`|---|---|---|---|${ABLATION_METHODS.map(() => "---").join("|")}|---|`);
  for (const u of top) {
    for (const t of [0, ...args.thresholds]) {
      const rs = ABLATION_METHODS.map((id) => find(results, id, u, t)!);
      L.push(`| ${u} | ${t === 0 ? "none" : t} | ${rs[0]!.tokensLast} | ${rs[0]!.flopsRatio.toFixed(2)} | ${rs.map((r) => pct(r.accuracy)).join(" | ")} | ${rs[rs.length - 1]!.imagesPerSecond.toFixed(1)} |`);
    }
  }
  L.push("");

  // Redundancy.
  L.push("## Redundancy per block (the paper's Figure 3)");
  L.push("");
  L.push(
    `Unmerged model, eager forward pass (examples/vit/redundancy.ts), mean over the ${profile.images} test images. S = mean over token pairs i < j of cos(x_i, x_j) of the block's output (all ${vitDims(c).tokens} tokens, class token included); C = share of the class token's attention (averaged over heads) held by its top ⌊n/4⌋ = ${Math.floor(vitDims(c).tokens / 4)} keys.`,
  );
  L.push("");
  L.push(`| block | ${profile.blocks.map((b) => b.block + 1).join(" | ")} |`);
  L.push(`|---|${profile.blocks.map(() => "---").join("|")}|`);
  L.push(`| S % | ${profile.blocks.map((b) => pct(b.S, 1)).join(" | ")} |`);
  L.push(`| C % | ${profile.blocks.map((b) => pct(b.C, 1)).join(" | ")} |`);
  L.push("");

  // Pictures.
  L.push("## Pictures");
  L.push("");
  L.push(`![accuracy vs images/s and vs FLOPs](${dir}/accuracy_vs_speed.png)`);
  L.push("");
  L.push(`![S and C per block](${dir}/redundancy.png)`);
  L.push("");
  L.push(
    `![merged patches, ToMe vs Turbo S1 at Υ = ${rec.pictureUpsilon}](${dir}/merges.png)`,
  );
  L.push("");
  L.push(
    `Merges at Υ = ${rec.pictureUpsilon} (the largest swept Υ that leaves at least 16 tokens, unless \`--picture-upsilon\` is given): each colour is one final token and the ${c.patch}×${c.patch} patches it stands for; grey patches were never merged; brightness is the digit's ink.`,
  );
  L.push("");
  return `${L.join("\n")}\n`;
}

const README_START = "<!-- mnist-results:start (written by examples/vit/eval.ts; do not edit by hand) -->";
const README_END = "<!-- mnist-results:end -->";

/** Replaces the block between the markers; the README must already have them. */
function updateReadme(path: string, block: string): void {
  const text = readFileSync(path, "utf8");
  const a = text.indexOf(README_START);
  const b = text.indexOf(README_END);
  if (a < 0 || b < a) throw new Error(`${path} has no "${README_START}" … "${README_END}" block to update; pass --readme "" to skip it`);
  writeFileSync(path, `${text.slice(0, a + README_START.length)}\n${block}${text.slice(b)}`);
}

/** The README's headline: accuracy per method and Υ, and the computed verdict. */
function readmeBlock(rec: RecordLike, args: Args, results: readonly RunResult[]): string {
  const base = find(results, "none", 0)!;
  const L: string[] = [];
  L.push(
    `${rec.images} test images, ${rec.backend} backend, batch ${rec.batch}; images/s of Turbo S1 (interleaved timing on a shared 2-core machine, noisy). No merging: **${pct(base.accuracy)} %**, ${base.imagesPerSecond.toFixed(0)} images/s.`,
  );
  L.push("");
  L.push(`| Υ | tokens left | FLOPs ÷ | images/s | ${mergeMethods.map((m) => m.label).join(" | ")} |`);
  L.push(`|---|---|---|---|${mergeMethods.map(() => "---").join("|")}|`);
  for (const u of args.upsilons) {
    const s1 = find(results, "turbo-s1", u)!;
    const accs = mergeMethods.map((m) => find(results, m.id, u)!.accuracy);
    const best = Math.max(...accs);
    L.push(`| ${u} | ${s1.tokensLast} | ${s1.flopsRatio.toFixed(2)} | ${s1.imagesPerSecond.toFixed(0)} | ${accs.map((a) => (a === best ? `**${pct(a)}**` : pct(a))).join(" | ")} |`);
  }
  L.push("");
  const { test } = loadMnist();
  const labels = Array.from({ length: rec.images }, (_, i) => test.labels[args.quick ? 4 * i : i]!);
  L.push(verdict(args.upsilons, results, base, labels, rec.config.dim)[0]!);
  L.push("");
  return `${L.join("\n")}`;
}

/** Sentences computed from the results: who wins at which Υ, and by how much. */
function verdict(ups: readonly number[], results: readonly RunResult[], base: RunResult, labels: readonly number[], width: number): string[] {
  const out: string[] = [];
  const rows = ups.map((u) => {
    const s1 = find(results, "turbo-s1", u)!;
    const s2 = find(results, "turbo-s2", u)!;
    const tm = find(results, "tome", u)!;
    const sem = find(results, "semantic", u)!;
    return { u, s1, s2, tm, sem, d: s1.accuracy - tm.accuracy, pr: paired(s1, tm, labels) };
  });
  const list = (xs: number[]) => (xs.length === 0 ? "none" : xs.map((x) => `Υ = ${x}`).join(", "));
  const better = rows.filter((r) => r.d > 0).map((r) => r.u);
  const worse = rows.filter((r) => r.d < 0).map((r) => r.u);
  const equal = rows.filter((r) => r.d === 0).map((r) => r.u);
  const significant = rows.filter((r) => r.pr.p < 0.05);
  out.push(
    `Turbo S1 is above ToMe at ${list(better)}, below at ${list(worse)}, equal at ${list(equal)}. ` +
      `The gap is significant (p < 0.05) at ${significant.length === 0 ? "no Υ" : significant.map((r) => `Υ = ${r.u} (${r.d > 0 ? "+" : ""}${(100 * r.d).toFixed(2)} points)`).join(", ")}.`,
  );
  const maxGain = rows.reduce((a, b) => (b.d > a.d ? b : a));
  const maxLoss = rows.reduce((a, b) => (b.d < a.d ? b : a));
  if (maxGain.d > 0) out.push(`Largest gain of Turbo S1 over ToMe: +${(100 * maxGain.d).toFixed(2)} points at Υ = ${maxGain.u} (${pct(maxGain.s1.accuracy)} % vs ${pct(maxGain.tm.accuracy)} %, ${maxGain.s1.tokensLast} tokens left).`);
  if (maxLoss.d < 0) out.push(`Largest loss of Turbo S1 against ToMe: ${(100 * maxLoss.d).toFixed(2)} points at Υ = ${maxLoss.u} (${pct(maxLoss.s1.accuracy)} % vs ${pct(maxLoss.tm.accuracy)} %).`);
  // Where Turbo stops winning: the first Υ (from small to large) after which it is never above again, or the first loss.
  const firstLoss = rows.find((r) => r.d < 0);
  if (firstLoss !== undefined) out.push(`The first Υ at which Turbo S1 falls below ToMe is Υ = ${firstLoss.u}.`);
  else out.push(`Turbo S1 is never below ToMe in this sweep.`);
  const within = (key: "s1" | "tm" | "s2" | "sem", pts: number) => {
    const ok = rows.filter((r) => base.accuracy - r[key].accuracy <= pts / 100);
    return ok.length === 0 ? "no swept Υ" : `Υ = ${ok[ok.length - 1]!.u} (FLOPs ÷${ok[ok.length - 1]![key].flopsRatio.toFixed(2)})`;
  };
  out.push(
    `Largest Υ within 1 point of no merging: ToMe ${within("tm", 1)}, Turbo S1 ${within("s1", 1)}, Turbo S2 ${within("s2", 1)}, semantic only ${within("sem", 1)}.`,
  );
  const semVsTome = rows.map((r) => r.sem.accuracy - r.tm.accuracy);
  const semBetter = rows.filter((r, i) => semVsTome[i]! > 0).map((r) => r.u);
  out.push(
    `Semantic value alone (no redundancy in E) is above ToMe at ${list(semBetter)} and below or equal at ${list(rows.filter((r, i) => semVsTome[i]! <= 0).map((r) => r.u))}; ` +
      `its accuracies ${rows.map((r) => `${pct(r.sem.accuracy, 1)}`).join(", ")} against ToMe's ${rows.map((r) => `${pct(r.tm.accuracy, 1)}`).join(", ")} (Υ = ${ups.join(", ")}).`,
  );
  const full = rows.filter((r) => saturated(r.s1, base.tokens[0]!));
  if (full.length > 0) {
    out.push(
      `At ${list(full.map((r) => r.u))} every block merges every token of its A half except the class token (r_ℓ = ⌊(N_ℓ − 1)/2⌋), so the information degree E chooses nothing and all methods merge the same tokens: their accuracies there are equal by construction, not by merit.`,
    );
  }
  const slower = results.filter((r) => r.part === "sweep" && r.imagesPerSecond < base.imagesPerSecond);
  const ratio = results.filter((r) => r.part === "sweep").map((r) => r.imagesPerSecond / base.imagesPerSecond / r.flopsRatio);
  out.push(
    `Measured speed-up ÷ FLOPs speed-up ranges from ${Math.min(...ratio).toFixed(2)} to ${Math.max(...ratio).toFixed(2)} over the sweep` +
      (slower.length > 0 ? `; ${slower.length} merged run(s) (${[...new Set(slower.map((r) => `Υ = ${r.upsilon}`))].join(", ")}) are even slower than no merging` : "") +
      `. FLOPs count the matmuls of the blocks; the merge itself (similarity matmul, top-k, gathers and scatters, and for Turbo the class-attention row) costs time that FLOPs do not show, and in a model this narrow (width ${width}) it is a large share of a block.`,
  );
  const s2VsS1 = rows.filter((r) => r.s2.accuracy > r.s1.accuracy).map((r) => r.u);
  out.push(`Turbo S2 is above Turbo S1 at ${list(s2VsS1)}.`);
  return out;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  console.error(`eval: error: ${(e as Error).stack ?? (e as Error).message}`);
  process.exitCode = 2;
}
