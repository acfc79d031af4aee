/** The pass pipeline: invariants after each pass, golden IR text, cost and memory plans. */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { compile, pipeline, runPasses } from "../../compiler/compile.ts";
import { add, input, linear, model, reshape, trace } from "../../compiler/dsl/mod.ts";
import { printGraph } from "../../compiler/ir/print.ts";
import { verify } from "../../compiler/ir/verify.ts";
import { canonicalize } from "../../compiler/passes/canonicalize.ts";
import { cost } from "../../compiler/passes/cost.ts";
import { cse } from "../../compiler/passes/cse.ts";
import { dce } from "../../compiler/passes/dce.ts";
import { decomposeAttention } from "../../compiler/passes/decompose_attention.ts";
import { lower } from "../../compiler/lower/program.ts";
import { planMemory } from "../../compiler/passes/plan_memory.ts";
import { s16, tiny } from "../../examples/vit/vit.ts";

const golden = (name: string) => fileURLToPath(new URL(`../golden/${name}`, import.meta.url));

function checkGolden(name: string, text: string): void {
  const path = golden(name);
  if (process.env.UPDATE_GOLDEN === "1") writeFileSync(path, text);
  assert.ok(existsSync(path), `golden file ${path} is missing; run with UPDATE_GOLDEN=1 to create it`);
  assert.fixture(text, readFileSync(path, "utf8"));
}

test("every pass keeps the IR invariants for tiny and S/16", () => {
  for (const spec of [tiny, s16]) compile(spec, { verify: true });
});

test("the tiny ViT's traced and final IR match the golden files", () => {
  const c = compile(tiny);
  checkGolden("vit_tiny.traced.tir", c.ir.traced);
  checkGolden("vit_tiny.tir", c.ir.final);
});

test("`decomposeAttention()` leaves no attention op", () => {
  const g = decomposeAttention(trace(tiny));
  verify(g);
  assert.is(g.nodes.filter((n) => n.op === "attention").length, 0);
  assert.is(g.nodes.filter((n) => n.op === "softmax").length, 2);
  assert.is(g.nodes.filter((n) => n.op === "matmul").length, 4);
});

test("`canonicalize()` makes every linear 2-D and folds reshape chains", () => {
  const g = dce(canonicalize(decomposeAttention(trace(s16))));
  verify(g);
  const linears = g.nodes.filter((n) => n.op === "linear");
  assert.is(linears.length, 2 + 12 * 6, "patch + head + 6 per block");
  for (const n of linears) assert.is(n.type.shape.length, 2, `linear %${n.id}`);
  for (const n of g.nodes) {
    if (n.op !== "reshape") continue;
    const src = n.inputs[0]!;
    if (typeof src === "number") assert.is.not(g.nodes[src]!.op, "reshape", `reshape %${n.id} of a reshape`);
  }
});

test("`cse()` shares the flattening reshape of q, k and v", () => {
  const before = dce(canonicalize(decomposeAttention(trace(tiny))));
  const after = dce(cse(before));
  verify(after);
  const reshapes = (g: typeof before) => g.nodes.filter((n) => n.op === "reshape").length;
  assert.is(reshapes(before) - reshapes(after), 2 * 2, "two per block");
});

test("`dce()` drops nodes and parameters no output needs", () => {
  const m = model("dead", () => {
    const x = input("x", ["B", 8]);
    linear(x, 4, { name: "unused" });
    return { y: add(reshape(x, ["B", 2, 4]), reshape(x, ["B", 2, 4])) };
  });
  const g = dce(trace(m));
  verify(g);
  assert.not.ok(g.params.has("unused.weight"));
  assert.is(g.nodes.filter((n) => n.op === "linear").length, 0);
  assert.is(g.nodes[0]!.op, "input");
});

test("`cost()` counts a linear layer's FLOPs as 2·rows·in·out plus the bias", () => {
  const m = model("one-linear", () => ({ y: linear(input("x", ["B", 10, 32]), 16, { name: "fc" }) }));
  const c = cost(runPasses(trace(m), pipeline()));
  assert.equal(c.total.flops, { perBatch: 10 * 16 * (2 * 32 + 1), fixed: 0 });
});

test("`planMemory()` disposes every intermediate tensor exactly once and never an input or output", () => {
  const graph = runPasses(trace(s16), pipeline());
  const { program } = planMemory(lower(graph));
  const disposed = program.steps.flatMap((s) => s.dispose);
  assert.is(new Set(disposed).size, disposed.length, "no double dispose");
  const outputs = new Set(program.outputs.map((o) => o.tensor));
  const inputs = new Set(program.inputs.map((i) => i.tensor));
  for (const t of disposed) assert.ok(!outputs.has(t) && !inputs.has(t), t);
  assert.is(disposed.length + outputs.size, program.steps.length);
});

test("the printed IR names ops, types and parameters in SSA form", () => {
  const text = printGraph(trace(tiny));
  assert.match(text, /^graph "vit-tiny"\(B\) \{$/m);
  assert.match(text, /^  %0: f32\[B,3,32,32\] = input\[name="pixels"\]$/m);
  assert.match(text, /= linear %\d+, @layer\.0\.mlp\.fc1\.weight, @layer\.0\.mlp\.fc1\.bias   # layer\.0$/m);
  assert.match(text, /= attention\[heads=4\] %\d+, %\d+, %\d+   # layer\.1$/m);
});

test.run();
