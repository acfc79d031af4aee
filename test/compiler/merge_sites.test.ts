/**
 * Merge sites from the residual stream, sizes by stream identity, re-typing
 * after a merge and its refusals, protected tokens from the graph (issue 11).
 */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { compile } from "../../compiler/compile.ts";
import { CompileError } from "../../compiler/diagnostics.ts";
import { add, attention, block, broadcast, input, layerNorm, linear, mean, mlp, model, param, rearrange, reshape, slice, trace, type Tensor } from "../../compiler/dsl/mod.ts";
import type { Graph } from "../../compiler/ir/graph.ts";
import { verify } from "../../compiler/ir/verify.ts";
import { analyseMergeSites, insertTurbo } from "../../compiler/passes/insert_turbo.ts";
import { corpus, spec, type Family } from "../e2e/_turbo_corpus.ts";

const forms: Record<Family, string[]> = {
  deit: ["pre-norm", "pre-norm"],
  registers: ["pre-norm", "pre-norm"],
  layerscale: ["pre-norm", "pre-norm"],
  postnorm: ["post-norm", "post-norm"],
  parallel: ["parallel", "parallel"],
  meanpool: ["pre-norm", "pre-norm"],
  twostream: ["pre-norm", "pre-norm"],
};

for (const [family, want] of Object.entries(forms) as [Family, string[]][]) {
  test(`\`analyseMergeSites()\` finds the ${family} blocks as ${want.join(", ")} sites, in their own scopes`, () => {
    const g = trace(spec(corpus(family)));
    const { sites } = analyseMergeSites(g);
    assert.equal(sites.map((s) => s.form), want);
    assert.equal(sites.map((s) => s.scope), ["b0", "b1"]);
    for (const s of sites) {
      const node = g.nodes[s.residual]!;
      assert.is(node.op, family === "postnorm" ? "layer_norm" : "add", "merge after the residual (after its norm in post-norm)");
    }
  });
}

test("two-stream: the image merges, the text's self-attention never does, and its cross-attention over the merged image gets their sizes", () => {
  const traced = trace(spec(corpus("twostream")));
  const { skipped } = analyseMergeSites(traced);
  assert.equal(skipped.map((s) => s.reason.split(":")[0]!.split(";")[0]), ["self-attention over a second token stream", "cross-attention", "self-attention over a second token stream", "cross-attention"]);
  const g = verify(insertTurbo(traced, { r: 3 }));
  const attn = g.nodes.filter((n) => n.op === "attention");
  const scopeOf = (id: number) => g.meta.get(id)?.scope;
  const sized = attn.map((a) => `${scopeOf(a.id)}:${a.inputs.length === 4 ? "sized" : "plain"}`);
  // b0 image (before any merge), t0 self, t0 cross (sized), b1 image (sized), t1 self, t1 cross (sized)
  assert.equal(sized, ["b0:plain", "t0:plain", "t0:sized", "b1:sized", "t1:plain", "t1:sized"]);
  for (const m of g.nodes.filter((n) => n.op === "turbo_merge")) assert.ok(/^b\d$/.test(scopeOf(m.id)!), "only image blocks merge");
});

/** A block with self-attention, then cross-attention to a context of the same length, then an MLP. */
const selfThenCross = model("self-then-cross", () => {
  const x0 = input("x", ["B", 9, 8]);
  const ctx = input("ctx", ["B", 9, 8]); // as long as the image stream: lengths must not decide
  let x = add(x0, broadcast(reshape(param("cls", [1, 8]), [1, 1, 8]), ["B", 9, 8])); // no front token: α = 0 below
  for (let i = 0; i < 2; i++) {
    x = block(`b${i}`, () => {
      const h = add(x, attention(layerNorm(x, { name: `b${i}.ln1` }), { heads: 2, name: `b${i}.self` }));
      const c = add(h, attention(layerNorm(h, { name: `b${i}.ln2` }), { heads: 2, name: `b${i}.cross`, context: ctx }));
      return add(c, mlp(layerNorm(c, { name: `b${i}.ln3` }), { hidden: 16, name: `b${i}.mlp` }));
    });
  }
  // A later self-attention over the context stream: same length, other tokens, no sizes.
  const y = attention(ctx, { heads: 2, name: "ctx.attn" });
  return { out: add(linear(mean(x, [1]), 4, { name: "head" }), linear(mean(y, [1]), 4, { name: "ctx.head" })) };
});

test("self- then cross-attention in one block: the merge follows the self-attention residual; the context (of equal length) is never merged nor sized", () => {
  const traced = trace(selfThenCross);
  const { sites } = analyseMergeSites(traced);
  const qWeight = (id: number) => traced.nodes[traced.nodes[id]!.inputs[0] as number]!.inputs[1];
  assert.equal(sites.map((s) => qWeight(s.attention)), ["b0.self.q.weight", "b1.self.q.weight"]);
  for (const s of sites) {
    const residual = traced.nodes[s.residual]!;
    assert.is(residual.op, "add");
    const proj = residual.inputs.map((i) => traced.nodes[i as number]!).find((n) => n.op === "linear");
    assert.ok(proj !== undefined && proj.inputs[0] === s.attention, "the residual add of the self-attention's projection");
  }
  const g = verify(insertTurbo(traced, { r: 2, alpha: 0 }));
  const merges = g.nodes.filter((n) => n.op === "turbo_merge");
  assert.is(merges.length, 2);
  const attn = g.nodes.filter((n) => n.op === "attention");
  // b0 self, b0 cross (keys: the context, 9 tokens), b1 self (sized), b1 cross, ctx.attn
  assert.equal(attn.map((a) => a.inputs.length), [3, 3, 4, 3, 3]);
  assert.equal(attn.map((a) => a.type.shape[1]), [9, 7, 7, 5, 9]);
});

