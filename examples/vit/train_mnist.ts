/**
 * Trains the `mnist` ViT (examples/vit/config.ts) on the mnist package's
 * digits with tfjs autodiff, and saves the weights as safetensors with
 * Hugging Face ViT names, so the compiled spec loads them directly.
 *
 *   npx tsx examples/vit/train_mnist.ts [--epochs 40] [--batch 32] [--lr 3e-3] [--seed 0]
 *       [--workers 1] [--out examples/vit/weights/mnist_vit.safetensors] [--backend wasm]
 *
 * The forward pass is examples/vit/eager.ts's `eagerVit` itself, called with a
 * map of `tf.Variable`s: the same math, the same parameter names. Everything is
 * seeded: the initial weights (runtime/weights `randomWeights`), the order of
 * the images in each epoch and the augmentation (random shifts of up to
 * `--shift` pixels, zero filled) come from one mulberry32 stream, and the wasm
 * backend runs single-threaded, so a rerun with the same flags gives the same
 * weights.
 *
 * `--workers N` computes each batch's gradients data-parallel: the batch is cut
 * into N contiguous slices, this thread takes the first and N − 1 worker
 * threads (train_worker.ts, each with its own tfjs) the others; the slices'
 * gradients are averaged, weighted by their sizes, which is the whole batch's
 * gradient up to float rounding. The optimiser runs here and the workers get
 * the updated parameters with the next step. The same flags and N give the
 * same weights; another N gives weights equal to float rounding only.
 *
 * Optimiser: AdamW (β = 0.9, 0.999; decoupled weight decay on the 2-D weight
 * matrices only), gradients clipped to a global norm of 1, learning rate
 * warmed up linearly for `--warmup` epochs, then cosine decay to 0.
 *
 * It registers examples/vit/gradients.ts (tfjs-core's Node entry has no
 * gradients) and, on wasm, runtime/kernels/simd_matmul.ts wrapped by
 * examples/vit/wasm_kernels.ts (batched and transposed matmuls off the scalar
 * slow path; without them a step is about 5× slower).
 *
 * Next to the weights it writes `<out>.json`: the command, the config, the
 * seed and hyper-parameters, per-epoch loss and accuracy, the final test
 * accuracy and the wall time.
 */

import * as tf from "@tensorflow/tfjs-core";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import type { BackendChoice } from "../../runtime/backend.ts";
import { encodeSafetensors, randomWeights, toHfVit, type WeightTensor } from "../../runtime/weights/mod.ts";
import { vitConfigs, vitParams, type VitConfig } from "./config.ts";
import { eagerVit } from "./eager.ts";
import { gatherBatch, loadMnist, MNIST_PIXELS, MNIST_SIZE, type MnistSplit } from "./mnist_data.ts";
import { formatDuration, Progress } from "./progress.ts";
import { ShardedGradients } from "./train_parallel.ts";
import { gradientStep, setUpTraining } from "./train_step.ts";
import { AdamW, learningRate, mulberry32, permutation } from "./training.ts";

const USAGE = `usage: train_mnist.ts [--epochs N] [--batch N] [--lr X] [--min-lr X] [--wd X] [--warmup EPOCHS]
       [--shift PX] [--label-smoothing X] [--seed N] [--eval-every EPOCHS] [--workers N] [--backend wasm|cpu|auto]
       [--out FILE.safetensors] [--max-steps N] [--dim N --heads N --depth N --mlp-ratio N]`;

interface Options {
  epochs: number;
  batch: number;
  lr: number;
  minLr: number;
  weightDecay: number;
  warmupEpochs: number;
  shift: number;
  labelSmoothing: number;
  seed: number;
  evalEvery: number;
  backend: BackendChoice;
  out: string;
  maxSteps: number;
  workers: number;
}

