/** insertTurbo(): where merges go, the static schedule, options and their errors. */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { parseTurbo } from "../../compiler/cli.ts";
import { compile } from "../../compiler/compile.ts";
import { CompileError } from "../../compiler/diagnostics.ts";
import { trace } from "../../compiler/dsl/mod.ts";
import { verify } from "../../compiler/ir/verify.ts";
import { findMergeSites, insertTurbo, resolveSchedule, type TurboOptions } from "../../compiler/passes/insert_turbo.ts";
import { s16, tiny } from "../../examples/vit/vit.ts";

const traced = trace(s16);

test("`findMergeSites()` finds the 12 encoder blocks of S/16 and nothing else", () => {
  const sites = findMergeSites(traced);
  assert.equal(sites.map((s) => s.scope), Array.from({ length: 12 }, (_, i) => `layer.${i}`));
  for (const s of sites) {
    assert.is(traced.nodes[s.attention]!.op, "attention");
    assert.is(traced.nodes[s.residual]!.op, "add");
  }
});

test("`insertTurbo()` puts one merge after each attention residual and threads sizes into later attention", () => {
  const g = verify(insertTurbo(traced, { r: 8 }));
  const merges = g.nodes.filter((n) => n.op === "turbo_merge");
  assert.is(merges.length, 12);
  for (const m of merges) {
    const x = g.nodes[m.inputs[0] as number]!;
    assert.is(x.op, "add", "merges the residual sum");
    assert.is(g.meta.get(m.id)?.scope, g.meta.get(x.id)?.scope);
  }
  const attn = g.nodes.filter((n) => n.op === "attention");
  assert.is(attn[0]!.inputs.length, 3, "the first block sees unmerged tokens");
  for (const a of attn.slice(1)) {
    const size = g.nodes[a.inputs[3] as number]!;
    assert.is(size.op, "merged_size", "proportional attention in every later block");
  }
  for (const c of g.nodes.filter((n) => n.op === "cls_attention").slice(1)) assert.is(c.inputs.length, 3, "semantic value after the size bias");
});

test("`resolveSchedule()` follows the constant, list and ToMe (r, inflection) forms", () => {
  assert.equal(resolveSchedule(5, 3), [5, 5, 5]);
  assert.equal(resolveSchedule([1, 2, 3], 3), [1, 2, 3]);
  // lo = ⌊8·(1 − 0.5)⌋ = 4, hi = 12; block i of 5 gets ⌊4 + i·8/4⌋
  assert.equal(resolveSchedule({ r: 8, inflect: 0.5 }, 5), [4, 6, 8, 10, 12]);
  assert.equal(resolveSchedule({ r: 8, inflect: 0 }, 4), [8, 8, 8, 8]);
});

test("the static plan obeys r_ℓ = min(Υ, ⌊(N−1)/2⌋, max(0, N − threshold))", () => {
  for (const threshold of [0, 40, 100]) {
    const plan = compile(s16, { turbo: { r: 16, threshold } }).plan;
    let n = 197;
    for (const b of plan.blocks.filter((x) => x.name.startsWith("layer."))) {
      const r = Math.min(16, Math.floor((n - 1) / 2), Math.max(0, n - threshold));
      assert.is(b.tokensIn, n, `${b.name} tokens in`);
      assert.is(b.merged, r, `${b.name} r at threshold ${threshold}`);
      n -= r;
      assert.is(b.tokensOut, n);
      assert.ok(n >= Math.min(threshold, 197), "never below the floor");
    }
  }
});

test("Υ = 0 leaves the graph without merges and with the same FLOPs", () => {
  const plain = compile(s16);
  const zero = compile(s16, { turbo: { r: 0 } });
  assert.not.ok(zero.graph.nodes.some((n) => n.op === "turbo_merge"));
  assert.equal(zero.plan.flops, plain.plan.flops);
  assert.is(zero.plan.turbo?.flopsRatio, 1);
});

test("the FLOPs ratio of r = 16 on S/16 is reported against the unmerged model", () => {
  const c = compile(s16, { turbo: { r: 16 } });
  const ratio = c.plan.turbo!.flopsRatio;
  assert.equal(c.plan.turbo!.baselineFlops, compile(s16).plan.flops);
  assert.ok(ratio > 1.8 && ratio < 2.2, `ratio ${ratio}`);
});

const invalid: [TurboOptions, RegExp][] = [
  [{ r: -1 }, /option r: r -1 must be a non-negative integer/],
  [{ r: 2.5 }, /option r: r 2\.5 must be a non-negative integer/],
  [{ r: [1, 2] }, /option r: the list has 2 entries but the model has 12 attention blocks/],
  [{ r: 4, threshold: 198 }, /option threshold: 198 is above the 197 tokens entering the first block/],
  [{ r: 4, fusion: "S5" as never }, /option fusion: "S5" is not one of S1, S2, S3, S4/],
  [{ r: 4, metric: "values" as never }, /option metric: "values" is not "keys" or "queries"/],
  [{ r: 4, skip: [12] }, /option skip: block index 12 is out of range; the model has 12 attention blocks/],
  [{ r: 4, scale: 0 }, /option scale: 0 must be a positive number/],
  [{ r: { r: 4, inflect: 2 } }, /option inflect: 2 must lie in \[-1, 1\]/],
];
for (const [options, message] of invalid) {
  test(`\`insertTurbo()\` rejects ${JSON.stringify(options)} naming the option`, () => {
    assert.throws(() => insertTurbo(traced, options), (e: unknown) => e instanceof CompileError && message.test((e as Error).message));
  });
}

test("`skip` and the ToMe schedule reach the plan", () => {
  const plan = compile(tiny, { turbo: { r: 3, skip: [0] } }).plan;
  assert.equal(plan.blocks.filter((b) => b.name.startsWith("layer.")).map((b) => b.merged), [0, 3]);
});

test("`parseTurbo()` reads the CLI form and names a bad key", () => {
  assert.equal(parseTurbo("r=16,threshold=40,alpha=5,fusion=S1"), { r: 16, threshold: 40, alpha: 5, fusion: "S1" });
  assert.equal(parseTurbo("r=4:4:8"), { r: [4, 4, 8] });
  assert.equal(parseTurbo("r=4,protect=5,cls=true"), { r: 4, cls: true, protect: 5 });
  assert.throws(() => parseTurbo("r=4,protect=1.5"), /--turbo protect="1\.5" must be an integer/);
  assert.equal(parseTurbo("r=8,inflect=0.5,metric=queries,skip=0:3,sizes=true"), { r: { r: 8, inflect: 0.5 }, metric: "queries", skip: [0, 3], reportSizes: true });
  assert.throws(() => parseTurbo("threshold=4"), /needs r=N/);
  assert.throws(() => parseTurbo("r=4,alpha=x"), /--turbo alpha="x" must be a number/);
  assert.throws(() => parseTurbo("r=4,cls=maybe"), /--turbo cls="maybe" must be true or false/);
  assert.throws(() => parseTurbo("r=4,speed=11"), /unknown setting "speed"/);
});

test.run();
