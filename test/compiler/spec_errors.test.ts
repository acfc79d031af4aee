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

/**
 * Conformance files: a spec states the error of its default export in a
 * `// expect-error: LINE:COL: message` comment; a file of several models
 * states one per named export with `// expect-error[name]: LINE:COL: message`.
 */
const fixtureDirs = ["test/fixtures/specs", "test/fixtures/patterns"];
const cases: { file: string; path: string; exportName: string; line: number; col: number; message: string }[] = [];
for (const d of fixtureDirs) {
  for (const file of readdirSync(join(root, d)).filter((f) => f.endsWith(".ts") && !f.startsWith("_")).sort()) {
    const path = join(root, d, file);
    const text = readFileSync(path, "utf8");
    const found = [...text.matchAll(/\/\/ expect-error(?:\[(\w+)\])?: (\d+):(\d+): (.*)$/gm)];
    if (found.length === 0) throw new Error(`${d}/${file} has no expect-error comment`);
    for (const m of found) cases.push({ file: `${d}/${file}`, path, exportName: m[1] ?? "default", line: Number(m[2]), col: Number(m[3]), message: m[4]! });
  }
}

test("there are at least 25 pattern conformance cases", () => {
  assert.ok(cases.filter((c) => c.file.includes("/patterns/")).length >= 25);
});

for (const c of cases) {
  test(`${c.file}${c.exportName === "default" ? "" : ` [${c.exportName}]`} fails at ${c.line}:${c.col}`, async () => {
    const mod = await import(pathToFileURL(c.path).href);
    let error: unknown;
    try {
      trace(mod[c.exportName]);
    } catch (e) {
      error = e;
    }
    assert.instance(error, CompileError, `${c.file} ${c.exportName} traced without an error (or crashed: ${String(error)})`);
    const err = error as CompileError;
    assert.is(err.loc?.file, c.path);
    assert.is(err.loc?.line, c.line, "line");
    assert.is(err.loc?.col, c.col, "column");
    const text = formatDiagnostic(err);
    const header = `${relative(process.cwd(), c.path)}:${c.line}:${c.col}: error: ${c.message}`;
    assert.is(text.split("\n")[0], header);
    const [, source, caret] = text.split("\n");
    assert.is(caret!.indexOf("^"), 2 + c.col - 1, "caret under the column");
    assert.ok(source!.trim().length > 0);
    assert.not.match(text, /\n\s+at /, "no stack frames");
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
    assert.is(status, 2, `${args.join(" ")}: ${stderr}`);
    assert.match(stderr, /^turbo-compile: error: /);
  }
});

test.run();
