/**
 * Runs the MNIST test split through the *compiled* `mnist` ViT, without
 * merging, and prints its accuracy and speed: the compiled path's check of
 * the accuracy that examples/vit/train_mnist.ts reported with the eager
 * forward pass.
 *
 *   npx tsx examples/vit/eval_unmerged.ts [--weights examples/vit/weights/mnist_vit.safetensors]
 *       [--backend auto|wasm|cpu|tensorflow] [--batch 100] [--out compiled/vit-mnist]
 *
 * It compiles examples/vit/vit.ts's `mnist` spec with `compile()`, writes the
 * module to `--out` (a temporary directory by default), `load()`s it with the
 * safetensors weights (Hugging Face ViT names) and runs the 2,000 test images
 * (examples/vit/mnist_data.ts: the last 200 of each digit) in batches.
 */

import * as tf from "@tensorflow/tfjs-core";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compile } from "../../compiler/compile.ts";
import { load, type BackendChoice } from "../../runtime/mod.ts";
import { gatherBatch, loadMnist, MNIST_SIZE } from "./mnist_data.ts";
import { formatDuration, Progress } from "./progress.ts";
import { mnist } from "./vit.ts";

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      weights: { type: "string", default: "examples/vit/weights/mnist_vit.safetensors" },
      backend: { type: "string", default: "auto" },
      batch: { type: "string", default: "100" },
      out: { type: "string" },
    },
  });
  const batch = Number(values.batch);
  if (!Number.isInteger(batch) || batch <= 0) throw new Error(`--batch "${values.batch}" must be a positive integer`);

  const compiled = compile(mnist, { source: "examples/vit/vit.ts (mnist)" });
  const dir = values.out ?? mkdtempSync(join(tmpdir(), "turbograph-mnist-"));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "model.js"), compiled.module.js);
  writeFileSync(join(dir, "model.ts"), compiled.module.ts);

  const model = await load(dir, { weights: values.weights, backend: values.backend as BackendChoice });
  const { backend, plan } = model.info;
  console.error(`model ${plan.model} compiled to ${dir}; backend ${backend.name} (${backend.reason})`);
  console.error(`weights ${values.weights}`);

  const { test } = loadMnist();
  const steps = Math.ceil(test.count / batch);
  const progress = new Progress({ total: steps, logEverySeconds: 10 });
  let correct = 0;
  let runSeconds = 0;
  for (let s = 0; s < steps; s++) {
    const indices = Array.from({ length: Math.min(batch, test.count - s * batch) }, (_, i) => s * batch + i);
    const { images, labels } = gatherBatch(test, indices);
    const pixels = tf.tensor4d(images, [indices.length, 1, MNIST_SIZE, MNIST_SIZE]);
    const t0 = performance.now();
    const { logits } = model.run({ pixels });
    const pred = tf.tidy(() => tf.argMax(logits!, 1).dataSync());
    runSeconds += (performance.now() - t0) / 1000;
    tf.dispose([pixels, logits!]);
    for (let i = 0; i < indices.length; i++) if (pred[i] === labels[i]) correct++;
    const seen = s * batch + indices.length;
    progress.update(s + 1, "test", [seen, test.count], `acc ${((100 * correct) / seen).toFixed(2)}%  ${(seen / runSeconds).toFixed(1)} img/s`, s + 1 === steps);
  }
  progress.finish();
  model.dispose();

  const accuracy = correct / test.count;
  console.log(
    `compiled ${plan.model}, no merging, on ${backend.name}: test accuracy ${(100 * accuracy).toFixed(2)}% ` +
      `(${correct}/${test.count}), ${(test.count / runSeconds).toFixed(1)} img/s at batch ${batch} (${formatDuration(runSeconds)})`,
  );
  const recordPath = `${values.weights}.json`;
  if (existsSync(recordPath)) {
    const record = JSON.parse(readFileSync(recordPath, "utf8")) as { testAccuracy?: number };
    if (typeof record.testAccuracy === "number") {
      // Float rounding differs between the eager and the compiled kernels; a borderline image may flip.
      const diff = correct - Math.round(record.testAccuracy * test.count);
      console.log(
        `training reported ${(100 * record.testAccuracy).toFixed(2)}% with the eager forward pass: ` +
          (diff === 0 ? "the same" : `${Math.abs(diff)} image${Math.abs(diff) === 1 ? "" : "s"} ${diff > 0 ? "more" : "fewer"} right here`),
      );
      if (Math.abs(diff) > 2) return 1;
    }
  }
  return 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  console.error(`eval_unmerged: error: ${(e as Error).message}`);
  process.exitCode = 2;
}
