/**
 * The vision-language experiment (issue 13): does the text class token's
 * attention, as Turbo's semantic value, keep the tokens the question needs
 * when ToMe merges by redundancy alone?
 *
 *   npx tsx examples/vqa/experiment.ts [--arch single|dual] [--depth N] [--upsilons 4,8,…]
 *       [--pairs 2000] [--batch 100] [--rounds 5] [--scales 30] [--fusions S3,S4]
 *       [--skip 0,1] [--weights FILE] [--quick]
 *
 * Methods, each compiled once per Υ from examples/vqa/vqa.ts (`--arch dual`:
 * examples/vqa/dual.ts) with `compile(spec, { turbo })` and run with
 * `load()` on the default backend:
 *
 * - `none`: no merging;
 * - `tome`: α = 0 (redundancy alone);
 * - `turbo-visual`: α = 5 with the **image** class token's attention row
 *   (`semanticToken` = its position) — the visual-only semantic value;
 * - `turbo-text`: α = 5 with the **text** class token's row (position 0,
 *   what the compiler takes from the graph), at each scale c of `--scales`;
 * - `turbo-text-S3`, `turbo-text-S4`: the same row under the other fusion
 *   strategies of `--fusions` (spec/turbo.md; S4 with β = 0.5, γ = 0: the
 *   semantic weight halves with each later merging block), at the first c.
 *
 * In the dual-stream model only the image encoder merges and the text is
 * not in it, so there is no `turbo-text`: `turbo-visual` (the image class
 * token, position 0 of the image stream) runs at each scale instead. Its
 * results go to results/dual/ and RESULTS_dual.md. `--depth N` measures the
 * model trained with `train.ts --depth N` (weights/vqa[_dual]_d<N>), into
 * results[/dual]/d<N>/ and RESULTS[_dual]_d<N>.md. `--skip 0,1` keeps those
 * blocks (0-based) from merging in every method — the paper's "which blocks
 * merge" — into results…/skip0-1/ and RESULTS…_skip0-1.md. `--arch dual
 * --cross` measures fusion-layer merging instead: the image encoder merges
 * nothing, the context is merged by Υ after text.layer.0's cross-attention
 * (ToMe against Turbo with the text class token's cross-attention row),
 * into results/dual/cross/ and RESULTS_dual_cross.md; `--encoder-r N`
 * lets the image encoder merge N per block first (ToMe, in every method),
 * into results/dual/cross-rN/ and RESULTS_dual_cross_rN.md.
 *
 * Every method at a Υ has the same token schedule, so the same FLOPs (the
 * class-attention row Turbo adds is counted). Accuracy per question type on
 * the fixed test pairs (each pair asked every question), McNemar's exact
 * test against ToMe at the same Υ, FLOPs per sample from the plan, and
 * samples/s measured interleaved (rotating order, after warm-up, median of
 * `--rounds`). The defaults made the committed results. Writes results/results.json, results/record.json,
 * RESULTS.md, results/accuracy.png and results/merges.png.
 */

import * as tf from "@tensorflow/tfjs-core";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compile } from "../../compiler/compile.ts";
import type { Fusion, TurboOptions } from "../../compiler/passes/insert_turbo.ts";
import { load, parseSafetensors, type Model } from "../../runtime/mod.ts";
import { mergePanels } from "../vit/merge_picture.ts";
import { cssColor, mergeSpec, renderPng, type MergePanel } from "../vit/plots.ts";
import { Progress } from "../vit/progress.ts";
import { argmaxRows, median, signTestP } from "../vit/stats.ts";
import { ANSWERS, imageClsPosition, QUESTION_LENGTH, questionTypes, vqaConfig, vqaDims, vqaDualConfig, type Question, type VqaConfig } from "./config.ts";
import { loadMnist, makeBatch, PAIR_HEIGHT, PAIR_PIXELS, PAIR_WIDTH, TEST_PAIRS, testItems, testPairs, type VqaBatch } from "./data.ts";
import { analyseAttention, type BlockAnalysis } from "./attention.ts";
import dualSpec, { vqaDual } from "./dual.ts";
import spec, { vqa } from "./vqa.ts";

const here = new URL(".", import.meta.url).pathname;
const USAGE = "usage: experiment.ts [--arch single|dual] [--depth N] [--upsilons 4,8,…] [--pairs N] [--batch N] [--rounds N] [--scales 30,…] [--fusions S2,S3,S4] [--skip 0,1] [--cross [--encoder-r N]] [--weights FILE] [--quick]";

