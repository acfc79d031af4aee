/**
 * Bad input to the runtime (issue 16): every case is a LoadError (or the
 * weights' own WeightsError) naming the file, input or tensor — never a
 * TypeError from inside tfjs or a SyntaxError with a stack.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { input, linear, model } from "../../compiler/dsl/mod.ts";
import { load, LoadError, loadModule, WeightsError } from "../../runtime/mod.ts";
import { encodeSafetensors, randomWeights } from "../../runtime/weights/mod.ts";
import { pathToFileURL } from "node:url";
import { compileToDir, tempDir } from "../_helpers.ts";

const small = model("small", () => ({ y: linear(input("x", ["B", 4]), 3, { name: "fc" }) }));
const { dir, compiled } = compileToDir(small);
const params = compiled.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] }));
const good = randomWeights(params, 3);
const files = tempDir("turbograph-bad-");
const imported: unknown = await import(pathToFileURL(join(dir, "model.mjs")).href);

/** The error `f` throws; fails when it throws nothing or something that is not one of turbograph's errors. */
async function error(f: () => unknown): Promise<Error> {
  try {
    await f();
  } catch (e) {
    assert.ok(e instanceof LoadError || e instanceof WeightsError, `not a turbograph error: ${(e as Error)?.stack ?? String(e)}`);
    return e as Error;
  }
  assert.unreachable("expected an error");
  throw new Error("unreachable");
}

test("run() with a disposed input names the input", async () => {
  const m = await load(dir, { weights: good, backend: "cpu" });
  const x = tf.ones([2, 4]);
  x.dispose();
  assert.match((await error(() => m.run({ x }))).message, /^run\(\): input "x" was disposed/);
  assert.match((await error(() => m.run(null as never))).message, /^run\(\): inputs must be an object of named tensors, \{ "x": … \}/);
  assert.match((await error(() => m.run(tf.ones([2, 4]) as never))).message, /inputs must be an object/);
  m.dispose();
});

test("tf.Tensor weights are borrowed: no copy per load, left alive by dispose(), a disposed one is a LoadError in run()", async () => {
  const tensors = new Map([...good].map(([k, w]) => [k, tf.tensor(w.data, w.shape, "float32")]));
  const before = tf.memory().numTensors;
  const a = await loadModule(imported, { weights: tensors, backend: "cpu" });
  const b = await loadModule(imported, { weights: tensors, backend: "cpu" });
  assert.is(tf.memory().numTensors, before, "loading made new tensors");
  const x = tf.ones([2, 4]);
  const ya = a.run({ x }).y!;
  const yb = b.run({ x }).y!;
  assert.equal(Array.from(ya.dataSync()), Array.from(yb.dataSync()));
  a.dispose();
  assert.ok([...tensors.values()].every((t) => !t.isDisposed), "dispose() freed a borrowed weight");
  tensors.get("fc.bias")!.dispose();
  assert.match((await error(() => b.run({ x }))).message, /^run\(\): weight "fc\.bias" was disposed after load\(\); tf\.Tensor weights are borrowed/);
  b.dispose();
  tf.dispose([x, ya, yb, ...tensors.values()]);
});

