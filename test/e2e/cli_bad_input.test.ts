/**
 * Bad or odd input that turbo-compile must accept, or refuse without writing
 * anywhere (issue 16); the refusals' messages are in test/fixtures/cli/cases.json.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { main } from "../../compiler/cli.ts";
import { CompileError } from "../../compiler/diagnostics.ts";
import { trace } from "../../compiler/dsl/mod.ts";
import { load } from "../../runtime/mod.ts";
import { tempDir } from "../_helpers.ts";
import grow from "../fixtures/cli_specs/grow_forever.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const specs = join(root, "test/fixtures/cli_specs");

async function cli(args: readonly string[]): Promise<{ exit: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const exit = await main(args, { out: (t) => (out += t), err: (t) => (err += t) });
  return { exit, out, err };
}

/** Every path under `dir`, relative to it. */
function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).sort();
}

test("a model named \"../../escaped\" or \"\" without --out writes nothing, anywhere", async () => {
  const sandbox = tempDir("turbograph-escape-");
  const work = join(sandbox, "a", "b");
  const { mkdirSync } = await import("node:fs");
  mkdirSync(work, { recursive: true });
  const before = tree(sandbox);
  const cwd = process.cwd();
  process.chdir(work);
  try {
    for (const spec of ["escape_name.ts", "empty_name.ts"]) {
      const r = await cli([join(specs, spec), "--no-check"]);
      assert.is(r.exit, 2, r.err);
      assert.match(r.err, /error: model name "(\.\.\/\.\.\/escaped)?" (would write outside compiled\/|is empty)/);
    }
  } finally {
    process.chdir(cwd);
  }
  assert.equal(tree(sandbox), before);
});

test("names holding `*/` and a line break compile, and the module loads and runs", async () => {
  const out = tempDir("turbograph-names-");
  const r = await cli([join(specs, "comment_names.ts"), "--no-check", "--out", out]);
  assert.is(r.exit, 0, r.err);
  const m = await load(out, { weights: { random: 1 }, backend: "cpu" });
  const y = m.run({ "in*/put": tf.ones([3, 4]) })["out*/\nput"]!;
  assert.equal(y.shape, [3, 2]);
  m.dispose();
});

test("a .tir file starting with a UTF-8 byte order mark compiles", async () => {
  const out = tempDir("turbograph-bom-");
  const r = await cli([join(root, "test/fixtures/tir/ok_bom.tir"), "--out", out, "--emit", "ir"]);
  assert.is(r.exit, 0, r.err);
  assert.match(readFileSync(join(out, "model.tir"), "utf8"), /^graph "bom"\(B\) \{/);
});

test("trace() keeps its budget from code too: maxNodes stops a growing build at its line, bad budgets are refused", () => {
  for (const [options, message] of [
    [{ maxNodes: 100 }, /^add: model "grow-forever" grew past 100 nodes while tracing/],
    [{ maxNodes: -1 }, /^trace\(\): maxNodes must be a positive number, not -1/],
    [{ timeoutMs: Number.NaN }, /^trace\(\): timeoutMs must be a positive number, not NaN/],
  ] as const) {
    try {
      trace(grow, options);
      assert.unreachable("traced");
    } catch (e) {
      assert.instance(e, CompileError);
      assert.match((e as Error).message, message);
    }
  }
});

test("--generation: a bad setting gets a caret under it and exit 2; a good one compiles the DiT with merge and restore", async () => {
  const spec = join(root, "examples/dit/dit.ts");
  const out = tempDir();
  const bad = await cli([spec, "--no-check", "--out", out, "--generation", "ratio=0.5,where=self+ffn"]);
  assert.is(bad.exit, 2);
  assert.match(bad.err, /insertGeneration: option where: "ffn" is not one of self, cross, mlp/);
  const caret = bad.err.split("\n").findIndex((l) => /^\s+\^$/.test(l));
  assert.ok(caret > 0, bad.err);
  const line = bad.err.split("\n")[caret - 1]!;
  assert.is(line.slice(bad.err.split("\n")[caret]!.indexOf("^")).startsWith("where="), true, bad.err);
  for (const [args, message] of [
    [["grid=14by14"], /--generation grid="14by14" must be ROWSxCOLUMNS/],
    [["speed=2"], /--generation: unknown setting "speed"/],
    [["ratio=0.5", "--turbo", "r=4"], /two modes of Turbo; give one/],
  ] as const) {
    const r = await cli([spec, "--no-check", "--out", out, "--generation", ...args]);
    assert.is(r.exit, 2, r.err);
    assert.match(r.err, message);
  }
  const good = await cli([spec, "--no-check", "--out", out, "--generation", "ratio=0.5,where=self+mlp,alpha=0,grid=14x14,window=2x2,seed=1"]);
  assert.is(good.exit, 0, good.err);
  const plan = JSON.parse(readFileSync(join(out, "plan.json"), "utf8"));
  assert.equal(plan.turbo.options, { mode: "generation", ratio: 0.5, where: ["self", "mlp"], alpha: 0, grid: [14, 14], window: [2, 2], seed: 1 });
  assert.equal(plan.blocks.filter((b: { name: string }) => b.name.startsWith("block.")).map((b: { merged: number }) => b.merged), [196, 196, 196, 196]);
});

test.run();