interface Method {
  id: string;
  label: string;
  turbo: (upsilon: number) => TurboOptions | undefined;
}

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      arch: { type: "string", default: "single" },
      depth: { type: "string" },
      upsilons: { type: "string", default: "4,8,12,16,24,32,49" },
      pairs: { type: "string", default: String(TEST_PAIRS) },
      batch: { type: "string", default: "100" },
      rounds: { type: "string", default: "5" },
      scales: { type: "string", default: "30,100" },
      fusions: { type: "string", default: "" },
      skip: { type: "string", default: "" },
      cross: { type: "boolean", default: false },
      "encoder-r": { type: "string", default: "0" },
      weights: { type: "string" },
      quick: { type: "boolean", default: false },
    },
  });
  const ints = (k: "upsilons" | "scales") => values[k]!.split(",").map((x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${k}: "${x}" is not a positive integer\n${USAGE}`);
    return n;
  });
  const int = (k: "pairs" | "batch" | "rounds" | "depth") => {
    const n = Number(values[k]);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${k} must be a positive integer, not "${values[k]}"\n${USAGE}`);
    return n;
  };
  const quick = values.quick === true;
  const arch = values.arch;
  if (arch !== "single" && arch !== "dual") throw new Error(`--arch must be single or dual, not "${arch}"\n${USAGE}`);
  const depth = values.depth === undefined ? undefined : int("depth");
  const blocks = depth ?? (arch === "dual" ? vqaDualConfig.depth : vqaConfig.depth);
  const skip = values.skip === "" ? [] : values.skip!.split(",").map((x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n < 0 || n >= blocks) throw new Error(`--skip: "${x}" is not a block index of this model (0 to ${blocks - 1})\n${USAGE}`);
    return n;
  });
  if (values.cross === true && arch !== "dual") throw new Error(`--cross needs --arch dual (fusion-layer merging merges the context of a cross-attention)\n${USAGE}`);
  const encoderR = Number(values["encoder-r"]);
  if (!Number.isInteger(encoderR) || encoderR < 0) throw new Error(`--encoder-r must be a non-negative integer, not "${values["encoder-r"]}"\n${USAGE}`);
  if (encoderR > 0 && values.cross !== true) throw new Error(`--encoder-r goes with --cross\n${USAGE}`);
  const a = architecture(arch, depth, skip, values.cross === true ? encoderR : undefined);
  const fusions = values.fusions === "" ? [] : values.fusions!.split(",");
  for (const f of fusions) if (!["S2", "S3", "S4"].includes(f)) throw new Error(`--fusions: "${f}" is not one of S2, S3, S4 (S1 is every other Turbo method)\n${USAGE}`);
  return { arch: a, upsilons: ints("upsilons"), scales: ints("scales"), fusions: fusions as Fusion[], skip, pairs: quick ? 200 : int("pairs"), batch: int("batch"), rounds: quick ? 2 : int("rounds"), weights: values.weights ?? join(here, a.weights), quick };
}

/** What differs between the two architectures here. */
interface Arch {
  id: "single" | "dual";
  config: VqaConfig;
  spec: typeof spec;
  weights: string;
  /** Where results/*.json and the pictures go, and the report's name. */
  results: string;
  report: string;
  /** Position of the first image patch in the merged stream. */
  firstPatch: number;
  /** Merged blocks in the plan. */
  layer: RegExp;
  /** The unprotected tokens entering the first merge. */
  mergeable: number;
  model: string;
  /** Fusion-layer merging (dual only): the context merges after text.layer.0's cross-attention, the image encoder by this r per block (ToMe) first; undefined: no fusion-layer merging. */
  cross: number | undefined;
}

const dims = vqaDims(vqaConfig);

/** The architecture measured, at its own depth or at `depth` (image) blocks, with the blocks of `skip` never merging. */
function architecture(id: "single" | "dual", depth: number | undefined, skip: readonly number[], cross: number | undefined): Arch {
  let arch = architectureAt(id, depth);
  if (cross !== undefined) {
    const tag = cross === 0 ? "cross" : `cross-r${cross}`;
    arch = {
      ...arch, cross, results: `${arch.results}/${tag}`, report: arch.report.replace(/\.md$/, `_${tag.replace("-", "_")}.md`),
      model: `${arch.model} Fusion-layer merging (--cross): ${cross === 0 ? "here the image encoder merges nothing" : `the image encoder first merges ${cross} tokens per block by ToMe (α = 0) in every method (--encoder-r ${cross})`}; after text.layer.0's cross-attention the image tokens are merged by Υ (the image class token protected), and text.layer.1's cross-attention reads what is left, with their sizes.`,
    };
  }
  if (skip.length === 0) return arch;
  const tag = `skip${skip.join("-")}`;
  return { ...arch, results: `${arch.results}/${tag}`, report: arch.report.replace(/\.md$/, `_${tag}.md`), model: `${arch.model} Block${skip.length > 1 ? "s" : ""} ${skip.join(", ")} never merge${skip.length > 1 ? "" : "s"} (--skip), in every method.` };
}

