/** The diagnostics format: located errors with a caret, IR context for IR-level errors, `internal:` for compiler bugs. */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { main } from "../../compiler/cli.ts";
import { CompileError, formatDiagnostic, formatError } from "../../compiler/diagnostics.ts";
import { parseGraph } from "../../compiler/ir/parse.ts";
import { rewrite } from "../../compiler/passes/_rewrite.ts";

const text = `graph "g"(B) {
  %0: f32[B,4] = input[name="x"]
  %1: f32[B,4] = gelu %0   # blk
  %2: f32[B,4] = softmax %1   # blk
  %3: f32[B,4] = add %2, %0
  return y=%3
}
`;

test("a located error prints `file:line:col: error:`, the source line and a caret, also for text parsed from memory", () => {
  const g = parseGraph(text, "memory.tir");
  const err = new CompileError("softmax: something about this node", g.meta.get(2)!.loc);
  assert.is(formatDiagnostic(err), ["memory.tir:4:18: error: softmax: something about this node", "    %2: f32[B,4] = softmax %1   # blk", "                   ^"].join("\n"));
});

test("an error raised while a pass rewrites a node shows the IR lines around it", () => {
  const g = parseGraph(text, "memory.tir");
  let error: unknown;
  try {
    rewrite(g, (n) => {
      if (n.op === "softmax") throw new CompileError("softmax: not supported by this pass");
      return undefined;
    });
  } catch (e) {
    error = e;
  }
  assert.instance(error, CompileError);
  const lines = formatDiagnostic(error as CompileError).split("\n");
  assert.is(lines[0], "memory.tir:4:18: error: softmax: not supported by this pass");
  assert.is(lines[3], "  in the IR:");
  assert.ok(lines.includes("  > %2: f32[B,4] = softmax %1   # blk"), lines.join("\n"));
  assert.ok(lines.includes("    %1: f32[B,4] = gelu %0   # blk"));
});

test("`formatError()` gives user errors exit code 2 and compiler bugs one `internal:` prefix and exit code 1", () => {
  assert.equal(formatError(new CompileError("Bad thing")), { text: "error: Bad thing", exitCode: 2 });
  assert.equal(formatError(new Error("internal: lost a node")), { text: "internal: lost a node", exitCode: 1 });
  assert.equal(formatError(new TypeError("x is undefined")), { text: "internal: x is undefined", exitCode: 1 });
});

test("`turbo-compile` reports a crash inside the compiler as `internal:` with exit code 1 and no stack", async () => {
  let err = "";
  const exit = await main(["--check", "test/fixtures/tir/ok_mlp.tir"], {
    out: () => {
      throw new Error("the output stream broke");
    },
    err: (t) => (err += t),
  });
  assert.is(exit, 1);
  assert.is(err, "turbo-compile: internal: the output stream broke\n");
});

test.run();
