/**
 * Draws digits from the trained MNIST DiT with DDIM and writes them as a PNG
 * grid: one row per class, one column per seed.
 *
 *   npx tsx examples/dit/sample.ts [--classes 0,1,…,9] [--per-class 6] [--steps 50] [--seed 0]
 *       [--generation ratio=0.5,where=self,alpha=5] [--weights FILE] [--out FILE.png]
 *
 * `--generation` takes turbo-compile's settings (spec/turbo.md, "Generation
 * mode"); without it the model runs unmerged. The noise of sample j comes
 * from mulberry32(seed + j), so the same flags give the same images, and the
 * same seed with and without merging shows what merging changes.
 */

import * as tf from "@tensorflow/tfjs-core";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { parseGeneration } from "../../compiler/cli.ts";
import { compile } from "../../compiler/compile.ts";
import { loadModule } from "../../runtime/mod.ts";
import { cssColor, mergeSpec, renderPng } from "../vit/plots.ts";
import { mulberry32 } from "../vit/training.ts";
import { ditConfig, promptIds } from "./config.ts";
import { ddimSample, linearSchedule, normals } from "./diffusion.ts";
import { dit } from "./dit.ts";

const here = new URL(".", import.meta.url).pathname;

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      classes: { type: "string", default: "0,1,2,3,4,5,6,7,8,9" },
      "per-class": { type: "string", default: "6" },
      steps: { type: "string", default: "50" },
      seed: { type: "string", default: "0" },
      generation: { type: "string" },
      weights: { type: "string", default: join(here, "weights/mnist_dit.safetensors") },
      out: { type: "string", default: "samples.png" },
    },
  });
  const classes = values.classes!.split(",").map((c) => {
    const k = Number(c);
    if (!Number.isInteger(k) || k < 0 || k > 9) throw new Error(`--classes: "${c}" is not a digit 0–9`);
    return k;
  });
  const perClass = Number(values["per-class"]);
  const steps = Number(values.steps);
  const seed = Number(values.seed);
  for (const [name, v] of [["per-class", perClass], ["steps", steps]] as const) if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
  if (steps > 1000) throw new Error("--steps must be at most 1000 (the training steps)");
  if (!Number.isInteger(seed)) throw new Error("--seed must be an integer");
  const generation = values.generation === undefined ? undefined : parseGeneration(values.generation);
  const compiled = compile(dit(ditConfig), { source: "examples/dit/dit.ts", ...(generation === undefined ? {} : { generation }) });
  const dir = mkdtempSync(join(tmpdir(), "turbograph-dit-sample-"));
  writeFileSync(join(dir, "model.mjs"), compiled.module.js);
  const model = await loadModule(await import(pathToFileURL(join(dir, "model.mjs")).href), {
    weights: { safetensors: new Uint8Array(readFileSync(values.weights!)), source: values.weights! },
    backend: "wasm",
  });
  const count = classes.length * perClass;
  const labels = classes.flatMap((k) => Array.from({ length: perClass }, () => k));
  const start = new Float32Array(count * 784);
  for (let i = 0; i < count; i++) start.set(normals(784, mulberry32(seed + (i % perClass))), i * 784);
  const prompt = tf.tensor2d(labels.flatMap((k) => promptIds(k)), [count, 2], "int32");
  let ms = 0;
  const images = await ddimSample(linearSchedule(), (noisy, t, n) => {
    const x = tf.tensor4d(noisy, [n, 1, 28, 28]);
    const tt = tf.fill([n, 1], t);
    const out = model.run({ noisy: x, t: tt, prompt }).noise!;
    const eps = out.dataSync() as Float32Array;
    tf.dispose([x, tt, out]);
    return eps;
  }, start, count, steps, (_, t) => (ms += t));
  const panels = labels.map((k, i) => ({
    row: `class ${k}`,
    column: `seed ${seed + (i % perClass)}`,
    colors: Array.from(images.subarray(i * 784, (i + 1) * 784), (v) => { const g = Math.min(1, Math.max(0, (v + 1) / 2)); return cssColor([g, g, g]); }),
  }));
  const title = `DDIM ${steps} steps, ${generation === undefined ? "unmerged" : `generation ${values.generation}`}`;
  await renderPng(mergeSpec(panels, 28, title, classes.map((k) => `class ${k}`), Array.from({ length: perClass }, (_, j) => `seed ${seed + j}`)), values.out!);
  console.log(`wrote ${values.out}: ${count} digits, ${(ms / steps).toFixed(1)} ms per step at batch ${count} (${(ms / 1000).toFixed(1)} s sampling)`);
  prompt.dispose();
  model.dispose();
  rmSync(dir, { recursive: true, force: true });
  return 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  console.error(`dit/sample: error: ${(e as Error).message}`);
  process.exitCode = 2;
}
