/**
 * The benchmark's merge share (bench/turbo_share.ts): which steps of a
 * compiled program are Turbo's, and the per-step timer that attributes a run.
 */

import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { compile } from "../../compiler/compile.ts";
import { loadTimed, turboNodes } from "../../bench/turbo_share.ts";
import { tiny } from "../../examples/vit/vit.ts";

const shapeOf = (c: ReturnType<typeof compile>, id: number) => JSON.stringify(c.graph.nodes[id]!.type.shape);

test("an unmerged program has no Turbo steps", () => {
  assert.is(turboNodes(compile(tiny).graph).size, 0);
});

test("Turbo's nodes: merge, sizes, metric, class-attention row, log-size adds — not the model's attention", () => {
  const c = compile(tiny, { turbo: { r: 4 } });
  const turbo = turboNodes(c.graph);
  const ops = (scope: string) => c.graph.nodes.filter((n) => turbo.has(n.id) && c.graph.meta.get(n.id)?.scope === scope).map((n) => n.op);
  const count = (xs: string[], op: string) => xs.filter((x) => x === op).length;
  for (const scope of ["layer.0", "layer.1"]) {
    const o = ops(scope);
    assert.is(count(o, "turbo_merge"), 1, scope);
    assert.is(count(o, "matmul"), 1, `${scope}: only the class row's q₀·kᵀ`);
    assert.is(count(o, "softmax"), 1, `${scope}: only the class row's softmax`);
    assert.is(count(o, "linear"), 0, `${scope}: no projection is Turbo's`);
  }
  assert.is(count(ops("layer.0"), "fill"), 1, "the initial sizes");
  assert.is(count(ops("layer.1"), "log"), 1, "log size for proportional attention");
  assert.is(count(ops("layer.1"), "add"), 2, "log size on the block's logits and on the class row's");
  // Every Turbo matmul is a single-query row [B·h, 1, N]; the block's own q·kᵀ and p·v are the model's.
  for (const n of c.graph.nodes) if (n.op === "matmul" && turbo.has(n.id)) assert.match(shapeOf(c, n.id), /^\[\{"batch":4\},1,/);
  assert.ok(c.graph.nodes.some((n) => n.op === "matmul" && !turbo.has(n.id) && c.graph.meta.get(n.id)?.scope === "layer.1"));
});

test("loadTimed times every step of a run; Turbo's share is a fraction of it", async () => {
  const c = compile(tiny, { turbo: { r: 4 } });
  const dir = mkdtempSync(join(tmpdir(), "turbograph-share-"));
  writeFileSync(join(dir, "model.mjs"), c.module.js);
  const timed = await loadTimed(c, await import(pathToFileURL(join(dir, "model.mjs")).href), { weights: { random: 3 }, backend: "cpu" });
  rmSync(dir, { recursive: true, force: true });
  const x = tf.randomUniform([2, 3, 32, 32], 0, 1, "float32", 1);
  tf.dispose(Object.values(timed.model.run({ pixels: x })));
  assert.is(timed.stepMs.length, c.program.steps.length);
  assert.ok(timed.stepMs.every((ms) => ms >= 0));
  assert.ok(timed.turboSteps.length > 0 && timed.turboSteps.length < c.program.steps.length);
  const all = timed.stepMs.reduce((a, b) => a + b, 0);
  const share = timed.turboSteps.reduce((a, i) => a + timed.stepMs[i]!, 0) / all;
  assert.ok(share > 0 && share < 1, `share ${share}`);
  x.dispose();
  timed.model.dispose();
});

test.run();