function architectureAt(id: "single" | "dual", depth?: number): Arch {
  const d = depth === undefined ? "" : `_d${depth}`;
  const flag = depth === undefined ? "" : ` --depth ${depth}`;
  if (id === "dual") {
    const c = depth === undefined ? vqaDualConfig : { ...vqaDualConfig, name: `${vqaDualConfig.name}-d${depth}`, depth };
    return {
      id, cross: undefined, config: c, spec: depth === undefined ? dualSpec : vqaDual(c), weights: `weights/vqa_dual${d}.safetensors`, results: `results/dual${depth === undefined ? "" : `/d${depth}`}`, report: `RESULTS_dual${d}.md`, firstPatch: 1, layer: /^image\.layer\.\d+$/, mergeable: dims.patches,
      model: `dual-stream (BLIP-style), an image encoder over [image class token, 98 patches of 4×4] (${c.depth} blocks of width ${c.dim}) whose final tokens the ${c.fusion} blocks of a text encoder over [text class token, 5 question words] cross-attend to, with the merged tokens' sizes; trained by examples/vqa/train.ts --arch dual${flag} (weights/vqa_dual${d}.safetensors.json). The image class token is protected; only image patches merge, in the image encoder, which never sees the question.`,
    };
  }
  const c = depth === undefined ? vqaConfig : { ...vqaConfig, name: `${vqaConfig.name}-d${depth}`, depth };
  return {
    id, cross: undefined, config: c, spec: depth === undefined ? spec : vqa(c), weights: `weights/vqa${d}.safetensors`, results: `results${depth === undefined ? "" : `/d${depth}`}`, report: `RESULTS${d}.md`, firstPatch: dims.textTokens + 1, layer: /^layer\.\d+$/, mergeable: dims.patches,
    model: `single-stream, [text class token, 5 question words, image class token, 98 patches of 4×4] = 105 tokens, ${c.depth} blocks of width ${c.dim}; trained by examples/vqa/train.ts${flag} (weights/vqa${d}.safetensors.json). The first 7 tokens are protected (found by the compiler); only image patches merge.`,
  };
}

function methods(arch: Arch, scales: readonly number[], fusions: readonly Fusion[]): Method[] {
  if (arch.cross !== undefined) {
    // ToMe in the encoder for every method (α = 0 there), so only the context merge differs.
    const encoder = { r: arch.cross };
    return [
      { id: "none", label: "no merging", turbo: () => undefined },
      { id: "tome", label: "ToMe (α = 0)", turbo: (u) => ({ ...encoder, alpha: 0, cross: u }) },
      ...scales.map((c) => ({
        id: scales.length === 1 ? "turbo-text" : `turbo-text-c${c}`,
        label: `Turbo, text class token's cross-attention row${scales.length === 1 ? "" : `, c = ${c}`}`,
        turbo: (u: number): TurboOptions => ({ ...encoder, alpha: 0, crossAlpha: 5, scale: c, cross: u }),
      })),
    ];
  }
  if (arch.id === "dual") {
    return [
      { id: "none", label: "no merging", turbo: () => undefined },
      { id: "tome", label: "ToMe (α = 0)", turbo: (r) => ({ r, alpha: 0 }) },
      ...scales.map((c) => ({
        id: scales.length === 1 ? "turbo-visual" : `turbo-visual-c${c}`,
        label: `Turbo, image class token${scales.length === 1 ? "" : `, c = ${c}`}`,
        turbo: (r: number) => ({ r, alpha: 5, scale: c }),
      })),
    ];
  }
  const visual = imageClsPosition(vqaConfig);
  return [
    { id: "none", label: "no merging", turbo: () => undefined },
    { id: "tome", label: "ToMe (α = 0)", turbo: (r) => ({ r, alpha: 0 }) },
    { id: "turbo-visual", label: "Turbo, image class token", turbo: (r) => ({ r, alpha: 5, semanticToken: visual }) },
    ...scales.map((c) => ({
      id: scales.length === 1 ? "turbo-text" : `turbo-text-c${c}`,
      label: `Turbo, text class token${scales.length === 1 ? "" : `, c = ${c}`}`,
      turbo: (r: number) => ({ r, alpha: 5, scale: c }),
    })),
    ...fusions.map((f) => ({
      id: `turbo-text-${f}`,
      label: `Turbo, text class token, ${f}${f === "S4" ? " (β = 0.5, γ = 0)" : ""}`,
      turbo: (r: number): TurboOptions => ({ r, alpha: 5, scale: scales[0]!, fusion: f, ...(f === "S4" ? { beta: 0.5, gamma: 0 } : {}) }),
    })),
  ];
}

