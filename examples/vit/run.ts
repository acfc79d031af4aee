/**
 * Runs a compiled ViT from a script, the way a user would:
 *
 *   npx tsx compiler/cli.ts examples/vit/vit.ts --out compiled/vit-tiny
 *   npx tsx examples/vit/run.ts compiled/vit-tiny --backend wasm [--weights file.safetensors] [--batch 2]
 *   npx deno run --unstable-webgpu -A examples/vit/run.ts compiled/vit-tiny --backend webgpu   (WebGPU: Deno or a browser)
 *
 * `--backend onnxruntime` runs the directory's model.onnx (compile with
 * `--emit ts,plan,onnx`) on onnxruntime-node; `--threads N` sets its intra-op threads.
 *
 * Without --weights it uses seeded random weights; the input is a seeded
 * random image batch. Prints the backend (and why), each image's logits and
 * top class, and the time of one run.
 */

import * as tf from "@tensorflow/tfjs-core";
import { parseArgs } from "node:util";
import { load, type BackendChoice } from "../../runtime/mod.ts";
import { dimValue } from "../../compiler/contract/plan.ts";

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { backend: { type: "string", default: "auto" }, weights: { type: "string" }, batch: { type: "string", default: "2" }, seed: { type: "string", default: "0" }, threads: { type: "string" } },
  });
  const dir = positionals[0];
  if (dir === undefined) throw new Error("usage: run.ts <compiled dir> [--backend auto|wasm|cpu|webgpu|tensorflow|onnxruntime] [--threads N] [--weights file.safetensors] [--batch N]");
  const batch = Number(values.batch);
  if (!Number.isInteger(batch) || batch <= 0) throw new Error(`--batch "${values.batch}" must be a positive integer`);
  const seed = Number(values.seed);
  const weights = values.weights ?? { random: seed };
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  const model = values.backend === "onnxruntime"
    ? await load(dir, { backend: "onnxruntime", weights, ...(threads === undefined ? {} : { threads }) })
    : await load(dir, { backend: values.backend as BackendChoice, weights });
  const { plan, backend } = model.info;
  console.log(`model ${plan.model} on backend ${backend.name} (${backend.reason})`);
  console.log(`weights: ${values.weights ?? `random, seed ${seed}`}`);
  const spec = plan.inputs[0]!;
  const pixels = tf.randomUniform(spec.shape.map((d) => dimValue(d, batch)), 0, 1, "float32", seed + 1);
  // run() returns a promise on onnxruntime, the tensors on tfjs: await covers both.
  (await model.run({ [spec.name]: pixels }))[plan.outputs[0]!.name]!.dispose(); // warm-up
  const t0 = performance.now();
  const out = await model.run({ [spec.name]: pixels });
  const logits = out[plan.outputs[0]!.name]!;
  const values2d = (await logits.array()) as number[][];
  const ms = performance.now() - t0;
  values2d.forEach((row, i) => {
    const top = row.indexOf(Math.max(...row));
    console.log(`image ${i}: class ${top}  logits [${row.map((v) => v.toFixed(3)).join(", ")}]`);
  });
  console.log(`one run at batch ${batch}: ${ms.toFixed(1)} ms`);
  logits.dispose();
  pixels.dispose();
  await model.dispose();
  return 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  console.error(`run: error: ${(e as Error).message}`);
  process.exitCode = 2;
}
