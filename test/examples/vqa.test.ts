/**
 * The single-stream VQA model (examples/vqa): compiled from its DSL spec
 * with and without Turbo, on wasm and cpu, against the eager tfjs model
 * with the merge written by hand (examples/vqa/eager.ts), on MNIST pairs
 * and random weights; what the compiler found from the graph (the text
 * segment and the image class token protected, the text class token as the
 * semantic source); and the option that names another semantic token.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { compile } from "../../compiler/compile.ts";
import { CompileError } from "../../compiler/diagnostics.ts";
import { clsToken, concat, embedding, encoderBlock, input, model, patchEmbed, reshape } from "../../compiler/dsl/mod.ts";
import { emitOnnx } from "../../compiler/lower/emit_onnx.ts";
import { load, loadOnnx } from "../../runtime/mod.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { imageClsPosition, QUESTION_LENGTH, vocabulary, vqaConfig, vqaDims, vqaParams } from "../../examples/vqa/config.ts";
import { loadMnist, makeBatch, PAIR_HEIGHT, PAIR_WIDTH, testItems } from "../../examples/vqa/data.ts";
import { eagerVqa } from "../../examples/vqa/eager.ts";
import spec, { vqa } from "../../examples/vqa/vqa.ts";
import { compileToDir, relativeError } from "../_helpers.ts";
import { agreementTests, type AgreementCase } from "./_vqa_agreement.ts";

const weights = randomWeights(vqaParams(vqaConfig), 11);

const cases: AgreementCase[] = [
  { name: "no merge" },
  { name: "ToMe (alpha=0), r=12", turbo: { r: 12, alpha: 0 } },
  { name: "Turbo, text class token, r=12", turbo: { r: 12 } },
  { name: "Turbo, image class token, r=20, scale=15", turbo: { r: 20, scale: 15, semanticToken: imageClsPosition(vqaConfig) } },
];

agreementTests(spec, weights, (t, q, p, turbo) => eagerVqa(vqaConfig, t, q, p, turbo), cases);

test("the compiler protects the text segment and the image class token, and takes the text class token's row", () => {
  const { textTokens } = vqaDims(vqaConfig);
  const c = compile(spec, { turbo: { r: 8 } });
  const merges = c.graph.nodes.filter((n) => n.op === "turbo_merge");
  assert.is(merges.length, vqaConfig.depth);
  for (const m of merges) assert.is((m.attrs as { protect: number }).protect, textTokens + 1);
  assert.ok(c.plan.explain?.some((e) => e.includes(`the first ${textTokens + 1} tokens are protected (${textTokens} from token ids (the text segment), 1 more from parameters)`) && e.includes("attention row of token 0 (the text class token)")), String(c.plan.explain));
  assert.equal(c.plan.blocks.filter((b) => b.name.startsWith("layer.")).map((b) => b.tokensOut), [97, 89, 81, 73]);
});

test("semanticToken names the row; a position that is not protected is refused", () => {
  const row = imageClsPosition(vqaConfig);
  const traced = compile(spec, { turbo: { r: 8, semanticToken: row } });
  const cls = traced.graph.nodes.filter((n) => n.op === "slice" && (n.attrs as { start: number }).start === row);
  assert.ok(cls.length >= 1, "a slice of the image class token's query row");
  try {
    compile(spec, { turbo: { r: 8, semanticToken: row + 1 } });
    assert.unreachable("compiled");
  } catch (e) {
    assert.instance(e, CompileError);
    assert.match((e as Error).message, /insertTurbo: option semanticToken: position 7 is not protected \(the first 7 positions are\)/);
  }
});


// ── Padded text: a key-padding mask over the protected text segment survives merging.

const masked = vqa(vqaConfig, { mask: true });
/** Sample i keeps the class token and 5 − (i mod 4) words: padding at the end of the question. */
const padding = (count: number) => Array.from({ length: count }, (_, i) => Array.from({ length: vqaDims(vqaConfig).textTokens }, (_, j) => (j <= 5 - (i % 4) ? 1 : 0)));
agreementTests(masked, weights, (t, q, p, turbo, mask) => eagerVqa(vqaConfig, t, q, p, turbo, undefined, mask), [
  { name: "no merge" },
  { name: "Turbo, text class token, r=24", turbo: { r: 24 } },
  { name: "ToMe (alpha=0), r=40 (the cap binds in later blocks)", turbo: { r: 40, alpha: 0 } },
], padding);