interface Row {
  method: string;
  upsilon: number;
  question: Question | "all";
  accuracy: number;
  n: number;
  gflops: number;
  images_per_s: number;
  p_vs_tome: number | null;
}

async function loadCompiled(arch: Arch, turbo: TurboOptions | undefined, weightBytes: Uint8Array, weightsPath: string) {
  const compiled = compile(arch.spec, { source: "examples/vqa/experiment.ts", ...(turbo === undefined ? {} : { turbo }) });
  const dir = mkdtempSync(join(tmpdir(), "turbograph-vqa-"));
  writeFileSync(join(dir, "model.mjs"), compiled.module.js);
  const model = await load(dir, { weights: { safetensors: new Uint8Array(weightBytes), source: weightsPath } });
  rmSync(dir, { recursive: true, force: true });
  return { compiled, model };
}

function inputs(b: VqaBatch): { question: tf.Tensor2D; pixels: tf.Tensor4D } {
  return { question: tf.tensor2d(b.question, [b.count, QUESTION_LENGTH], "int32"), pixels: tf.tensor4d(b.pixels, [b.count, 1, PAIR_HEIGHT, PAIR_WIDTH]) };
}

const pct = (v: number, d = 1) => (100 * v).toFixed(d);

async function main(argv: string[]): Promise<number> {
  const o = parse(argv);
  const t0 = performance.now();
  if (!existsSync(o.weights)) throw new Error(`weights "${o.weights}" not found; train them with examples/vqa/train.ts or pass --weights`);
  const weightBytes = readFileSync(o.weights);
  const sha = createHash("sha256").update(weightBytes).digest("hex");
  const loadStart = loadavg();
  const { test } = loadMnist();
  const items = testItems(test, o.pairs);
  const batches: VqaBatch[] = [];
  for (let i = 0; i < items.length; i += o.batch) batches.push(makeBatch(test, items.slice(i, i + o.batch)));
  const all = batches.flatMap((b) => b.types);
  const answers = batches.flatMap((b) => Array.from(b.answers));
  const ms = methods(o.arch, o.scales, o.fusions).map((m) => ({ ...m, turbo: (r: number) => { const t = m.turbo(r); return t === undefined || o.skip.length === 0 ? t : { ...t, skip: o.skip }; } }));
  const runs = [{ method: ms[0]!, upsilon: 0 }, ...o.upsilons.flatMap((upsilon) => ms.slice(1).map((method) => ({ method, upsilon })))];
  console.error(`experiment: ${runs.length} compiled models × ${items.length} samples (${o.pairs} test pairs × ${questionTypes.length} questions), batch ${o.batch}; weights ${o.weights} (${sha.slice(0, 12)})`);

  // 1. Accuracy of every model on every sample.
  const progress = new Progress({ total: runs.length * batches.length, logEverySeconds: 15 });
  const models: Array<{ run: (typeof runs)[number]; model: Model; correct: boolean[]; gflops: number; tokens: number[] }> = [];
  let backendInfo = "";
  for (const [r, run] of runs.entries()) {
    const { compiled, model } = await loadCompiled(o.arch, run.method.turbo(run.upsilon), weightBytes, o.weights);
    backendInfo = `${model.info.backend.name} (${model.info.backend.reason}${model.info.kernels.length > 0 ? `; turbograph kernels: ${model.info.kernels.join(", ")}` : ""})`;
    const correct: boolean[] = [];
    for (const [s, b] of batches.entries()) {
      const x = inputs(b);
      const out = model.run(x);
      const pred = argmaxRows(out.answer!.dataSync() as Float32Array, ANSWERS);
      tf.dispose([x.question, x.pixels, ...Object.values(out)]);
      pred.forEach((p, i) => correct.push(p === b.answers[i]));
      const hits = correct.filter(Boolean).length;
      progress.update(r * batches.length + s + 1, `${r + 1}/${runs.length} ${run.method.id}${run.upsilon > 0 ? ` Υ=${run.upsilon}` : ""}`, [correct.length, items.length], `acc ${pct(hits / correct.length, 2)}%`, s + 1 === batches.length);
    }
    const layers = compiled.plan.blocks.filter((b) => o.arch.layer.test(b.name));
    // With --cross, the image tokens the cross-attentions read: after the encoder, then after each context merge.
    const tokens = o.arch.cross !== undefined ? [layers.at(-1)?.tokensOut ?? dims.patches + 1, ...compiled.graph.nodes.filter((n) => n.op === "turbo_merge" && (compiled.graph.meta.get(n.id)?.scope ?? "").startsWith("text.")).map((n) => n.type.shape[1] as number)] : layers.map((l) => l.tokensOut ?? 0);
    models.push({ run, model, correct, gflops: compiled.plan.flops.perBatch / 1e9, tokens });
  }
  progress.finish();

  // 2. Speed: one fixed batch through every model, interleaved, order rotated each round.
  const timing = inputs(batches[0]!);
  const once = async (m: Model) => {
    const out = m.run(timing);
    await out.answer!.data();
    tf.dispose(Object.values(out));
  };
  const repeats = 2;
  for (const m of models) await once(m.model);
  const speeds = models.map(() => [] as number[]);
  const tp = new Progress({ total: o.rounds * models.length, logEverySeconds: 15 });
  for (let round = 0; round < o.rounds; round++) {
    for (let j = 0; j < models.length; j++) {
      const i = (j + round * Math.ceil(models.length / o.rounds)) % models.length;
      const start = performance.now();
      for (let k = 0; k < repeats; k++) await once(models[i]!.model);
      speeds[i]!.push((repeats * batches[0]!.count) / ((performance.now() - start) / 1000));
      tp.update(round * models.length + j + 1, `timing round ${round + 1}/${o.rounds}`, [j + 1, models.length], "", j + 1 === models.length);
    }
  }
  tp.finish();
  tf.dispose([timing.question, timing.pixels]);

  // 3. Rows: per question type and pooled, McNemar against ToMe at the same Υ.
  const rows: Row[] = [];
  const spread: Record<string, [number, number]> = {};
  for (const [i, m] of models.entries()) {
    const tome = models.find((x) => x.run.method.id === "tome" && x.run.upsilon === m.run.upsilon);
    const compare = tome !== undefined && m.run.method.id !== "tome" && m.run.method.id !== "none";
    spread[`${m.run.method.id}/${m.run.upsilon}`] = [Math.min(...speeds[i]!), Math.max(...speeds[i]!)];
    for (const question of [...questionTypes, "all"] as const) {
      const idx = all.flatMap((q, k) => (question === "all" || q === question ? [k] : []));
      const hits = idx.filter((k) => m.correct[k]).length;
      let p: number | null = null;
      if (compare) {
        const b = idx.filter((k) => m.correct[k] && !tome!.correct[k]).length;
        const c = idx.filter((k) => !m.correct[k] && tome!.correct[k]).length;
        p = signTestP(b, c);
      }
      rows.push({ method: m.run.method.id, upsilon: m.run.upsilon, question, accuracy: hits / idx.length, n: idx.length, gflops: Number(m.gflops.toFixed(6)), images_per_s: Number(median(speeds[i]!).toFixed(1)), p_vs_tome: p });
    }
  }
  for (const m of models) m.model.dispose();

  // 4. Merge pictures: the same test pairs under two questions, Turbo (text) against ToMe.
  const none = rows.find((r) => r.method === "none" && r.question === "all")!;
  const tomeAll = rows.filter((r) => r.method === "tome" && r.question === "all");
  const pictureUpsilon = (tomeAll.find((r) => none.accuracy - r.accuracy >= 0.05) ?? tomeAll.at(-1)!).upsilon;
  const main = mainMethod(ms);
  const pairs = testPairs(test, o.pairs).slice(0, 4);
  const panels: MergePanel[] = [];
  const columns = pairs.map(([l, r], k) => `pair ${k} (${test.labels[l]} | ${test.labels[r]})`);
  const pictureRows: string[] = ["input"];
  const inputBatch = makeBatch(test, pairs.map(([l, r]) => [l, r, "left"] as const));
  pairs.forEach((_, k) => panels.push({ row: "input", column: columns[k]!, colors: Array.from(inputBatch.pixels.subarray(k * PAIR_PIXELS, (k + 1) * PAIR_PIXELS), (v) => cssColor([v, v, v])) }));
  for (const method of [ms[1]!, main]) {
    const { model } = await loadCompiled(o.arch, { ...method.turbo(pictureUpsilon)!, trackSources: true }, weightBytes, o.weights);
    for (const q of ["left", "right"] as const) {
      const b = makeBatch(test, pairs.map(([l, r]) => [l, r, q] as const));
      const x = inputs(b);
      const out = model.run(x);
      const shape = out.sources!.shape as [number, number, number];
      const row = `${method.label}, Υ = ${pictureUpsilon}, question "${q}": ${shape[1]} tokens left`;
      pictureRows.push(row);
      panels.push(...mergePanels(out.sources!.dataSync() as Float32Array, shape, b.pixels, vqaConfig.patch, row, columns, { height: PAIR_HEIGHT, width: PAIR_WIDTH, firstPatch: o.arch.firstPatch }));
      tf.dispose([x.question, x.pixels, ...Object.values(out)]);
    }
    model.dispose();
  }

  // 5. Where the class tokens look, and how redundant the image tokens are (unmerged, eager).
  // (The dual-stream image encoder's class token is the only semantic source there; this table is the single-stream model's.)
  let analysis: BlockAnalysis[] = [];
  if (o.arch.id === "single") {
    const params = new Map([...parseSafetensors(weightBytes, o.weights)].map(([k, w]) => [k, tf.tensor(w.data, [...w.shape], "float32")]));
    analysis = analyseAttention(o.arch.config, params, test, testPairs(test, o.pairs).slice(0, Math.min(200, o.pairs)));
    tf.dispose([...params.values()]);
  }

  const results = join(here, o.arch.results);
  mkdirSync(results, { recursive: true });
  writeFileSync(join(results, "results.json"), `${JSON.stringify(rows, null, 1)}\n`);
  await renderPng(accuracySpec(rows, ms), join(results, "accuracy.png"));
  await renderPng(mergeSpec(panels, [PAIR_HEIGHT, PAIR_WIDTH], "Patches merged into one final token share a colour (grey: never merged); bright = ink", pictureRows, columns), join(results, "merges.png"));
  const record = {
    command: ["npx", "tsx", "examples/vqa/experiment.ts", ...argv].join(" "),
    architecture: o.arch.id, weights: { path: join("examples/vqa", o.arch.weights), sha256: sha },
    samples: items.length, pairs: o.pairs, batch: o.batch, rounds: o.rounds, repeatsPerRound: repeats,
    backend: backendInfo,
    tokens: Object.fromEntries(models.filter((m) => m.run.method.id === "tome" || m.run.method.id === "none").map((m) => [String(m.run.upsilon), m.tokens])),
    speedRange: spread, pictureUpsilon, analysisPairs: Math.min(200, o.pairs), analysis,
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? "?", node: process.version, loadavgStart: loadStart, loadavgEnd: loadavg() },
    seconds: Math.round((performance.now() - t0) / 1000), date: new Date().toISOString(),
  };
  writeFileSync(join(results, "record.json"), `${JSON.stringify(record, null, 2)}\n`);
  writeFileSync(join(here, o.arch.report), report(o.arch, rows, ms, record));
  console.log(`wrote ${join("examples/vqa", o.arch.results)}/{results.json,record.json,accuracy.png,merges.png} and examples/vqa/${o.arch.report} (${record.seconds} s)`);
  return 0;
}

