/**
 * `npm start`: what turbograph is for, in about a minute. The MNIST ViT
 * trained here (examples/vit/weights/, 197 tokens like ViT-B/16) is compiled
 * three times — unmerged, with ToMe (α = 0) and with Turbo S1, both at the
 * same Υ, so the same FLOPs — then every compiled model runs the 2,000 test
 * digits on the default engine. It prints accuracy, the plan's FLOPs ratio
 * and the measured speed-up side by side, and draws which patches merged.
 *
 *   npx tsx examples/vit/demo.ts [--upsilon 32] [--backend auto|wasm|cpu|tensorflow] [--batch 64] [--rounds 5] [--out compiled/demo]
 *
 * Writes each compiled model (model.ts, model.mjs, plan.json, the IR) under
 * `--out`, and `merges.png` there. Speed: one fixed batch per model, rounds
 * interleaved with the order rotated each round, after a warm-up; the median
 * round and the range are shown with the machine's load average. The full
 * study (every Υ, significance tests, plots) is `examples/vit/eval.ts`.
 */

import * as tf from "@tensorflow/tfjs-core";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compile, type Compiled } from "../../compiler/compile.ts";
import type { TurboOptions } from "../../compiler/passes/insert_turbo.ts";
import { load, type BackendChoice, type Model } from "../../runtime/mod.ts";
import { vitConfigs, vitDims } from "./config.ts";
import { inputPanels, mergePanels } from "./merge_picture.ts";
import { gatherBatch, loadMnist, MNIST_SIZE } from "./mnist_data.ts";
import { mergeSpec, renderPng } from "./plots.ts";
import { Progress } from "./progress.ts";
import { mnist } from "./vit.ts";

const WEIGHTS = "examples/vit/weights/mnist_vit.safetensors";
/** Test digits drawn in merges.png: the 8th test image of each of these classes. */
const PICTURE_DIGITS = [0, 2, 3, 5, 7, 9];

