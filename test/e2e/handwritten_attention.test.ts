/**
 * Hand-written attention at run time: ViTs whose attention is spelled from
 * primitives, compiled raised, unraised and with Turbo, loaded through
 * load() with `{ random: seed }` weights on wasm and cpu, give the logits of
 * the encoderBlock ViT (same parameter names, so the same weights).
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { compile, type CompileOptions } from "../../compiler/compile.ts";
import * as dsl from "../../compiler/dsl/mod.ts";
import type { ModelSpec } from "../../compiler/dsl/trace.ts";
import { vitConfigs } from "../../examples/vit/config.ts";
import { tiny } from "../../examples/vit/vit.ts";
import { load, selectBackend } from "../../runtime/mod.ts";
import { pixels, relativeError, tempDir } from "../_helpers.ts";
import { einsumVit, flatVit, handwrittenVit, matmulVit } from "../fixtures/specs/_handwritten_vit.ts";

function toDir(spec: ModelSpec, options: CompileOptions) {
  const compiled = compile(spec, { verify: true, ...options });
  const dir = tempDir("turbograph-handwritten-");
  writeFileSync(join(dir, "model.mjs"), compiled.module.js);
  return { dir, compiled };
}

await selectBackend("wasm");
const x = pixels([2, 3, 32, 32], 21);
const input = { data: x.dataSync().slice(), shape: x.shape };

async function logits(dir: string, backend: "wasm" | "cpu", extra: Record<string, tf.Tensor> = {}): Promise<Float32Array> {
  const model = await load(dir, { weights: { random: 5 }, backend });
  const out = model.run({ pixels: tf.tensor(input.data, input.shape), ...extra });
  const got = out.logits!.dataSync() as Float32Array;
  model.dispose();
  return got;
}

for (const turbo of [undefined, { r: 3 }] as const) {
  const options: CompileOptions = turbo === undefined ? {} : { turbo };
  test(`hand-written ViTs ${turbo === undefined ? "unmerged" : "with Turbo r = 3"} agree with the builder ViT on wasm and cpu`, async () => {
    const reference = toDir(tiny, options);
    const cases = [
      ["einsum", toDir(einsumVit, options)],
      ["matmul", toDir(matmulVit, options)],
      ["flat heads", toDir(flatVit, options)],
      ...(turbo === undefined ? [["einsum, not raised", toDir(einsumVit, { raiseAttention: false })] as const] : []),
    ] as const;
    for (const [, c] of cases) assert.equal(c.compiled.plan.blocks.map((b) => b.tokensOut), reference.compiled.plan.blocks.map((b) => b.tokensOut));
    for (const backend of ["wasm", "cpu"] as const) {
      const want = await logits(reference.dir, backend);
      for (const [name, c] of cases) {
        const err = relativeError(await logits(c.dir, backend), want);
        assert.ok(err < 1e-4, `${name} on ${backend}: relative error ${err}`);
      }
    }
  });
}

test("a raised attention with an additive mask agrees with the same model compiled as written", async () => {
  const spec = handwrittenVit(vitConfigs.tiny, "vit-masked", ["einsumCore"], { mask: true });
  const raised = toDir(spec, {});
  const written = toDir(spec, { raiseAttention: false });
  assert.ok(raised.compiled.ir.final !== written.compiled.ir.final);
  const mask = () => tf.mul(tf.cast(tf.greater(tf.randomUniform([2, 1, 1, 17], 0, 1, "float32", 3), 0.7), "float32"), -1e4);
  for (const backend of ["wasm", "cpu"] as const) {
    const a = await logits(raised.dir, backend, { mask: mask() });
    const b = await logits(written.dir, backend, { mask: mask() });
    const err = relativeError(a, b);
    assert.ok(err < 1e-4, `${backend}: relative error ${err}`);
  }
});

test("a hand-written attention with a key-padding mask merges with Turbo and agrees with the builder ViT given the same mask", async () => {
  const c = vitConfigs.tiny;
  const builder = dsl.model("vit-prefix-mask", () => {
    const pixels = dsl.input("pixels", ["B", c.channels, c.image, c.image]);
    let x = dsl.patchEmbed(pixels, { patch: c.patch, dim: c.dim, name: "embeddings" });
    const mask = dsl.keyPadding(dsl.input("mask", ["B", 1]), x.shape[1] as number);
    for (let i = 0; i < c.depth; i++) x = dsl.encoderBlock(x, { heads: c.heads, mlpRatio: c.mlpRatio, eps: c.eps, name: `layer.${i}`, mask });
    return { logits: dsl.linear(dsl.clsToken(dsl.layerNorm(x, { eps: c.eps, name: "norm" })), c.classes, { name: "head" }) };
  });
  const options = { turbo: { r: 3 } };
  const written = toDir(handwrittenVit(c, "vit-prefix-mask", ["einsumCore"], { mask: "prefix" }), options);
  const reference = toDir(builder, options);
  assert.equal(written.compiled.plan.blocks.filter((b) => b.name.startsWith("layer.")).map((b) => b.tokensOut), [14, 11]);
  // Sample 0 keeps its class token as a key, sample 1 masks it out.
  const mask = () => tf.tensor2d([[1], [0]]);
  for (const backend of ["wasm", "cpu"] as const) {
    const a = await logits(written.dir, backend, { mask: mask() });
    const b = await logits(reference.dir, backend, { mask: mask() });
    assert.ok(relativeError(a, b) < 1e-4, `${backend}: relative error ${relativeError(a, b)}`);
    const open = await logits(reference.dir, backend, { mask: tf.tensor2d([[1], [1]]) });
    assert.ok(relativeError(b, open) > 1e-3, "the mask changes the logits");
  }
});

test.run();
