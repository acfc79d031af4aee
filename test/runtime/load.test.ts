/** load(): weights from safetensors (turbograph and Hugging Face names), checks against the plan, input checks, backends. */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";
import { vitConfigs } from "../../examples/vit/config.ts";
import { tiny } from "../../examples/vit/vit.ts";
import { BackendError, load, LoadError, selectBackend } from "../../runtime/mod.ts";
import { load as loadWeb } from "../../runtime/web.ts";
import { encodeSafetensors, randomWeights, toHfVit, type WeightTensor } from "../../runtime/weights/mod.ts";
import { compileToDir, pixels, tempDir } from "../_helpers.ts";

const { dir, compiled } = compileToDir(tiny);
const params = compiled.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] }));
const weights = randomWeights(params, 21);
const files = tempDir("turbograph-weights-");
const x = () => pixels([2, 3, 32, 32], 9);

async function rejects(f: () => Promise<unknown>, pattern: RegExp): Promise<string> {
  try {
    await f();
  } catch (e) {
    assert.instance(e, Error);
    assert.match((e as Error).message, pattern);
    return (e as Error).message;
  }
  assert.unreachable(`expected an error matching ${pattern}`);
  return "";
}

test("`load()` reads a Hugging Face ViT safetensors file and gives the same logits as the weights in memory", async () => {
  const hfPath = join(files, "hf.safetensors");
  writeFileSync(hfPath, encodeSafetensors(toHfVit(weights, { channels: vitConfigs.tiny.channels })));
  const ownPath = join(files, "own.safetensors");
  writeFileSync(ownPath, encodeSafetensors(weights));
  const a = await load(dir, { weights, backend: "wasm" });
  const b = await load(dir, { weights: hfPath, backend: "wasm" });
  const c = await load(dir, { weights: ownPath, backend: "wasm" });
  const input = x();
  const ya = a.run({ pixels: input }).logits!.dataSync();
  const yb = b.run({ pixels: input }).logits!.dataSync();
  const yc = c.run({ pixels: input }).logits!.dataSync();
  assert.equal(Array.from(yb), Array.from(ya));
  assert.equal(Array.from(yc), Array.from(ya));
});

test("a browser-style load from bytes ({ module, weights }) and a file: URL give the folder's logits", async () => {
  const ownPath = join(files, "bytes.safetensors");
  const bytes = encodeSafetensors(weights);
  writeFileSync(ownPath, bytes);
  const text = readFileSync(join(dir, "model.mjs"), "utf8");
  const fromDir = await load(dir, { weights, backend: "wasm" });
  const fromText = await loadWeb({ module: text, weights: bytes, source: "upload" }, { backend: "wasm" });
  const fromUtf8 = await load({ module: new TextEncoder().encode(text), weights: bytes }, { backend: "wasm" });
  const fromUrl = await load(pathToFileURL(dir), { weights: pathToFileURL(ownPath), backend: "wasm" });
  const input = x();
  const want = Array.from(fromDir.run({ pixels: input }).logits!.dataSync());
  for (const [name, m] of [["text", fromText], ["utf8", fromUtf8], ["url", fromUrl]] as const) {
    assert.equal(Array.from(m.run({ pixels: input }).logits!.dataSync()), want, name);
  }
  assert.equal(Array.from((await fromText.runAsync({ pixels: input })).logits!.dataSync()), want, "runAsync");
});

test("a load from bytes names a module that is not one and weights that do not fit", async () => {
  const bytes = encodeSafetensors(weights);
  await rejects(() => loadWeb({ module: "export const plan = ;", weights: bytes, source: "upload.mjs" }), /upload\.mjs cannot be imported as a module \(SyntaxError/);
  await rejects(() => loadWeb({ module: "", weights: bytes }), /<bytes>: the module text is empty/);
  await rejects(() => loadWeb({ module: "export const x = 1;", weights: bytes, source: "x.mjs" }), /x\.mjs/);
  const text = readFileSync(join(dir, "model.mjs"), "utf8");
  await rejects(() => loadWeb({ module: text, weights: bytes.subarray(0, 40), source: "cut" }), /cut weights/);
  await rejects(() => loadWeb("not a url at all", { weights: { random: 1 } }), /is not a URL/);
});

test("`load()` names a mis-shaped, a missing and an unexpected weight", async () => {
  const bad = new Map<string, WeightTensor>(weights);
  bad.set("layer.1.mlp.fc1.weight", { shape: [256, 64], data: new Float32Array(256 * 64) });
  bad.delete("head.bias");
  bad.set("layer.9.extra", { shape: [1], data: new Float32Array(1) });
  const msg = await rejects(() => load(dir, { weights: bad, backend: "cpu" }), /Weights do not match the plan of "vit-tiny"/);
  assert.match(msg, /weight "layer\.1\.mlp\.fc1\.weight" has shape \[256,64\] but the plan expects \[64,256\]/);
  assert.match(msg, /missing weight "head\.bias" \(expected shape \[10\]\)/);
  assert.match(msg, /unexpected weight "layer\.9\.extra"/);
});

test("`load()` rejects a corrupted safetensors file with the file's name", async () => {
  const path = join(files, "truncated.safetensors");
  const bytes = encodeSafetensors(weights);
  writeFileSync(path, bytes.subarray(0, bytes.length - 100));
  await rejects(() => load(dir, { weights: path, backend: "cpu" }), /truncated\.safetensors/);
  await rejects(() => load(dir, { weights: join(files, "absent.safetensors"), backend: "cpu" }), /Cannot read .*absent\.safetensors.*ENOENT/);
});

test("`run()` checks inputs against the plan", async () => {
  const model = await load(dir, { weights, backend: "cpu" });
  assert.throws(() => model.run({}), (e: Error) => e instanceof LoadError && /missing input "pixels" of shape \[B,3,32,32\]/.test(e.message));
  assert.throws(() => model.run({ pixels: tf.zeros([2, 3, 32, 31]) }), /input "pixels" has shape \[2,3,32,31\] but the plan expects \[B,3,32,32\]/);
  assert.throws(() => model.run({ pixels: tf.zeros([2, 3, 32, 32], "int32") }), /dtype int32/);
  assert.throws(() => model.run({ pixels: x(), extra: tf.zeros([1]) }), /unexpected input "extra"/);
  model.dispose();
  assert.throws(() => model.run({ pixels: x() }), /disposed/);
});

test("`load()` rejects a directory without a compiled model", async () => {
  await rejects(() => load(files, { weights, backend: "cpu" }), /holds no compiled model/);
});

test("`selectBackend()` reports its choice and why", async () => {
  const hasNode = await import("@tensorflow/tfjs-node" as string).then(() => true, () => false);
  const auto = await selectBackend("auto");
  assert.is(tf.getBackend(), auto.name);
  if (hasNode) assert.is(auto.name, "tensorflow");
  else {
    assert.is(auto.name, "wasm");
    assert.match(auto.reason, /tfjs-node\(-gpu\) is not installed/);
  }
  const cpu = await selectBackend("cpu");
  assert.equal(cpu, { name: "cpu", reason: "requested" });
  if (!hasNode) {
    await rejects(() => selectBackend("tensorflow"), /neither @tensorflow\/tfjs-node-gpu nor @tensorflow\/tfjs-node can be loaded/);
    await selectBackend("tensorflow").then(
      () => assert.unreachable("tensorflow backend without tfjs-node"),
      (e) => assert.instance(e, BackendError),
    );
  }
});

test.run();
