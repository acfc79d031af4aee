/**
 * Conformance: every spec in test/fixtures/specs states the error it must
 * produce in a `// expect-error: LINE:COL: message` comment; tracing it must
 * fail with exactly that location and a message starting with that text.
 */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { CompileError, formatDiagnostic } from "../../compiler/diagnostics.ts";
import { trace } from "../../compiler/dsl/mod.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const dir = join(root, "test/fixtures/specs");
const fixtures = readdirSync(dir).filter((f) => f.endsWith(".ts") && !f.startsWith("_"));

for (const file of fixtures) {
  test(`spec fixture ${file} fails at its stated location`, async () => {
    const path = join(dir, file);
    const expect = /\/\/ expect-error: (\d+):(\d+): (.*)$/m.exec(readFileSync(path, "utf8"));
    assert.ok(expect, `${file} has no expect-error comment`);
    const mod = await import(pathToFileURL(path).href);
    let error: unknown;
    try {
      trace(mod.default);
    } catch (e) {
      error = e;
    }
    assert.instance(error, CompileError, `${file} traced without an error`);
    const err = error as CompileError;
    assert.is(err.loc?.file, path);
    assert.is(err.loc?.line, Number(expect[1]));
    assert.is(err.loc?.col, Number(expect[2]));
    const text = formatDiagnostic(err);
    const header = `${relative(process.cwd(), path)}:${expect[1]}:${expect[2]}: error: ${expect[3]}`;
    assert.ok(text.startsWith(header), `got:\n${text}\nexpected it to start with:\n${header}`);
    const [, source, caret] = text.split("\n");
    assert.is(caret!.indexOf("^"), 2 + Number(expect[2]) - 1, "caret under the column");
    assert.ok(source!.trim().length > 0);
  });
}

test("`turbo-compile` exits 2 on a bad spec with a located message and no stack trace", () => {
  const spec = join(dir, "bad_heads.ts");
  let status = 0;
  let stderr = "";
  try {
    execFileSync(process.execPath, ["--import", "tsx", join(root, "compiler/cli.ts"), spec, "--out", join(root, "out/never")], { cwd: root, stdio: "pipe" });
  } catch (e) {
    const err = e as { status: number; stderr: Buffer };
    status = err.status;
    stderr = err.stderr.toString();
  }
  assert.is(status, 2);
  assert.ok(stderr.startsWith("test/fixtures/specs/bad_heads.ts:6:13: error: attention \"layer.0.attn\": heads 5 does not divide width 64"), stderr);
  assert.not.match(stderr, /\n\s+at /, "no stack frames");
});

test("`turbo-compile` exits 2 for a missing spec file and a bad option", () => {
  for (const args of [["test/fixtures/specs/nope.ts"], ["examples/vit/vit.ts", "--batch", "0"], ["examples/vit/vit.ts", "--emit", "wasm"]]) {
    let status = 0;
    let stderr = "";
    try {
      execFileSync(process.execPath, ["--import", "tsx", join(root, "compiler/cli.ts"), ...args], { cwd: root, stdio: "pipe" });
    } catch (e) {
      const err = e as { status: number; stderr: Buffer };
      status = err.status;
      stderr = err.stderr.toString();
    }
    assert.is(status, 2, args.join(" "));
    assert.match(stderr, /^turbo-compile: error: /);
  }
});

test.run();
