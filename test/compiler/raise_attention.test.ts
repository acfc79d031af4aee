/**
 * raiseAttention(): attention written from primitives becomes the one
 * `attention` op (the builder's graph, exactly), near misses stay as written
 * with the reason in the plan, and a bias travels as an operand.
 */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { compile } from "../../compiler/compile.ts";
import { CompileError } from "../../compiler/diagnostics.ts";
import { add, einsum, input, layerNorm, linear, model, rearrange, scale, softmax, trace } from "../../compiler/dsl/mod.ts";
import { parseGraph } from "../../compiler/ir/parse.ts";
import { printGraph } from "../../compiler/ir/print.ts";
import { verify } from "../../compiler/ir/verify.ts";
import { dce } from "../../compiler/passes/dce.ts";
import { inferShapes } from "../../compiler/passes/infer_shapes.ts";
import { raiseAttentionWithNotes } from "../../compiler/passes/raise_attention.ts";
import { formatReport } from "../../compiler/report.ts";
import { vitConfigs } from "../../examples/vit/config.ts";
import { tiny } from "../../examples/vit/vit.ts";
import { einsumVit, flatVit, handwrittenVit, matmulVit, type CoreName } from "../fixtures/specs/_handwritten_vit.ts";

const prepared = (spec: Parameters<typeof trace>[0]) => dce(inferShapes(trace(spec)));
const raisedNote = (block: number) => `block layer.${block}: self-attention written from primitives, raised to attention[heads=4] (d_h = 16)`;

const builder = compile(tiny);
const builderTurbo = compile(tiny, { turbo: { r: 3 } });

for (const [name, spec] of [["einsum + rearrange, scale on the logits", einsumVit], ["reshape → transpose → matmul from x.shape, scale on q", matmulVit], ["heads batched as [B·h, N, d], kᵀ before the split, scale split over q and k", flatVit]] as const) {
  test(`${name}: raised to the builder's graph, with and without Turbo`, () => {
    const c = compile(spec, { verify: true });
    assert.equal(c.plan.explain, [raisedNote(0), raisedNote(1)]);
    assert.is(c.ir.final, builder.ir.final, "the final IR is the encoderBlock ViT's, line for line");
    const t = compile(spec, { verify: true, turbo: { r: 3 } });
    assert.is(t.ir.final, builderTurbo.ir.final);
    assert.equal(t.plan.blocks, builderTurbo.plan.blocks);
  });
}

test("the pass switched off compiles the attention as written: no attention op, no notes", () => {
  const c = compile(einsumVit, { verify: true, raiseAttention: false });
  assert.is(c.plan.explain, undefined);
  assert.ok(!c.ir.final.includes("attention"));
  assert.throws(() => compile(einsumVit, { raiseAttention: false, turbo: { r: 3 } }), (e: unknown) => e instanceof CompileError && /no self-attention block/.test(e.message));
});

const nearMisses: [CoreName, string][] = [
  ["softmaxOverQueries", "softmax is over the query axis"],
  ["wrongScale", "the logits are scaled by 0.2, not 1/√d_h = 0.25 (d_h = 16)"],
  ["wrongJoin", "the heads are joined as (d h), not (h d)"],
];

for (const [core, reason] of nearMisses) {
  test(`near miss ${core}: left exactly as written, the plan says "${reason}"`, () => {
    const spec = handwrittenVit(vitConfigs.tiny, "near-miss", [core]);
    const g = prepared(spec);
    const r = raiseAttentionWithNotes(g);
    assert.equal(r.notes, [`block layer.0: no merge — ${reason}`, `block layer.1: no merge — ${reason}`]);
    assert.is(printGraph(r.graph), printGraph(g), "not one node changed");
    const c = compile(spec, { verify: true });
    assert.equal(c.plan.explain, r.notes);
    assert.ok(formatReport(c.plan, 1, { explain: true }).includes(`block layer.0: no merge — ${reason}`));
    assert.throws(() => compile(spec, { turbo: { r: 3 } }), (e: unknown) => e instanceof CompileError && /no self-attention block/.test(e.message));
  });
}

test("a near miss in one block does not stop the next block from raising and merging", () => {
  const spec = handwrittenVit(vitConfigs.tiny, "mixed", ["wrongScale", "einsumCore"]);
  const c = compile(spec, { verify: true, turbo: { r: 3, alpha: 0 } });
  assert.equal(c.plan.explain, [
    "block layer.0: no merge — the logits are scaled by 0.2, not 1/√d_h = 0.25 (d_h = 16)",
    raisedNote(1),
    "merges from layer.1 on: no token is protected; alpha=0: no semantic value (plain ToMe)",
  ]);
  assert.equal(c.plan.blocks.filter((b) => b.name.startsWith("layer.")).map((b) => [b.name, b.tokensIn, b.merged, b.tokensOut]), [
    ["layer.0", 17, 0, 17],
    ["layer.1", 17, 3, 14],
  ]);
  assert.ok(formatReport(c.plan, 1).includes("--explain"), "without --explain the report points at it");
});