test("padded text: what a padded position holds changes nothing after merging, what a real word holds does", async () => {
  const { dir } = compileToDir(masked, { turbo: { r: 24 } });
  const m = await load(dir, { weights, backend: "cpu" });
  const items = makeBatch(loadMnist().test, testItems(loadMnist().test, 2));
  const rows = padding(items.count);
  const mask = tf.tensor2d(rows);
  const pixels = tf.tensor4d(items.pixels, [items.count, 1, PAIR_HEIGHT, PAIR_WIDTH]);
  const run = (ids: Int32Array) => {
    const question = tf.tensor2d(ids, [items.count, QUESTION_LENGTH], "int32");
    const out = m.run({ question, pixels, mask }).answer!;
    const v = out.dataSync().slice();
    tf.dispose([question, out]);
    return v;
  };
  const base = run(items.question);
  // Overwrite every padded word (mask 0) with another id: the answers stay the same.
  const repad = items.question.slice();
  const other = items.question.slice();
  for (let i = 0; i < items.count; i++) {
    for (let j = 0; j < QUESTION_LENGTH; j++) {
      const id = (items.question[i * QUESTION_LENGTH + j]! + 3) % vocabulary.length;
      if (rows[i]![j + 1] === 0) repad[i * QUESTION_LENGTH + j] = id;
      else if (j === 0) other[i * QUESTION_LENGTH + j] = id;
    }
  }
  assert.ok(repad.some((v, k) => v !== items.question[k]), "some padded word was changed");
  assert.ok(relativeError(run(repad), base) < 1e-6, "padded words are ignored");
  assert.ok(relativeError(run(other), base) > 1e-3, "a real word changes the answer");
  tf.dispose([mask, pixels]);
  m.dispose();
});

test("padded text on onnxruntime: the merged masked model agrees with wasm within 1e-4", async () => {
  const compiled = compile(masked, { turbo: { r: 24 } });
  const ort = await loadOnnx(emitOnnx(compiled.program, compiled.plan, "vqa-masked"), { weights, threads: 1 });
  const { dir } = compileToDir(masked, { turbo: { r: 24 } });
  const wasm = await load(dir, { weights, backend: "wasm" });
  const items = makeBatch(loadMnist().test, testItems(loadMnist().test, 2));
  const x = { question: tf.tensor2d(items.question, [items.count, QUESTION_LENGTH], "int32"), pixels: tf.tensor4d(items.pixels, [items.count, 1, PAIR_HEIGHT, PAIR_WIDTH]), mask: tf.tensor2d(padding(items.count)) };
  const got = (await ort.run(x)).answer!;
  const want = wasm.run(x).answer!;
  const err = relativeError(got.dataSync(), want.dataSync());
  assert.ok(err < 1e-4, `relative error ${err}`);
  tf.dispose([...Object.values(x), got, want]);
  wasm.dispose();
  await ort.dispose();
});

test("a mask that is not zero past the protected text is refused when merging would misalign it, at the user's line", () => {
  const { textTokens, patches } = vqaDims(vqaConfig);
  const keys = textTokens + 1 + patches;
  const spec = model("vqa-full-mask", () => {
    const question = input("question", ["B", QUESTION_LENGTH], { dtype: "i32" });
    const pixels = input("pixels", ["B", 1, vqaConfig.height, vqaConfig.width]);
    const words = embedding(question, { vocab: vocabulary.length, dim: vqaConfig.dim, name: "text.embeddings.words" });
    const image = patchEmbed(pixels, { patch: vqaConfig.patch, dim: vqaConfig.dim, name: "image.embeddings" });
    const bias = reshape(input("bias", ["B", keys - 1]), ["B", 1, 1, keys - 1]);
    let x = concat([words, image], 1);
    for (let i = 0; i < 2; i++) x = encoderBlock(x, { heads: vqaConfig.heads, name: `layer.${i}`, mask: bias });
    return { answer: clsToken(x) };
  });
  assert.ok(compile(spec) !== undefined, "compiles without merging");
  try {
    compile(spec, { turbo: { r: 8, alpha: 0 } });
    assert.unreachable("merging with a full-length mask compiles");
  } catch (e) {
    assert.instance(e, CompileError);
    const msg = (e as Error).message;
    assert.match(msg, "additive mask of the attention layer.1");
    assert.match(msg, "traced over 104 keys, but merging left 96");
    assert.match(msg, "keyPadding(mask, tokens)");
    assert.match(String((e as CompileError).loc?.file ?? ""), "vqa.test.ts");
  }
});

test.run();