function accuracySpec(rows: readonly Row[], ms: readonly Method[]) {
  const none = rows.filter((r) => r.method === "none");
  const values = [
    ...rows.filter((r) => r.method !== "none").map((r) => ({ ...r, label: ms.find((m) => m.id === r.method)!.label, accuracy: 100 * r.accuracy })),
    ...ms.slice(1).flatMap((m) => none.map((r) => ({ ...r, label: m.label, accuracy: 100 * r.accuracy }))),
  ];
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: "Two-digit MNIST VQA: accuracy against FLOPs per sample (each line starts at the unmerged model)",
    config: { font: "DejaVu Sans" },
    data: { values },
    facet: { column: { field: "question", type: "nominal", sort: [...questionTypes, "all"], title: "question" } },
    spec: {
      width: 200, height: 220,
      mark: { type: "line", point: true },
      encoding: {
        x: { field: "gflops", type: "quantitative", title: "GFLOPs per sample", scale: { zero: false, reverse: true } },
        y: { field: "accuracy", type: "quantitative", title: "accuracy (%)", scale: { zero: false } },
        color: { field: "label", type: "nominal", title: "method", sort: ms.slice(1).map((m) => m.label), legend: { labelLimit: 320, orient: "bottom", columns: 2 } },
        order: { field: "upsilon" },
      },
    },
  } as never;
}

