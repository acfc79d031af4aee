/**
 * The dual-stream VQA model (examples/vqa/dual.ts): an image encoder that
 * merges, and a text encoder whose cross-attention reads the merged tokens
 * with their sizes. Compiled from its DSL spec with and without Turbo, on
 * wasm and cpu, against the eager tfjs model with the merge written by hand
 * (examples/vqa/eager.ts), on MNIST pairs and random weights; and what the
 * plan says about which stream merges and where its semantic value comes from.
 */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { compile } from "../../compiler/compile.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { vqaDims, vqaDualConfig, vqaDualParams } from "../../examples/vqa/config.ts";
import { eagerVqaDual } from "../../examples/vqa/eager.ts";
import spec from "../../examples/vqa/dual.ts";
import singleSpec from "../../examples/vqa/vqa.ts";
import { CompileError } from "../../compiler/diagnostics.ts";
import { agreementTests, type AgreementCase } from "./_vqa_agreement.ts";

const weights = randomWeights(vqaDualParams(vqaDualConfig), 12);

const cases: AgreementCase[] = [
  { name: "no merge" },
  { name: "ToMe (alpha=0), r=16", turbo: { r: 16, alpha: 0 } },
  { name: "Turbo, image class token, r=24", turbo: { r: 24 } },
  { name: "Turbo, S3, r=40 (the cap binds in later blocks)", turbo: { r: 40, fusion: "S3" } },
  { name: "fusion-layer merging: Turbo r=16 in the image encoder, then the context merged by the text class token's row, cross=12", turbo: { r: 16, cross: 12 } },
  { name: "fusion-layer merging, ToMe (alpha=0), r=4, cross=40 (the cap binds)", turbo: { r: 4, alpha: 0, cross: 40 } },
  { name: "fusion-layer merging, ToMe in the encoder r=16 and Turbo in the context (crossAlpha=5), cross=8", turbo: { r: 16, alpha: 0, crossAlpha: 5, cross: 8 } },
];

agreementTests(spec, weights, (t, q, p, turbo) => eagerVqaDual(vqaDualConfig, t, q, p, turbo), cases);

test("the image stream merges with its class token; the text's self-attention is left alone and its cross-attention gets the sizes", () => {
  const c = compile(spec, { turbo: { r: 16 } });
  const merges = c.graph.nodes.filter((n) => n.op === "turbo_merge");
  assert.is(merges.length, vqaDualConfig.depth);
  for (const m of merges) assert.is((m.attrs as { protect: number }).protect, 1);
  const blocks = new Map(c.plan.blocks.map((b) => [b.name, b]));
  assert.equal([0, 1, 2, 3].map((i) => blocks.get(`image.layer.${i}`)!.tokensOut), [83, 67, 51, 35]);
  for (let i = 0; i < vqaDualConfig.fusion; i++) assert.equal(blocks.get(`text.layer.${i}`)!.merged, 0);
  const explain = c.plan.explain ?? [];
  assert.ok(explain.some((e) => e.includes("the semantic value is the attention row of token 0 (the class token)") && e.includes("the first 1 tokens are protected")), explain.join("\n"));
  assert.ok(explain.includes("the merged token stream is the one the self-attention of image.layer.0, image.layer.1, image.layer.2, image.layer.3 reads (computed from input pixels)"), explain.join("\n"));
  assert.ok(explain.includes("not merged: the self-attention of text.layer.0, text.layer.1 reads a second token stream"), explain.join("\n"));
  assert.ok(explain.includes("proportional attention (+ log size on the keys) in the cross-attention of text.layer.0, text.layer.1: its keys are the merged tokens"), explain.join("\n"));
  // Both cross-attentions' softmaxes (over 35 merged keys) are computed from the log of the final sizes [B, 35, 1].
  const g = c.graph;
  const log = g.nodes.find((n) => n.op === "log" && n.type.shape[1] === 35 && (g.meta.get(n.id)?.scope ?? "").startsWith("text."));
  assert.ok(log !== undefined, "log of the merged sizes in the text encoder");
  // The log size reaches the logits through reshapes and broadcasts only; the add then feeds a softmax through reshapes only.
  const moves = new Set(["reshape", "broadcast", "transpose"]);
  const bias = new Set([log!.id]);
  for (const n of g.nodes) if (moves.has(n.op) && n.inputs.some((x) => typeof x === "number" && bias.has(x))) bias.add(n.id);
  const reached = new Set(g.nodes.filter((n) => n.op === "add" && n.inputs.some((x) => typeof x === "number" && bias.has(x))).map((n) => n.id));
  for (const n of g.nodes) if (n.op === "reshape" && reached.has(n.inputs[0] as number)) reached.add(n.id);
  const softmaxes = g.nodes.filter((n) => n.op === "softmax" && reached.has(n.inputs[0] as number));
  assert.equal(softmaxes.map((n) => [g.meta.get(n.id)?.scope, n.type.shape.slice(1)]), [["text.layer.0", [vqaDims(vqaDualConfig).textTokens, 35]], ["text.layer.1", [vqaDims(vqaDualConfig).textTokens, 35]]]);
});

test("fusion-layer merging: the first cross-attention's context is merged for the second, with the text class token's row; the plan says so", () => {
  const c = compile(spec, { turbo: { r: 16, cross: 12 } });
  const merges = c.graph.nodes.filter((n) => n.op === "turbo_merge");
  assert.is(merges.length, vqaDualConfig.depth + vqaDualConfig.fusion - 1);
  const context = merges.at(-1)!;
  assert.is(c.graph.meta.get(context.id)?.scope, "text.layer.0");
  assert.equal(context.type.shape.slice(1), [23, vqaDualConfig.dim]);
  // A semantic value over the 35 image keys (computed from the text's queries: the eager agreement above checks which row).
  assert.equal(c.graph.nodes[context.inputs[3] as number]!.type.shape.slice(1), [35]);
  assert.ok((c.plan.explain ?? []).includes("the cross-attention of text.layer.0 merges its context after reading it: 35 → 23 tokens for the later cross-attentions; the semantic value is the attention row of its query 0 (the querying stream's class token)"), String(c.plan.explain));
  assert.ok(c.plan.flops.perBatch < compile(spec, { turbo: { r: 16 } }).plan.flops.perBatch, "the second cross-attention reads fewer keys");
});

test("fusion-layer merging is refused with a clear option error where there is no second cross-attention over the merged tokens", () => {
  assert.throws(() => compile(singleSpec, { turbo: { r: 8, cross: 4 } }), (e: unknown) => e instanceof CompileError && e.message.includes("option cross: the model has no two cross-attentions reading the merged tokens"));
  assert.throws(() => compile(spec, { turbo: { r: 8, cross: [4, 4] } }), (e: unknown) => e instanceof CompileError && e.message.includes("option cross: the list has 2 entries but the model has 1 cross-attentions over the merged tokens"));
});

test.run();
