/**
 * turbo-compile as a language toolchain: the table of bad command lines in
 * test/fixtures/cli/cases.json (each with its exit code and the first lines
 * of stderr: the message and the caret), `--check` on the specs with type
 * errors in test/fixtures/type_errors, and compiling from the IR text form.
 */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { tempDir } from "../_helpers.ts";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { checkSpec } from "../../compiler/check_spec.ts";
import { main } from "../../compiler/cli.ts";
import { formatDiagnostic } from "../../compiler/diagnostics.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
process.chdir(root);

async function cli(args: readonly string[]): Promise<{ exit: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const exit = await main(args, { out: (t) => (out += t), err: (t) => (err += t) });
  return { exit, out, err };
}

function spawnCli(args: readonly string[]): { status: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(process.execPath, ["--import", "tsx", "compiler/cli.ts", ...args], { cwd: root, stdio: "pipe", encoding: "utf8" });
    return { status: 0, stdout, stderr: "" };
  } catch (e) {
    const x = e as { status: number; stdout: string; stderr: string };
    return { status: x.status, stdout: x.stdout, stderr: x.stderr };
  }
}

interface CliCase {
  name: string;
  args: string[];
  exit: number;
  stderr: string[];
}
const cases = JSON.parse(readFileSync(join(root, "test/fixtures/cli/cases.json"), "utf8")) as CliCase[];

for (const c of cases) {
  test(`turbo-compile ${c.args.join(" ")} (${c.name}) exits ${c.exit} with a located message`, async () => {
    const { exit, err } = await cli(c.args);
    assert.is(exit, c.exit);
    assert.equal(err.split("\n").slice(0, c.stderr.length), c.stderr);
    assert.not.match(err, /\n\s+at /, "no stack frames");
    assert.not.match(err, /internal:/);
  });
}

const typeDir = join(root, "test/fixtures/type_errors");
const typeFixtures = readdirSync(typeDir).filter((f) => f.endsWith(".ts") && !f.startsWith("_")).sort();

for (const file of typeFixtures) {
  test(`\`checkSpec()\` reports the type error of ${file} at its stated location`, () => {
    const path = join(typeDir, file);
    const m = /\/\/ expect-error: (?:([\w.]+):)?(\d+):(\d+): (.*)$/m.exec(readFileSync(path, "utf8"));
    assert.ok(m, `${file} has no expect-error comment`);
    const where = join(typeDir, m[1] ?? file);
    const errors = checkSpec(path);
    assert.is(errors.length, 1, errors.map(formatDiagnostic).join("\n"));
    const e = errors[0]!;
    assert.equal(e.loc, { file: where, line: Number(m[2]), col: Number(m[3]) });
    const [header, , caret] = formatDiagnostic(e).split("\n");
    assert.is(header, `${relative(process.cwd(), where)}:${m[2]}:${m[3]}: error: ${m[4]}`);
    assert.is(caret!.indexOf("^"), 2 + Number(m[3]) - 1);
  });
}

test("`checkSpec()` finds no errors in the example specs, nor in an ES module spec using import.meta", () => {
  assert.equal(checkSpec("examples/vit/vit.ts").map(formatDiagnostic), []);
  assert.equal(checkSpec("test/fixtures/type_errors/_ok_import_meta.ts").map(formatDiagnostic), []);
});

test("`turbo-compile --check` exits 2 at the type error's line, and 0 for a clean spec", () => {
  const bad = spawnCli(["--check", "test/fixtures/type_errors/wrong_option_type.ts"]);
  assert.is(bad.status, 2);
  assert.ok(bad.stderr.startsWith("test/fixtures/type_errors/wrong_option_type.ts:6:33: error: Type 'string' is not assignable to type 'number' (TS2322)\n"), bad.stderr);
  assert.not.match(bad.stderr, /\n\s+at /);
  const good = spawnCli(["--check", "examples/vit/vit.ts"]);
  assert.is(good.status, 0, good.stderr);
  assert.is(good.stdout, "examples/vit/vit.ts: no type errors\n");
});

test("`turbo-compile graph.tir` compiles the IR written by `--emit ir` to the same program", async () => {
  const first = tempDir("turbograph-tir-");
  const again = tempDir("turbograph-tir-");
  const fromFinal = tempDir("turbograph-tir-");
  assert.is((await cli(["examples/vit/vit.ts", "--no-check", "--out", first, "--turbo", "r=4"])).exit, 0);
  const traced = join(first, "model.traced.tir");
  const r = await cli([traced, "--out", again, "--turbo", "r=4"]);
  assert.is(r.exit, 0, r.err);
  for (const f of ["model.tir", "plan.json"]) assert.fixture(readFileSync(join(again, f), "utf8"), readFileSync(join(first, f), "utf8"), f);
  const f = await cli([join(first, "model.tir"), "--out", fromFinal, "--emit", "ir"]);
  assert.is(f.exit, 0, f.err);
  assert.fixture(readFileSync(join(fromFinal, "model.tir"), "utf8"), readFileSync(join(first, "model.tir"), "utf8"));
});

test.run();