interface Variant {
  id: string;
  label: string;
  turbo: TurboOptions | undefined;
}

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      upsilon: { type: "string", default: "32" },
      backend: { type: "string", default: "auto" },
      batch: { type: "string", default: "64" },
      rounds: { type: "string", default: "5" },
      out: { type: "string", default: "compiled/demo" },
    },
  });
  const int = (name: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} "${v}" must be an integer ≥ ${min}`);
    return n;
  };
  return {
    upsilon: int("upsilon", values.upsilon!, 1),
    backend: values.backend as BackendChoice,
    batch: int("batch", values.batch!, 1),
    rounds: int("rounds", values.rounds!, 1),
    out: values.out!,
  };
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function argmax(row: ArrayLike<number>, offset: number, classes: number): number {
  let best = 0;
  for (let k = 1; k < classes; k++) if (row[offset + k]! > row[offset + best]!) best = k;
  return best;
}

function writeCompiled(dir: string, c: Compiled): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "model.ts"), c.module.ts);
  writeFileSync(join(dir, "model.mjs"), c.module.js);
  writeFileSync(join(dir, "model.tir"), c.ir.final);
  writeFileSync(join(dir, "plan.json"), JSON.stringify(c.plan, null, 2) + "\n");
}

async function main(argv: string[]): Promise<number> {
  const args = parse(argv);
  const config = vitConfigs.mnist;
  const weights = { safetensors: new Uint8Array(readFileSync(WEIGHTS)), source: WEIGHTS };
  const u = args.upsilon;
  const variants: Variant[] = [
    { id: "unmerged", label: "no merging", turbo: undefined },
    { id: `tome-r${u}`, label: "ToMe (α = 0)", turbo: { r: u, alpha: 0 } },
    { id: `turbo-r${u}`, label: "Turbo S1 (α = 5)", turbo: { r: u, alpha: 5, scale: 30, fusion: "S1" } },
  ];

  console.log(`turbograph demo: the MNIST ViT trained in this repo (${WEIGHTS}), 197 tokens, width ${config.dim}, ${config.depth} blocks`);
  console.log(`1/4 compiling ${variants.length} models into ${args.out}/ (the same as \`npx tsx compiler/cli.ts examples/vit/vit.ts --model mnist --turbo r=${u},alpha=5 --out ${args.out}/turbo-r${u}\`)`);
  const models: { variant: Variant; compiled: Compiled; model: Model }[] = [];
  for (const variant of variants) {
    const compiled = compile(mnist, { source: "examples/vit/vit.ts", ...(variant.turbo === undefined ? {} : { turbo: variant.turbo }) });
    const dir = join(args.out, variant.id);
    writeCompiled(dir, compiled);
    models.push({ variant, compiled, model: await load(dir, { weights, backend: args.backend }) });
  }
  console.log(`    engine: ${models[0]!.model.info.backend.name} (${models[0]!.model.info.backend.reason})`);

  // 2. Accuracy on the whole test split.
  const { test } = loadMnist();
  const per = MNIST_SIZE * MNIST_SIZE;
  const steps = Math.ceil(test.count / args.batch);
  const accuracy: number[] = [];
  const progress = new Progress({ total: steps * models.length, logEverySeconds: 10 });
  for (const [m, { variant, model }] of models.entries()) {
    let correct = 0;
    for (let s = 0; s < steps; s++) {
      const b = Math.min(args.batch, test.count - s * args.batch);
      const pixels = tf.tensor4d(test.images.subarray(s * args.batch * per, (s * args.batch + b) * per), [b, 1, MNIST_SIZE, MNIST_SIZE]);
      const out = model.run({ pixels });
      const logits = await out.logits!.data();
      tf.dispose([pixels, ...Object.values(out)]);
      for (let i = 0; i < b; i++) if (argmax(logits, i * config.classes, config.classes) === test.labels[s * args.batch + i]) correct++;
      progress.update(m * steps + s + 1, `2/4 accuracy: ${variant.label}`, [s * args.batch + b, test.count], "", s + 1 === steps);
    }
    accuracy.push(correct / test.count);
  }
  progress.finish();

  // 3. Speed: one fixed batch per model, interleaved rounds, rotated order.
  const timing = gatherBatch(test, Array.from({ length: args.batch }, (_, i) => Math.floor((i * test.count) / args.batch)));
  const pixels = tf.tensor4d(timing.images, [args.batch, 1, MNIST_SIZE, MNIST_SIZE]);
  const once = async (model: Model) => {
    const out = model.run({ pixels });
    await out.logits!.data();
    tf.dispose(Object.values(out));
  };
  for (const { model } of models) await once(model);
  const load0 = loadavg()[0]!;
  const speeds = models.map(() => [] as number[]);
  const repeats = 2;
  const clock = new Progress({ total: args.rounds * models.length, logEverySeconds: 10 });
  for (let round = 0; round < args.rounds; round++) {
    for (let j = 0; j < models.length; j++) {
      const i = (j + round) % models.length;
      const start = performance.now();
      for (let k = 0; k < repeats; k++) await once(models[i]!.model);
      speeds[i]!.push((repeats * args.batch) / ((performance.now() - start) / 1000));
      clock.update(round * models.length + j + 1, `3/4 speed, round ${round + 1}/${args.rounds}`, [j + 1, models.length], "", j + 1 === models.length);
    }
  }
  clock.finish();
  pixels.dispose();
  const load1 = loadavg()[0]!;

  // 4. Which patches merged, for a few digits.
  const indices = PICTURE_DIGITS.map((d) => d * 200 + 7);
  const picture = gatherBatch(test, indices);
  const columns = indices.map((j, i) => `test #${j}: ${picture.labels[i]}`);
  const rows = ["input"];
  const panels = inputPanels(picture.images, indices.length, "input", columns);
  const picturePixels = tf.tensor4d(picture.images, [indices.length, 1, MNIST_SIZE, MNIST_SIZE]);
  for (const variant of variants.slice(1)) {
    const compiled = compile(mnist, { source: "examples/vit/vit.ts", turbo: { ...variant.turbo!, trackSources: true } });
    const dir = join(args.out, `${variant.id}-sources`);
    writeCompiled(dir, compiled);
    const model = await load(dir, { weights, backend: args.backend });
    const out = model.run({ pixels: picturePixels });
    const shape = out.sources!.shape as [number, number, number];
    const row = `${variant.label}, Υ = ${u}: ${shape[1]} tokens left`;
    rows.push(row);
    panels.push(...mergePanels(await out.sources!.data(), shape, picture.images, config.patch, row, columns));
    tf.dispose(Object.values(out));
    model.dispose();
  }
  picturePixels.dispose();
  const picturePath = join(args.out, "merges.png");
  process.stderr.write("4/4 drawing the merges\n");
  await renderPng(mergeSpec(panels, MNIST_SIZE, "Patches merged into one final token share a colour (grey: never merged)", rows, columns), picturePath, 1);

  // The table.
  const base = median(speeds[0]!);
  const header = ["model", "Υ", "tokens at the head", "FLOPs ÷", "accuracy", "images/s (median [min–max])", "speed-up"];
  const lines = models.map(({ variant, compiled }, i) => {
    const blocks = compiled.plan.blocks;
    const ratio = compiled.plan.turbo?.flopsRatio ?? 1;
    const s = speeds[i]!;
    return [
      variant.label,
      variant.turbo === undefined ? "–" : String(u),
      String(blocks[blocks.length - 1]?.tokensIn ?? vitDims(config).tokens),
      `${ratio.toFixed(2)}×`,
      `${(100 * accuracy[i]!).toFixed(2)} %`,
      `${median(s).toFixed(0)} [${Math.min(...s).toFixed(0)}–${Math.max(...s).toFixed(0)}]`,
      `${(median(s) / base).toFixed(2)}×`,
    ];
  });
  const widths = header.map((h, c) => Math.max(h.length, ...lines.map((l) => l[c]!.length)));
  const row = (cells: string[]) => cells.map((x, c) => x.padEnd(widths[c]!)).join("  ");
  console.log("");
  console.log(`${test.count} MNIST test digits, batch ${args.batch}, engine ${models[0]!.model.info.backend.name}; ${cpus().length} cores, load average ${load0.toFixed(2)} → ${load1.toFixed(2)}`);
  console.log(row(header));
  for (const l of lines) console.log(row(l));
  console.log("");
  console.log(`merge picture: ${picturePath}; compiled models: ${args.out}/; every Υ and the significance tests: npx tsx examples/vit/eval.ts`);
  for (const { model } of models) model.dispose();
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