test("an additive mask becomes the attention's bias operand; the IR text round-trips", () => {
  const spec = handwrittenVit(vitConfigs.tiny, "masked", ["einsumCore"], { mask: true });
  const r = raiseAttentionWithNotes(prepared(spec));
  assert.equal(r.notes, [0, 1].map((i) => `block layer.${i}: self-attention with an additive bias written from primitives, raised to attention[heads=4] (d_h = 16)`));
  const attn = r.graph.nodes.filter((n) => n.op === "attention");
  assert.is(attn.length, 2);
  for (const a of attn) {
    assert.equal(a.attrs, { heads: 4, bias: true });
    const bias = r.graph.nodes[a.inputs[3] as number]!;
    assert.is(bias.op, "input", "a [B,1,1,N] mask after the scale is used as it is");
  }
  const text = printGraph(verify(r.graph));
  assert.ok(text.includes("attention[heads=4, bias=true]"));
  assert.is(printGraph(parseGraph(text)), text);
});

test("a scale after the bias scales the bias too; logits folded to [B·h, N, M] get the bias regrouped to [B, h, N, M]", () => {
  const spec = model("flat-bias", () => {
    const x = input("x", ["B", 5, 8]);
    const mask = input("mask", ["B", 5, 5]);
    const h = layerNorm(x, { name: "ln" });
    const [q, k, v] = ["q", "k", "v"].map((n) => rearrange(linear(h, 8, { name: n }), "b n (h d) -> (b h) n d", { h: 2 }));
    const logits = rearrange(einsum("b n d, b m d -> b n m", q!, k!), "(b h) n m -> b h n m", { h: 2 });
    const p = rearrange(softmax(scale(add(logits, rearrange(mask, "b n m -> b 1 n m")), 0.5)), "b h n m -> (b h) n m");
    return { y: rearrange(einsum("b n m, b m d -> b n d", p, v!), "(b h) n d -> b n (h d)", { h: 2 }) };
  });
  const r = raiseAttentionWithNotes(prepared(spec));
  assert.is(r.notes.length, 1);
  assert.match(r.notes[0]!, /^attention at raise_attention\.test\.ts:\d+: self-attention with an additive bias written from primitives, raised to attention\[heads=2\] \(d_h = 4\)$/);
  const a = r.graph.nodes.find((n) => n.op === "attention")!;
  const bias = r.graph.nodes[a.inputs[3] as number]!;
  assert.is(bias.op, "scale");
  assert.is((bias.attrs as { value: number }).value, 0.5);
});

test("cross-attention is told apart by where k and v come from", () => {
  const spec = model("cross", () => {
    const x = input("x", ["B", 5, 8]);
    const ctx = input("context", ["B", 7, 8]);
    const q = rearrange(linear(x, 8, { name: "q" }), "b n (h d) -> b h n d", { h: 2 });
    const [k, v] = ["k", "v"].map((n) => rearrange(linear(ctx, 8, { name: n }), "b m (h d) -> b h m d", { h: 2 }));
    const p = softmax(scale(einsum("b h n d, b h m d -> b h n m", q, k!), 0.5));
    return { y: rearrange(einsum("b h n m, b h m d -> b h n d", p, v!), "b h n d -> b n (h d)") };
  });
  const r = raiseAttentionWithNotes(prepared(spec));
  assert.match(r.notes[0]!, /: cross-attention written from primitives, raised to attention\[heads=2\] \(d_h = 4\)$/);
  const a = r.graph.nodes.find((n) => n.op === "attention")!;
  assert.equal(a.type.shape, [{ batch: 1 }, 5, 8]);
  assert.is(r.graph.nodes[a.inputs[1] as number]!.op, "linear");
});

test("probabilities that are also an output are left alone; a classifier's softmax is not attention at all", () => {
  const spec = model("leaky", () => {
    const x = input("x", ["B", 5, 8]);
    const [q, k, v] = ["q", "k", "v"].map((n) => rearrange(linear(x, 8, { name: n }), "b n (h d) -> b h n d", { h: 2 }));
    const p = softmax(scale(einsum("b h n d, b h m d -> b h n m", q!, k!), 0.5));
    const y = rearrange(einsum("b h n m, b h m d -> b h n d", p, v!), "b h n d -> b n (h d)");
    return { y, p, classes: softmax(linear(x, 3, { name: "head" })) };
  });
  const g = prepared(spec);
  const r = raiseAttentionWithNotes(g);
  assert.is(r.notes.length, 1);
  assert.match(r.notes[0]!, /: no merge — softmax %\d+ inside the attention is also used outside it \(as an output\)$/);
  assert.is(printGraph(r.graph), printGraph(g));
});

test("the attention shape rule checks the bias: it must broadcast to [B, h, N, M]", () => {
  const text = `graph "g"(B) {
  %0: f32[B,5,8] = input[name="x"]
  %1: f32[B,1,5,4] = input[name="bias"]
  %2: f32[B,5,8] = attention[heads=2, bias=true] %0, %0, %0, %1
  return y=%2
}
`;
  assert.throws(() => parseGraph(text), (e: unknown) => e instanceof CompileError && e.message.includes("bias has shape [B,1,5,4] but must broadcast to the logits [B,2,5,5]"));
  assert.ok(parseGraph(text.replace("f32[B,1,5,4]", "f32[B,1,5,5]").replace("[B,1,5,4]", "[B,1,5,5]")));
});

test.run();