function parseOptions(argv: string[]): { options: Options; config: VitConfig } {
  const { values } = parseArgs({
    args: argv,
    options: {
      epochs: { type: "string", default: "40" },
      batch: { type: "string", default: "32" },
      lr: { type: "string", default: "3e-3" },
      "min-lr": { type: "string", default: "0" },
      wd: { type: "string", default: "0.05" },
      warmup: { type: "string", default: "2" },
      shift: { type: "string", default: "1" },
      "label-smoothing": { type: "string", default: "0.1" },
      seed: { type: "string", default: "0" },
      "eval-every": { type: "string", default: "4" },
      backend: { type: "string", default: "wasm" },
      out: { type: "string", default: "examples/vit/weights/mnist_vit.safetensors" },
      "max-steps": { type: "string", default: "0" },
      workers: { type: "string", default: "1" },
      dim: { type: "string" },
      heads: { type: "string" },
      depth: { type: "string" },
      "mlp-ratio": { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const num = (name: string, text: string, integer: boolean, min: number): number => {
    const v = Number(text);
    if (!Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min) {
      throw new Error(`--${name} "${text}" must be ${integer ? "an integer" : "a number"} ≥ ${min}`);
    }
    return v;
  };
  const options: Options = {
    epochs: num("epochs", values.epochs, true, 1),
    batch: num("batch", values.batch, true, 1),
    lr: num("lr", values.lr, false, 0),
    minLr: num("min-lr", values["min-lr"], false, 0),
    weightDecay: num("wd", values.wd, false, 0),
    warmupEpochs: num("warmup", values.warmup, false, 0),
    shift: num("shift", values.shift, true, 0),
    labelSmoothing: num("label-smoothing", values["label-smoothing"], false, 0),
    seed: num("seed", values.seed, true, 0),
    evalEvery: num("eval-every", values["eval-every"], true, 1),
    backend: values.backend as BackendChoice,
    out: values.out,
    maxSteps: num("max-steps", values["max-steps"], true, 0),
    workers: num("workers", values.workers, true, 1),
  };
  const config: VitConfig = { ...vitConfigs.mnist };
  if (values.dim !== undefined) config.dim = num("dim", values.dim, true, 1);
  if (values.heads !== undefined) config.heads = num("heads", values.heads, true, 1);
  if (values.depth !== undefined) config.depth = num("depth", values.depth, true, 1);
  if (values["mlp-ratio"] !== undefined) config.mlpRatio = num("mlp-ratio", values["mlp-ratio"], false, 0);
  if (config.dim !== vitConfigs.mnist.dim || config.heads !== vitConfigs.mnist.heads ||
    config.depth !== vitConfigs.mnist.depth || config.mlpRatio !== vitConfigs.mnist.mlpRatio) {
    config.name = `mnist-d${config.dim}h${config.heads}x${config.depth}r${config.mlpRatio}`;
  }
  return { options, config };
}

/** Shifts each 28×28 image by a random (dx, dy) in [−max, max]², filling with 0. */
function shiftImages(images: Float32Array, max: number, random: () => number): Float32Array {
  if (max === 0) return images;
  const out = new Float32Array(images.length);
  const S = MNIST_SIZE;
  for (let n = 0; n < images.length / MNIST_PIXELS; n++) {
    const dx = Math.floor(random() * (2 * max + 1)) - max;
    const dy = Math.floor(random() * (2 * max + 1)) - max;
    const base = n * MNIST_PIXELS;
    for (let y = 0; y < S; y++) {
      const sy = y - dy;
      if (sy < 0 || sy >= S) continue;
      for (let x = 0; x < S; x++) {
        const sx = x - dx;
        if (sx >= 0 && sx < S) out[base + y * S + x] = images[base + sy * S + sx]!;
      }
    }
  }
  return out;
}

/** Test-split accuracy and mean loss of the eager forward pass. */
function evaluate(config: VitConfig, params: Map<string, tf.Tensor>, split: MnistSplit, batch = 100): { accuracy: number; loss: number } {
  let correct = 0;
  let lossSum = 0;
  for (let start = 0; start < split.count; start += batch) {
    const indices = Array.from({ length: Math.min(batch, split.count - start) }, (_, i) => start + i);
    const { images, labels } = gatherBatch(split, indices);
    const [pred, loss] = tf.tidy(() => {
      const x = tf.tensor4d(images, [indices.length, 1, MNIST_SIZE, MNIST_SIZE]);
      const logits = eagerVit(config, params, x);
      const y = tf.oneHot(tf.tensor1d(labels, "int32"), config.classes);
      const l = tf.losses.softmaxCrossEntropy(y, logits, undefined, 0, tf.Reduction.SUM);
      return [tf.argMax(logits, 1).dataSync(), l.dataSync()[0]!] as const;
    });
    for (let i = 0; i < indices.length; i++) if (pred[i] === labels[i]) correct++;
    lossSum += loss;
  }
  return { accuracy: correct / split.count, loss: lossSum / split.count };
}

async function main(argv: string[]): Promise<number> {
  const { options: o, config } = parseOptions(argv);
  const command = ["npx", "tsx", "examples/vit/train_mnist.ts", ...argv].join(" ");
  const backend = await setUpTraining(o.backend);
  const data = loadMnist();
  console.error(backend.description);
  console.error(`data: ${data.train.count} train, ${data.test.count} test images from ${data.source}`);
  console.error(`config: ${JSON.stringify(config)}`);

  const initial = randomWeights(vitParams(config), o.seed);
  const params = new Map<string, tf.Variable>();
  for (const [name, w] of initial) params.set(name, tf.variable(tf.tensor(w.data, w.shape, "float32"), true, name));
  const paramCount = [...initial.values()].reduce((n, w) => n + w.data.length, 0);
  console.error(`${paramCount} parameters; seed ${o.seed}`);
  const decay = (name: string) => name.endsWith(".weight") && params.get(name)!.rank === 2;
  const optimizer = new AdamW(params, decay);
  const varList = [...params.values()];
  const sharded = o.workers > 1 ? await ShardedGradients.start(o.workers - 1, config, o.backend, vitParams(config)) : undefined;
  if (sharded) console.error(`data-parallel: this thread and ${o.workers - 1} worker thread(s)`);

  const random = mulberry32(o.seed ^ 0x5eed);
  const stepsPerEpoch = Math.floor(data.train.count / o.batch);
  const plannedSteps = o.epochs * stepsPerEpoch;
  const totalSteps = o.maxSteps > 0 ? Math.min(o.maxSteps, plannedSteps) : plannedSteps;
  const warmupSteps = Math.round(o.warmupEpochs * stepsPerEpoch);
  const progress = new Progress({ total: totalSteps });
  const history: Array<Record<string, number>> = [];
  let step = 0;
  let trainSeconds = 0;
  let last = { loss: NaN, accuracy: NaN };
  let test = { accuracy: NaN, loss: NaN };

  /** Writes the weights (Hugging Face ViT names) and the record; `final` false marks a checkpoint. */
  const save = (final: boolean): void => {
    const trained = new Map<string, WeightTensor>();
    for (const [name, p] of params) trained.set(name, { shape: [...p.shape], data: p.dataSync() as Float32Array });
    const wallSeconds = progress.elapsed;
    const record = {
      command,
      complete: final,
      config,
      seed: o.seed,
      epochs: o.epochs,
      steps: step,
      batch: o.batch,
      optimizer: { name: "AdamW", lr: o.lr, minLr: o.minLr, weightDecay: o.weightDecay, warmupEpochs: o.warmupEpochs, betas: [0.9, 0.999], clipNorm: 1 },
      augmentation: { shiftPixels: o.shift },
      labelSmoothing: o.labelSmoothing,
      data: { package: "mnist@1.1.0", split: "per digit: last 200 images test, the rest train", train: data.train.count, test: data.test.count },
      parameters: paramCount,
      backend: backend.backend,
      workers: o.workers,
      finalTrainLoss: last.loss,
      finalTrainAccuracy: last.accuracy,
      testAccuracy: test.accuracy,
      testLoss: test.loss,
      wallSeconds: Math.round(wallSeconds),
      trainImagesPerSecond: Number(((step * o.batch) / trainSeconds).toFixed(1)),
      node: process.version,
      date: new Date().toISOString(),
      history,
    };
    mkdirSync(dirname(o.out), { recursive: true });
    const metadata = { format: "pt", config: JSON.stringify(config), command, testAccuracy: String(test.accuracy) };
    writeFileSync(o.out, encodeSafetensors(toHfVit(trained, { channels: config.channels }), metadata));
    writeFileSync(`${o.out}.json`, `${JSON.stringify(record, null, 2)}\n`);
  };

  for (let epoch = 1; epoch <= o.epochs && step < totalSteps; epoch++) {
    const order = permutation(data.train.count, random);
    let lossSum = 0;
    let correct = 0;
    let seen = 0;
    for (let s = 0; s < stepsPerEpoch; s++) {
      if (step >= totalSteps) break;
      const t0 = performance.now();
      const batch = gatherBatch(data.train, order.subarray(s * o.batch, (s + 1) * o.batch));
      const images = shiftImages(batch.images, o.shift, random);
      const lr = learningRate(step, plannedSteps, warmupSteps, o.lr, o.minLr);
      const r = sharded
        ? await sharded.step(config, params, varList, images, batch.labels, o.batch, o.labelSmoothing)
        : gradientStep(config, params, varList, images, batch.labels, o.batch, o.labelSmoothing);
      optimizer.step(Object.fromEntries(varList.map((v, i) => [v.name, r.grads[i]!])), lr, o.weightDecay, 1);
      const { loss, predictions: pred } = r;
      tf.dispose(r.grads);
      if (!Number.isFinite(loss)) throw new Error(`loss is ${loss} at step ${step + 1}; try a lower --lr`);
      for (let i = 0; i < o.batch; i++) if (pred[i] === batch.labels[i]) correct++;
      lossSum += loss * o.batch;
      seen += o.batch;
      step++;
      trainSeconds += (performance.now() - t0) / 1000;
      progress.update(
        step,
        `epoch ${epoch}/${o.epochs}`,
        [s + 1, stepsPerEpoch],
        `loss ${(lossSum / seen).toFixed(4)}  acc ${((100 * correct) / seen).toFixed(2)}%  lr ${lr.toExponential(2)}  ${(step * o.batch / trainSeconds).toFixed(1)} img/s`,
        s + 1 === stepsPerEpoch,
      );
    }
    last = { loss: lossSum / seen, accuracy: correct / seen };
    const entry: Record<string, number> = { epoch, trainLoss: last.loss, trainAccuracy: last.accuracy, elapsedSeconds: progress.elapsed };
    if (epoch % o.evalEvery === 0 || epoch === o.epochs || step >= totalSteps) {
      test = evaluate(config, params, data.test);
      entry.testAccuracy = test.accuracy;
      entry.testLoss = test.loss;
    }
    history.push(entry);
    if (entry.testAccuracy !== undefined && epoch < o.epochs && step < totalSteps) save(false);
    progress.log(
      `epoch ${epoch}: train loss ${last.loss.toFixed(4)} acc ${(100 * last.accuracy).toFixed(2)}%` +
        (entry.testAccuracy === undefined ? "" : `; test loss ${test.loss.toFixed(4)} acc ${(100 * test.accuracy).toFixed(2)}%`) +
        `  (${formatDuration(progress.elapsed)})`,
    );
  }
  progress.finish();
  await sharded?.stop();
  if (history.at(-1)?.testAccuracy === undefined) test = evaluate(config, params, data.test);
  const wallSeconds = progress.elapsed;
  save(true);
  const imagesPerSecond = ((step * o.batch) / trainSeconds).toFixed(1);
  console.log(
    `trained ${step} steps (${history.length} of ${o.epochs} epochs) in ${formatDuration(wallSeconds)}: final train loss ${last.loss.toFixed(4)}, ` +
      `test accuracy ${(100 * test.accuracy).toFixed(2)}% (${data.test.count} images); ${imagesPerSecond} img/s`,
  );
  console.log(`wrote ${o.out} and ${o.out}.json`);
  return 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  console.error(`train_mnist: error: ${(e as Error).message}`);
  process.exitCode = 2;
}
