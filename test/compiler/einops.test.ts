/**
 * rearrange / reduce / einsum: the IR they trace to, and their numbers once
 * compiled and run, against tfjs computing the same thing directly.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  attention,
  einsum,
  input,
  linear,
  model,
  rearrange,
  reduce,
  scale,
  softmax,
  trace,
} from "../../compiler/dsl/mod.ts";
import { SyntaxProblem } from "../../compiler/_syntax.ts";
import { parsePattern, planEinsum, planRearrange } from "../../compiler/dsl/pattern.ts";
import { verify } from "../../compiler/ir/verify.ts";
import { load, selectBackend } from "../../runtime/mod.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { compileToDir, relativeError } from "../_helpers.ts";

const ops = (spec: Parameters<typeof trace>[0]) => trace(spec).nodes.filter((n) => n.op !== "input").map((n) => n.op);

test("`parsePattern()` reads inputs, groups, units and the arrow with offsets", () => {
  const p = parsePattern("b n (h d), b m 1 -> b h n m");
  assert.is(p.inputs.length, 2);
  assert.equal(p.inputs[0]!.terms[2], { kind: "group", axes: [{ kind: "axis", name: "h", offset: 5 }, { kind: "axis", name: "d", offset: 7 }], offset: 4, text: "(h d)" });
  assert.equal(p.inputs[1]!.terms[2], { kind: "unit", offset: 15 });
  assert.is(p.arrow, 17);
  assert.equal(p.commas, [9]);
});

test("`rearrange()` splits heads with one reshape and one transpose, and adds nothing for an identity", () => {
  const heads = model("heads", () => {
    const x = input("x", ["B", 17, 384]);
    const y = rearrange(x, "b n (h d) -> b h n d", { h: 6 });
    assert.equal(y.shape, [{ batch: 1 }, 6, 17, 64]);
    return { y };
  });
  assert.equal(ops(heads), ["reshape", "transpose"]);
  const same = model("same", () => {
    const x = input("x", ["B", 4]);
    return { y: rearrange(x, "b d -> b d") };
  });
  assert.equal(ops(same), []);
  const merged = model("merged", () => {
    const x = input("x", ["B", 17, 384]);
    const y = rearrange(x, "b n d -> (b n) d");
    assert.equal(y.shape, [{ batch: 17 }, 384]);
    return { y: rearrange(y, "(b n) d -> b n d", { n: 17 }) };
  });
  assert.equal(ops(merged), ["reshape", "reshape"]);
});

test("`reduce()` maps mean, sum and max to their IR ops over the dropped axes", () => {
  const m = model("reduce", () => {
    const x = input("x", ["B", 17, 384]);
    const a = reduce(x, "b n d -> b d", "mean");
    const s = reduce(x, "b n (h d) -> b h", "sum", { h: 6 });
    const mx = reduce(x, "b n d -> b d 1", "max");
    assert.equal(mx.shape, [{ batch: 1 }, 384, 1]);
    assert.equal(s.shape, [{ batch: 1 }, 6]);
    return { a, s, mx };
  });
  const g = trace(m);
  verify(g);
  assert.equal(
    g.nodes.filter((n) => ["mean", "sum", "max"].includes(n.op)).map((n) => [n.op, n.attrs]),
    [["mean", { axes: [1], keepDims: false }], ["sum", { axes: [1, 3], keepDims: false }], ["max", { axes: [1], keepDims: false }]],
  );
});

test("`einsum()` is one matmul with untransposed operands, batched over shared output axes", () => {
  const m = model("einsum", () => {
    const q = input("q", ["B", 6, 17, 64]);
    const k = input("k", ["B", 6, 17, 64]);
    const logits = einsum("b h n d, b h m d -> b h n m", q, k);
    assert.equal(logits.shape, [{ batch: 1 }, 6, 17, 17]);
    return { logits };
  });
  const g = trace(m);
  verify(g);
  const mm = g.nodes.filter((n) => n.op === "matmul");
  assert.is(mm.length, 1);
  const [a, b] = mm[0]!.inputs.map((i) => g.nodes[i as number]!.type.shape);
  assert.equal(a, [{ batch: 6 }, 17, 64]);
  assert.equal(b, [{ batch: 6 }, 64, 17], "k is transposed by an explicit transpose, not by the matmul");
});

test("random edits of patterns give problems at offsets inside the pattern, never a crash", () => {
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const patterns = ["b n (h d) -> b h n d", "b h n d, b h m d -> b h n m", "b (n k) d -> b n", "b 1 d -> b d"];
  const alphabet = "bnhdmk()1,-> .x";
  for (let i = 0; i < 5000; i++) {
    let p = patterns[i % 4]!;
    const at = Math.floor(rnd() * (p.length + 1));
    p = rnd() < 0.5 ? p.slice(0, at) + alphabet[Math.floor(rnd() * alphabet.length)] + p.slice(at) : p.slice(0, at) + p.slice(at + 1);
    try {
      const pat = parsePattern(p);
      if (pat.inputs.length === 2) planEinsum(pat, [[{ batch: 1 }, 6, 17, 64], [{ batch: 1 }, 6, 17, 64]], { op: "einsum", batch: "B" });
      else planRearrange(pat, [{ batch: 1 }, 17, 384], { op: "reduce", batch: "B", sizes: { h: 6, k: 17 }, reduces: i % 3 === 0 });
    } catch (e) {
      if (!(e instanceof SyntaxProblem)) throw new Error(`crash on ${JSON.stringify(p)}: ${(e as Error).stack}`);
      assert.ok(e.offset >= 0 && e.offset <= p.length, `${JSON.stringify(p)}: offset ${e.offset}`);
    }
  }
});

interface Result {
  shape: number[];
  data: Float32Array;
}

async function run(spec: Parameters<typeof compileToDir>[0], inputs: Record<string, tf.Tensor>, seed = 3) {
  const { dir, compiled } = compileToDir(spec);
  const weights = randomWeights(compiled.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), seed);
  const loaded = await load(dir, { weights, backend: "cpu" });
  const out = loaded.run(inputs);
  const values: Record<string, Result> = {};
  for (const [k, t] of Object.entries(out)) values[k] = { shape: [...t.shape], data: Float32Array.from(t.dataSync()) };
  for (const t of Object.values(out)) t.dispose();
  loaded.dispose();
  return values;
}

function close(got: Result, want: tf.Tensor, what: string): void {
  assert.equal(got.shape, want.shape, `${what}: shape`);
  const err = relativeError(got.data, want.dataSync());
  assert.ok(err < 1e-5, `${what}: relative error ${err}`);
}

test("compiled patterns compute what tfjs computes directly", async () => {
  await selectBackend("cpu");
  const m = model("patterns", () => {
    const x = input("x", ["B", 6, 8]);
    const z = input("z", ["B", 5, 8]);
    return {
      heads: rearrange(x, "b n (h d) -> b h n d", { h: 2 }),
      merged: rearrange(x, "b (n k) d -> b n (k d)", { k: 2 }),
      mean: reduce(x, "b n d -> b d", "mean"),
      sum: reduce(x, "b (n k) d -> b n", "sum", { k: 3 }),
      max: reduce(x, "b n d -> b 1 d", "max"),
      scores: einsum("b n d, b m d -> b n m", x, z),
      swapped: einsum("b n d, b m d -> b m n", x, z),
      outer: einsum("b n d, b m e -> b n e", x, z),
    };
  });
  const x = tf.randomNormal([2, 6, 8], 0, 1, "float32", 1);
  const z = tf.randomNormal([2, 5, 8], 0, 1, "float32", 2);
  const got = await run(m, { x, z });
  close(got.heads!, tf.transpose(tf.reshape(x, [2, 6, 2, 4]), [0, 2, 1, 3]), "heads");
  close(got.merged!, tf.reshape(x, [2, 3, 16]), "merged");
  close(got.mean!, tf.mean(x, 1), "mean");
  close(got.sum!, tf.sum(tf.reshape(x, [2, 2, 3, 8]), [2, 3]), "sum");
  close(got.max!, tf.max(x, 1, true), "max");
  close(got.scores!, tf.matMul(x, z, false, true), "scores");
  close(got.swapped!, tf.matMul(z, x, false, true), "swapped");
  close(got.outer!, tf.mul(tf.reshape(tf.sum(x, 2), [2, 6, 1]), tf.reshape(tf.sum(z, 1), [2, 1, 8])), "outer");
});

test("attention written with patterns equals the attention op, compiled and run", async () => {
  await selectBackend("cpu");
  const heads = 4;
  const viaOp = model("via-op", () => ({ y: attention(input("x", ["B", 5, 16]), { heads, name: "attn" }) }));
  const viaPatterns = model("via-patterns", () => {
    const x = input("x", ["B", 5, 16]);
    const split = (name: string) => rearrange(linear(x, 16, { name: `attn.${name}` }), "b n (h d) -> b h n d", { h: heads });
    const [q, k, v] = [split("q"), split("k"), split("v")];
    const p = softmax(scale(einsum("b h n d, b h m d -> b h n m", q, k), 1 / Math.sqrt(16 / heads)));
    const o = rearrange(einsum("b h n m, b h m d -> b h n d", p, v), "b h n d -> b n (h d)");
    return { y: linear(o, 16, { name: "attn.out" }) };
  });
  const x = tf.randomNormal([3, 5, 16], 0, 1, "float32", 5);
  const a = await run(viaOp, { x }, 7);
  const b = await run(viaPatterns, { x }, 7);
  close(b.y!, tf.tensor(a.y!.data, a.y!.shape), "attention");
});

test.run();
