/** The README's path: turbo-compile a spec, then run the compiled module from a script. */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { tempDir } from "../_helpers.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const tsx = (args: string[]) => execFileSync(process.execPath, ["--import", "tsx", ...args], { cwd: root, encoding: "utf8", stdio: "pipe" });

test("`turbo-compile` writes the module, IR and plan, and run.ts runs it on wasm", () => {
  const out = tempDir("turbograph-cli-");
  const report = tsx(["compiler/cli.ts", "examples/vit/vit.ts", "--out", out, "--batch", "4"]);
  assert.match(report, /model vit-tiny: \d+ kernel steps, 40 parameters/);
  assert.match(report, /layer\.1\s+17\s+0\s+17/);
  assert.match(report, /predicted peak activation memory at batch 4/);
  assert.equal(readdirSync(out).sort(), ["model.mjs", "model.tir", "model.traced.tir", "model.ts", "plan.json", "plan.txt"]);
  const plan = JSON.parse(readFileSync(join(out, "plan.json"), "utf8"));
  assert.is(plan.format, "turbograph.plan/1");
  assert.is(plan.params.length, 40);
  const run = tsx(["examples/vit/run.ts", out, "--backend", "wasm", "--batch", "2"]);
  assert.match(run, /model vit-tiny on backend wasm \(requested\)/);
  assert.match(run, /image 0: class \d/);
  assert.match(run, /image 1: class \d/);
});

test("`turbo-compile --emit ir` writes only the IR files", () => {
  const out = tempDir("turbograph-cli-");
  tsx(["compiler/cli.ts", "examples/vit/vit.ts", "--model", "ti16", "--out", out, "--emit", "ir"]);
  assert.equal(readdirSync(out).sort(), ["model.tir", "model.traced.tir"]);
  assert.not.ok(existsSync(join(out, "model.mjs")));
  assert.match(readFileSync(join(out, "model.tir"), "utf8"), /^graph "vit-ti16"\(B\) \{/);
});

test("`turbo-compile --explain` lists which stream merges and which cross-attention gets the sizes", () => {
  const out = tempDir("turbograph-cli-");
  const plain = tsx(["compiler/cli.ts", "examples/vqa/dual.ts", "--no-check", "--out", out, "--emit", "plan", "--turbo", "r=16"]);
  assert.not.match(plain, /explain:/);
  // Outside blocks, the ops come from both streams: no token counts are claimed for them.
  assert.match(plain, /\(outside blocks\)\s+-\s+0\s+-\s/);
  const report = tsx(["compiler/cli.ts", "examples/vqa/dual.ts", "--no-check", "--out", out, "--emit", "plan", "--turbo", "r=16", "--explain"]);
  assert.match(report, /explain:\n {2}merges from image\.layer\.0 on: the first 1 tokens are protected/);
  assert.match(report, /not merged: the self-attention of text\.layer\.0, text\.layer\.1 reads a second token stream/);
  assert.match(report, /proportional attention \(\+ log size on the keys\) in the cross-attention of text\.layer\.0, text\.layer\.1/);
});

test("`turbo-compile --help` prints the usage", () => {
  assert.match(tsx(["compiler/cli.ts", "--help"]), /Usage: turbo-compile <spec\.ts \| graph\.tir> \[options\]/);
});

test.run();