function refusal(build: (x: Tensor) => Tensor, turbo = { r: 2, alpha: 0 }): CompileError {
  const spec = model("refuse", () => {
    let x = input("x", ["B", 9, 8]);
    x = block("b0", () => add(x, attention(layerNorm(x, { name: "ln" }), { heads: 2, name: "attn" })));
    return { y: block("after", () => build(x)) };
  });
  try {
    compile(spec, { turbo });
  } catch (e) {
    if (e instanceof CompileError) return e;
    throw e;
  }
  throw new Error("compiled");
}

test("after a merge, a position embedding added by row is refused at the user's line, naming the op and both counts", () => {
  const e = refusal((x) => add(x, param("late.pos", [9, 8])));
  assert.match(e.message, /insertTurbo: add traced with 9 tokens, but after the merge in b0 the token stream has 7: the parameter @late\.pos .* add it before the first merge/);
  assert.match(e.loc?.file ?? "", /merge_sites\.test\.ts$/);
});

test("after a merge, a reshape folding the token axis is refused; one keeping it is re-typed", () => {
  const e = refusal((x) => reshape(x, ["B", 72]));
  assert.match(e.message, /insertTurbo: reshape traced with 9 tokens, but after the merge in b0 the token stream has 7: this reshape to \[B,72\] folds the token axis/);
  assert.match(e.loc?.file ?? "", /merge_sites\.test\.ts$/);
  const ok = compile(model("keeps", () => {
    let x = input("x", ["B", 9, 8]);
    x = block("b0", () => add(x, attention(layerNorm(x, { name: "ln" }), { heads: 2, name: "attn" })));
    const heads = rearrange(reshape(x, ["B", x.shape[1] as number, 2, 4]), "b n h d -> b h n d");
    return { y: mean(heads, [2]) };
  }), { verify: true, turbo: { r: 2, alpha: 0 } });
  assert.ok(ok.graph.nodes.some((n) => n.op === "reshape" && n.type.shape[1] === 7 && n.type.shape.length === 4));
});

test("after a merge, a slice reaching past the merged tokens is refused; the tail slice is re-typed, a front slice kept", () => {
  const e = refusal((x) => slice(x, { axis: 1, start: 0, end: 8 }));
  assert.match(e.message, /insertTurbo: slice traced with 9 tokens, but after the merge in b0 the token stream has 7: the slice \[0, 8\) of the token axis reaches past the 7 merged tokens/);
  assert.match(e.loc?.file ?? "", /merge_sites\.test\.ts$/);
  const ok = compile(model("tail", () => {
    let x = input("x", ["B", 9, 8]);
    x = block("b0", () => add(x, attention(layerNorm(x, { name: "ln" }), { heads: 2, name: "attn" })));
    return { y: add(mean(slice(x, { axis: 1, start: 2, end: 9 }), [1]), mean(slice(x, { axis: 1, start: 0, end: 4 }), [1])) };
  }), { verify: true, turbo: { r: 2, alpha: 0 } });
  const slices = ok.graph.nodes.filter((n) => n.op === "slice").map((n) => (n.op === "slice" ? [n.attrs.start, n.attrs.end] : []));
  assert.equal(slices, [[2, 7], [0, 4]]);
});

test("a model with no class token and α ≠ 0 is refused naming the choices; α = 0 or cls=true compile", () => {
  const e = refusal((x) => x, { r: 2, alpha: 5 });
  assert.match(e.message, /insertTurbo: option alpha: model "refuse" has no class token to take the semantic value from \(no token is concatenated from a parameter at the front of the token stream\); choose alpha=0 \(plain ToMe: merge by redundancy alone\), or cls=true/);
  assert.ok(refusal((x) => reshape(x, ["B", 72]), { r: 2, alpha: 0 }) instanceof CompileError, "α = 0 reaches the pass's later checks");
});

const protectOf = (g: Graph) => g.nodes.filter((n) => n.op === "turbo_merge").map((n) => (n.op === "turbo_merge" ? n.attrs.protect : -1));

test("protected tokens come from the graph: 1 (class), 2 (class + distillation), 5 (class + 4 registers), 0 (none); options override", () => {
  const of = (family: Family, turbo: object = {}) => protectOf(compile(spec(corpus(family)), { turbo: { r: 2, ...(family === "meanpool" ? { alpha: 0 } : {}), ...turbo } }).graph);
  assert.equal(of("layerscale"), [1, 1]);
  assert.equal(of("deit"), [2, 2]);
  assert.equal(of("registers"), [5, 5]);
  assert.equal(of("meanpool"), [0, 0]);
  assert.equal(of("layerscale", { protect: 3 }), [3, 3]);
  assert.equal(of("registers", { protect: 1 }), [1, 1], "the registers may then merge; the head's tail slice follows the count");
  assert.equal(of("twostream", { cls: false, alpha: 0 }), [0, 0]);
  assert.equal(of("layerscale", { cls: false, alpha: 0 }), [0, 0]);
  assert.throws(() => of("layerscale", { cls: false }), /option alpha: .*\(the option cls=false says position 0 is not one\)/);
  assert.equal(of("meanpool", { cls: true, alpha: 5 }), [1, 1]);
});

test.run();
