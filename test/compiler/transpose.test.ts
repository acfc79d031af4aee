/** compiler/lower/transpose.ts: high-rank transposes as ≤ 4-D stages, checked against tf.transpose. */

import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { compile } from "../../compiler/compile.ts";
import { permuteShape, planTranspose } from "../../compiler/lower/transpose.ts";
import { dimValue, type Shape } from "../../compiler/ir/types.ts";
import { s16 } from "../../examples/vit/vit.ts";

await tf.setBackend("cpu");

function permutations(n: number): number[][] {
  if (n === 1) return [[0]];
  return permutations(n - 1).flatMap((p) => Array.from({ length: n }, (_, i) => [...p.slice(0, i), n - 1, ...p.slice(i)]));
}

/** Runs the stages with tfjs and compares with one tf.transpose; returns the stage count. */
function check(shape: Shape, perm: number[], batch = 2): number {
  const concrete = shape.map((d) => dimValue(d, batch));
  const x = tf.reshape(tf.range(0, concrete.reduce((a, b) => a * b, 1)), concrete);
  const want = tf.transpose(x, perm);
  const stages = planTranspose(shape, perm);
  if (stages === undefined) {
    assert.ok(shape.length <= 4, `no plan for rank ${shape.length} ${JSON.stringify(shape)} ${perm}`);
    tf.dispose([x, want]);
    return 0;
  }
  let y = x;
  for (const s of stages) {
    assert.ok(s.shape.length <= 4, `stage of rank ${s.shape.length} for perm ${perm}`);
    assert.equal([...s.perm].sort(), [...s.shape.keys()], `stage perm ${s.perm} is a permutation`);
    y = tf.transpose(tf.reshape(y, s.shape.map((d) => dimValue(d, batch))), [...s.perm]);
  }
  const got = tf.reshape(y, want.shape);
  assert.equal(Array.from(got.dataSync()), Array.from(want.dataSync()), `shape ${JSON.stringify(shape)} perm ${perm}`);
  assert.equal(got.shape, permuteShape(concrete, perm));
  tf.dispose([x, want, y, got]);
  return stages.length;
}

test("rank ≤ 4 transposes are left to tfjs", () => {
  assert.is(planTranspose([2, 3, 4, 5], [3, 2, 1, 0]), undefined);
  assert.is(check([{ batch: 1 }, 197, 6, 64], [0, 2, 1, 3]), 0);
});

test("every permutation of a rank-5 tensor, with distinct sizes", () => {
  let staged = 0;
  for (const perm of permutations(5)) staged += check([2, 3, 4, 5, 6], perm) > 0 ? 1 : 0;
  assert.ok(staged > 0);
});

test("every permutation of a rank-6 tensor with a batch dimension and a size-1 axis", () => {
  for (const perm of permutations(6)) check([{ batch: 1 }, 3, 1, 2, 4, 5], perm, 3);
});

test("the patch embedding transpose takes two 4-D stages; merged groups take one", () => {
  assert.is(check([{ batch: 1 }, 3, 14, 16, 14, 16], [0, 2, 4, 1, 3, 5]), 2);
  // Axes 3 and 4 travel together: the merged view has rank 4, one stage.
  assert.is(check([2, 3, 4, 5, 6], [0, 2, 3, 4, 1]), 1);
  // Identity: a single stage of rank 1.
  assert.is(check([2, 3, 4, 5, 6], [0, 1, 2, 3, 4]), 1);
});

test("a merged dimension with B·B has no plan and stays one transpose", () => {
  assert.is(planTranspose([{ batch: 1 }, { batch: 1 }, 2, 3, 4], [1, 0, 3, 2, 4]), undefined);
});

test("the compiled S/16 program has no transpose above rank 4", () => {
  const c = compile(s16);
  const ranks = c.module.js.split("\n").filter((l) => l.includes("tf.transpose(")).map((l) => (l.match(/\/\/ f32\[(.*)\]/)?.[1] ?? "").split(",").length);
  assert.ok(ranks.length > 0);
  assert.ok(ranks.every((r) => r <= 4), `ranks ${ranks}`);
});

test.run();