test("weights of the wrong kind are LoadErrors saying what is accepted", async () => {
  for (const [weights, message] of [
    [42, /^weights: number given; expected a Map of tensors/],
    [null, /^weights: null given/],
    [{}, /^weights: an object with neither `random` nor `safetensors` given/],
    [{ safetensors: "vit.safetensors" }, /^weights: safetensors must be the file's bytes \(a Uint8Array\), not string/],
    [new Map<string, unknown>([["fc.weight", { shape: [4, 3] }], ["fc.bias", 7]]), /weight "fc\.weight" has no `data` Float32Array\n {2}weight "fc\.bias" is number, not a tf\.Tensor/],
    [new Map([["fc.weight", { shape: [4, 3], data: new Float32Array(5) }], ["fc.bias", good.get("fc.bias")!]]), /weight "fc\.weight" has 5 values but its shape \[4,3\] holds 12/],
  ] as const) {
    const e = await error(() => loadModule(imported, { weights: weights as never, backend: "cpu" }));
    assert.match(e.message, message);
  }
  assert.match((await error(() => load(dir, undefined as never))).message, /^load\(\): options \{ weights, backend\? \} must be given/);
  assert.match((await error(() => load(dir, { weights: join(files, "nope.safetensors"), backend: "cpu" }))).message, /^Cannot read ".*nope\.safetensors": no such file \(ENOENT\)$/);
});

test("a truncated model.mjs is a LoadError naming the file, and so is a folder without one", async () => {
  const cut = join(files, "truncated");
  mkdirSync(cut);
  const js = readFileSync(join(dir, "model.mjs"), "utf8");
  writeFileSync(join(cut, "model.mjs"), js.slice(0, Math.floor(js.length / 2)));
  const e = await error(() => load(cut, { weights: good, backend: "cpu" }));
  assert.match(e.message, /"[^"]*truncated\/model\.mjs" cannot be imported \(SyntaxError: .*\); is it truncated or edited\?/);
  assert.not.match(e.message, /\n\s+at /);
  assert.match((await error(() => load(join(files, "absent"), { weights: good, backend: "cpu" }))).message, /^Compiled folder ".*absent" does not exist/);
  writeFileSync(join(files, "a-file"), "");
  assert.match((await error(() => load(join(files, "a-file"), { weights: good, backend: "cpu" }))).message, /^Compiled folder ".*a-file" is a file/);
});

test("a plan missing fields is a LoadError naming the field", async () => {
  const plan = JSON.parse(JSON.stringify(compiled.plan)) as Record<string, unknown>;
  const cases: [(p: Record<string, unknown>) => void, RegExp][] = [
    [(p) => delete p.inputs, /plan\.inputs is missing, not an array/],
    [(p) => delete p.params, /plan\.params is missing, not an array/],
    [(p) => ((p.outputs as { shape: unknown }[])[0]!.shape = [{ batch: 0 }, 3]), /plan\.outputs\[0\]\.shape\[0\] is \{"batch":0\}, not a dimension/],
    [(p) => ((p.params as { name: unknown }[])[1]!.name = 5), /plan\.params\[1\]\.name is 5, not a string/],
    [(p) => delete p.memory, /plan\.memory\.liveBytes is missing/],
  ];
  for (const [i, [edit, message]] of cases.entries()) {
    const p = JSON.parse(JSON.stringify(plan)) as Record<string, unknown>;
    edit(p);
    const folder = join(files, `plan-${i}`);
    mkdirSync(folder);
    writeFileSync(join(folder, "model.mjs"), `export const plan = ${JSON.stringify(p)};\nexport function forward() { return {}; }\n`);
    const e = await error(() => load(folder, { weights: good, backend: "cpu" }));
    assert.match(e.message, /^Compiled folder ".*plan-\d" is not a turbograph compiled model: /);
    assert.match(e.message, message);
  }
  assert.match((await error(() => loadModule({ plan: compiled.plan }, { weights: good }))).message, /its `forward` export is not a function/);
});

test("NaN or Infinity in a weights file is a LoadError naming the tensor and the file, unless allowNonFinite", async () => {
  const bad = new Map(good);
  const w = { shape: [4, 3], data: Float32Array.from(good.get("fc.weight")!.data) };
  w.data[7] = NaN;
  w.data[9] = Infinity;
  bad.set("fc.weight", w);
  const path = join(files, "nan.safetensors");
  writeFileSync(path, encodeSafetensors(bad));
  const e = await error(() => load(dir, { weights: path, backend: "cpu" }));
  assert.match(e.message, /^weight "fc\.weight" from .*nan\.safetensors holds 1 NaN and 1 infinite values \(the first at index 7\); every output would be NaN\. Pass allowNonFinite: true/);
  const inf = new Map<string, unknown>(good);
  inf.set("fc.bias", tf.tensor([0, -Infinity, 0]));
  assert.match((await error(() => load(dir, { weights: inf as never, backend: "cpu" }))).message, /^weight "fc\.bias" holds 1 infinite value \(the first at index 1\)/);
  const allowed = await load(dir, { weights: path, backend: "cpu", allowNonFinite: true });
  const { y } = allowed.run({ x: tf.ones([1, 4]) });
  assert.ok(Array.from(y!.dataSync()).some(Number.isNaN), "the NaN weight reaches the output when allowed");
  allowed.dispose();
});

test.run();
