/** `param(name, shape)`: users declare their own weights, with the builders' name and shape checks. */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { CompileError } from "../../compiler/diagnostics.ts";
import { add, broadcast, concat, input, linear, model, mul, param, reshape, trace } from "../../compiler/dsl/mod.ts";

const thrown = (build: () => void): CompileError => {
  try {
    trace(model("p", () => {
      build();
      return { y: input("x", ["B", 2]) };
    }));
  } catch (e) {
    if (e instanceof CompileError) return e;
    throw e;
  }
  throw new Error("no error");
};

test("`param()` declares weights a user combines with primitives (LayerScale γ, register tokens)", () => {
  const g = trace(model("layerscale", () => {
    const x = input("x", ["B", 4, 8]);
    const gamma = param("block.gamma", [8]);
    const regs = broadcast(reshape(param("registers", [2, 8]), [1, 2, 8]), ["B", 2, 8]);
    const y = concat([regs, add(x, mul(linear(x, 8, { name: "proj" }), gamma))], 1);
    return { y };
  }));
  assert.equal(g.params.get("block.gamma")?.shape, [8]);
  assert.equal(g.params.get("registers")?.shape, [2, 8]);
  assert.equal(g.nodes[g.outputs[0]!.id]!.type.shape, [{ batch: 1 }, 6, 8]);
  assert.ok(g.nodes.some((n) => n.op === "mul" && n.inputs.includes("block.gamma")));
});

test("`param()` shares a weight declared twice with one shape and names a clash of shapes at the user's line", () => {
  const g = trace(model("shared", () => {
    const x = input("x", ["B", 8]);
    return { y: add(add(x, param("bias", [8])), param("bias", [8])) };
  }));
  assert.is(g.params.size, 1);
  const e = thrown(() => {
    param("w", [8]);
    param("w", [4]);
  });
  assert.match(e.message, /Parameter "w" is declared twice with different shapes \[8\] and \[4\]/);
  assert.match(e.loc?.file ?? "", /param\.test\.ts$/);
});

test("`param()` rejects bad names and shapes, located", () => {
  for (const [build, message] of [
    [() => param("", [2]), /param: name "" must be letters/],
    [() => param("a b", [2]), /param: name "a b" must be letters/],
    [() => param("w", []), /param "w": shape \[\] must be a non-empty list of positive integers/],
    [() => param("w", [2, 0]), /shape \[2,0\] must be a non-empty list/],
    [() => param("w", ["B", 2] as never), /parameters have no batch dimension/],
    [() => reshape("nope", [2]), /reshape: unknown parameter "nope"; declare it with param\(name, shape\)/],
  ] as const) {
    const e = thrown(build);
    assert.match(e.message, message);
    assert.match(e.loc?.file ?? "", /param\.test\.ts$/);
  }
});

test("`param()` outside a model is a located error", () => {
  assert.throws(() => param("w", [2]), (e: unknown) => e instanceof CompileError && /param: called outside a model/.test((e as Error).message));
});

test.run();