/** The method the target is read for: the text class token's (single-stream), else the image class token's. */
function mainMethod(ms: readonly Method[]): Method {
  return ms.find((m) => m.id.startsWith("turbo-text")) ?? ms.find((m) => m.id.startsWith("turbo-visual"))!;
}

function report(arch: Arch, rows: readonly Row[], ms: readonly Method[], rec: { analysis: BlockAnalysis[]; analysisPairs: number; command: string; samples: number; pairs: number; backend: string; machine: { cpus: number; cpu: string; loadavgStart: number[]; loadavgEnd: number[] }; rounds: number; pictureUpsilon: number; seconds: number; tokens: Record<string, number[]> }): string {
  const get = (method: string, upsilon: number, question: string) => rows.find((r) => r.method === method && r.upsilon === upsilon && r.question === question);
  const none = get("none", 0, "all")!;
  const upsilons = [...new Set(rows.filter((r) => r.upsilon > 0).map((r) => r.upsilon))];
  const merged = ms.slice(1);
  const mainKind = mainMethod(ms).id.startsWith("turbo-text") ? "turbo-text" : "turbo-visual";
  const textIds = ms.filter((m) => m.id.startsWith(mainKind)).map((m) => m.id);
  const dual = arch.id === "dual";
  const fmtP = (p: number | null | undefined) => (p === null || p === undefined ? "—" : p < 1e-4 ? p.toExponential(1) : p.toFixed(4));
  const L: string[] = [];
  L.push(arch.cross !== undefined ? "# Two-digit MNIST VQA, dual-stream model, fusion-layer merging: Turbo's textual semantic value against ToMe" : dual ? "# Two-digit MNIST VQA, dual-stream model: Turbo's visual semantic value against ToMe" : "# Two-digit MNIST VQA: Turbo's textual semantic value against ToMe", "");
  L.push(`Generated by \`${rec.command}\` in ${rec.seconds} s; do not edit by hand. Data: \`${arch.results}/results.json\` (one row per method, Υ and question), \`${arch.results}/record.json\`.`, "");
  L.push(
    `- **Task**: two MNIST test digits side by side (28×56), ${rec.pairs} fixed pairs (examples/vqa/data.ts), each asked all four questions (left digit, right digit, larger digit, sum): ${rec.samples} samples; answers are 19 classes.`,
    `- **Model**: ${arch.model}`,
    arch.cross !== undefined
      ? `- **Methods** (same Υ ⇒ same token schedule and FLOPs): ToMe (α = 0); Turbo with the text class token's row in text.layer.0's cross-attention as semantic value (${textIds.join(", ")}). α = 5, fusion S1. The merge comes after the text has read the question, so it can depend on it. "Tokens" are the image tokens the cross-attentions read.`
      : dual
      ? `- **Methods** (same Υ ⇒ same token schedule and FLOPs): ToMe (α = 0); Turbo with the image class token's attention row as semantic value (${textIds.join(", ")}). α = 5, fusion S1. No method here can use the text: the image encoder runs before the question is read.`
      : `- **Methods** (same Υ ⇒ same token schedule and FLOPs): ToMe (α = 0); Turbo with the image class token's attention row as semantic value (visual-only); Turbo with the text class token's row (${textIds.join(", ")}). α = 5, fusion S1.`,
    `- **Speed**: samples/s on one fixed batch, ${rec.rounds} interleaved rounds (order rotated), median; backend ${rec.backend}; ${rec.machine.cpus}× ${rec.machine.cpu}, load average ${rec.machine.loadavgStart[0]!.toFixed(2)} → ${rec.machine.loadavgEnd[0]!.toFixed(2)}. p: McNemar's exact test against ToMe at the same Υ on the same samples.`,
    "",
  );
  L.push(`No merging: **${pct(none.accuracy, 2)} %** (${none.gflops.toFixed(4)} GFLOPs, ${none.images_per_s.toFixed(0)} samples/s); by question: ${questionTypes.map((q) => `${q} ${pct(get("none", 0, q)!.accuracy)} %`).join(", ")}.`, "");
  L.push("## All questions", "");
  L.push(`| Υ | tokens after each block | GFLOPs | ${merged.map((m) => m.label).join(" | ")} | p (${textIds[0]} vs ToMe) | samples/s (${merged.map((m) => m.id).join(" / ")}) |`);
  L.push(`|---|---|---|${merged.map(() => "---|").join("")}---|---|`);
  for (const u of upsilons) {
    const cells = merged.map((m) => get(m.id, u, "all")!);
    L.push(`| ${u} | ${rec.tokens[String(u)]?.join(" → ") ?? "?"} | ${cells[0]!.gflops.toFixed(4)} | ${cells.map((c) => `${pct(c.accuracy, 2)}`).join(" | ")} | ${fmtP(get(textIds[0]!, u, "all")!.p_vs_tome)} | ${cells.map((c) => c.images_per_s.toFixed(0)).join(" / ")} |`);
  }
  L.push("", "## By question", "");
  const compared = dual ? [textIds[0]!] : [textIds[0]!, "turbo-visual"];
  L.push(`| Υ | question | ${merged.map((m) => m.id).join(" | ")} | ${compared.map((id) => `p (${id} vs ToMe)`).join(" | ")} |`);
  L.push(`|---|---|${merged.map(() => "---|").join("")}${compared.map(() => "---|").join("")}`);
  for (const u of upsilons) {
    for (const q of questionTypes) {
      L.push(`| ${u} | ${q} | ${merged.map((m) => pct(get(m.id, u, q)!.accuracy)).join(" | ")} | ${compared.map((id) => fmtP(get(id, u, q)!.p_vs_tome)).join(" | ")} |`);
    }
  }
  // The issue's target, read off the rows.
  L.push("", "## The target", "");
  const tomeRows = upsilons.map((u) => get("tome", u, "all")!);
  const at = tomeRows.find((r) => none.accuracy - r.accuracy >= 0.05);
  if (at === undefined) {
    const cap = Math.floor(arch.mergeable / 2);
    const why = upsilons.at(-1)! >= cap
      ? `Υ = ${cap} is already the most the bipartite rule allows: every block merges every unprotected token of set A, so no larger Υ exists`
      : "extend --upsilons";
    L.push(`ToMe never loses 5 points at the Υ tried (largest: Υ = ${upsilons.at(-1)}, ${pct(none.accuracy - tomeRows.at(-1)!.accuracy, 2)} points down); the target (Turbo loses at most half as many points as ToMe where ToMe is ≥ 5 down) cannot be read on this model: ${why}.`);
  } else {
    if (at.upsilon >= Math.floor(arch.mergeable / 2)) L.push(`At Υ = ${at.upsilon} every block merges every unprotected token of set A (the bipartite cap), so every method merges the same tokens: no semantic value can change the merges there, and the comparison below is a tie by construction.`, "");
    for (const id of textIds) {
      const t = get(id, at.upsilon, "all")!;
      const [dTome, dText] = [none.accuracy - at.accuracy, none.accuracy - t.accuracy];
      const met = dText <= dTome / 2 && (t.p_vs_tome ?? 1) < 0.01;
      L.push(`At Υ = ${at.upsilon}, the first Υ where ToMe is ≥ 5 points down, ToMe loses **${pct(dTome, 2)}** points and ${id} **${pct(dText, 2)}** (p = ${fmtP(t.p_vs_tome)}): target (at most half as many, p < 0.01) **${met ? "met" : "not met"}**.`);
    }
  }
  L.push("", `![accuracy against FLOPs](${arch.results}/accuracy.png)`, "");
  if (rec.analysis.length > 0) {
  L.push("## Where the class tokens look (unmerged model)", "");
  L.push(`Mean over ${rec.analysisPairs} test pairs of each block's attention row (averaged over heads): the share on the text tokens, the image class token, and the patches of the left and right digit (left/right half of the image). R: ToMe's redundancy of the image tokens of A (best cosine of the keys with B), ρ: Spearman correlation between R and the text class token's attention over those tokens; ρ(I, I_left): between the text class token's attention over them under this question and under "left", on the same images (1: the semantic value ranks the image tokens alike whatever is asked).`, "");
  L.push("| question | block | text cls → text | → image cls | → left half | → right half | image cls → left | → right | R | ρ(R, I_text) | ρ(I, I_left) |");
  L.push("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const a of rec.analysis) {
    const f = (v: number) => v.toFixed(3);
    L.push(`| ${a.question} | ${a.block} | ${f(a.textCls.text)} | ${f(a.textCls.imageCls)} | ${f(a.textCls.leftHalf)} | ${f(a.textCls.rightHalf)} | ${f(a.imageCls.leftHalf)} | ${f(a.imageCls.rightHalf)} | ${a.redundancy.toFixed(3)} | ${a.rankCorrelation.toFixed(2)} | ${a.sameAsFirstQuestion.toFixed(2)} |`);
  }
  L.push("");
  }
  L.push(`## Which tokens survive`, "", `The same four test pairs asked "left" and "right", at Υ = ${rec.pictureUpsilon}: patches merged into one final token share a colour, grey patches are tokens never merged.${dual && arch.cross === undefined ? " In this model the merges cannot depend on the question." : ""}`, "", `![merges](${arch.results}/merges.png)`, "");
  return `${L.join("\n")}\n`;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  console.error(`experiment: error: ${(e as Error).message}`);
  process.exitCode = 2;
}
