/**
 * The IR text form both ways: `parseGraph(printGraph(g))` gives back `g` for
 * every example model at every pass, and the .tir conformance files in
 * test/fixtures/tir either fail with the error stated in their
 * `// expect-error: LINE:COL: message` comment or compile to the IR in their
 * `.expected.tir` sibling (UPDATE_GOLDEN=1 rewrites those).
 */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { compile, compileGraph, pipeline, type CompileOptions } from "../../compiler/compile.ts";
import { CompileError, formatDiagnostic } from "../../compiler/diagnostics.ts";
import { trace } from "../../compiler/dsl/mod.ts";
import type { Graph } from "../../compiler/ir/graph.ts";
import { parseGraph, readGraph } from "../../compiler/ir/parse.ts";
import { printGraph } from "../../compiler/ir/print.ts";
import { verify } from "../../compiler/ir/verify.ts";
import { s16, ti16, tiny } from "../../examples/vit/vit.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const dir = join(root, "test/fixtures/tir");

/** The structure a graph's text must preserve, as plain data. */
function structure(g: Graph): unknown {
  return {
    name: g.name,
    batch: g.batch,
    params: [...g.params].map(([name, p]) => [name, p.dtype, [...p.shape]]),
    nodes: g.nodes.map((n) => ({ id: n.id, op: n.op, inputs: n.inputs, attrs: n.attrs, type: n.type, scope: g.meta.get(n.id)?.scope })),
    outputs: g.outputs,
  };
}

function assertRoundTrip(g: Graph, what: string): void {
  const text = printGraph(g);
  const back = parseGraph(text, `${what}.tir`);
  verify(back, `parse of ${what}`);
  assert.fixture(printGraph(back), text, `${what}: printed text differs after a round trip`);
  assert.equal(structure(back), structure(g), `${what}: structure differs after a round trip`);
}

/** The graph after every pass of the pipeline for `options`, starting with the traced one. */
function stages(g: Graph, options: CompileOptions): [string, Graph][] {
  const out: [string, Graph][] = [["traced", g]];
  let cur = g;
  for (const [name, run] of pipeline(options)) out.push([name, (cur = run(cur))]);
  return out;
}

const variants: [string, CompileOptions][] = [
  ["plain", {}],
  ["turbo", { turbo: { r: 8 } }],
  ["turbo+sources", { turbo: { r: 4, threshold: 9, trackSources: true, reportSizes: true } }],
];

test("`parseGraph(printGraph(g))` gives back g for tiny, Ti/16 and S/16 after every pass, with and without Turbo", () => {
  for (const spec of [tiny, ti16, s16]) {
    for (const [variant, options] of variants) {
      const all = stages(trace(spec), options);
      if (variant !== "plain") assert.ok(all.some(([, g]) => g.nodes.some((n) => n.op === "turbo_merge")), `${spec.name} ${variant} merges`);
      for (const [stage, g] of all) assertRoundTrip(g, `${spec.name}.${variant}.${stage}`);
    }
  }
});

test("a parsed graph compiles to the same program as the traced one", () => {
  const direct = compile(tiny);
  const fromText = compileGraph(parseGraph(direct.ir.traced, "vit-tiny.traced.tir"));
  assert.fixture(fromText.ir.final, direct.ir.final);
  assert.equal(fromText.plan, direct.plan);
  const fromFinal = compileGraph(parseGraph(direct.ir.final, "vit-tiny.tir"));
  assert.fixture(fromFinal.ir.final, direct.ir.final);
});

test("odd names, attribute values and scopes round-trip", () => {
  const text = [
    'graph "odd \\"names\\""(N) {',
    '  param @"w with space": f32[4]',
    "  param @a-b.c_d: f32[4]",
    '  %0: f32[N,2,4] = input[name="x\\ny"]',
    "  %1: f32[N,2,4] = add %0, @\"w with space\"   # block one",
    "  %2: f32[N,2,4] = add %1, @a-b.c_d",
    "  %3: f32[N*2,4] = reshape[shape=[N*2,4]] %2",
    "  %4: f32[N*2,4] = scale[value=-1e-12] %3",
    "  %5: f32[N*2,1] = mean[axes=[-1], keepDims=true] %4",
    "  return \"out.1\"=%5, y=%4",
    "}",
    "",
  ].join("\n");
  const g = parseGraph(text, "odd.tir");
  assert.is(g.name, 'odd "names"');
  assert.is(g.batch, "N");
  assert.equal(g.nodes[3]!.attrs, { shape: [{ batch: 2 }, 4] });
  assert.equal(g.nodes[4]!.attrs, { value: -1e-12 });
  assert.is(g.meta.get(1)?.scope, "block one");
  assert.equal(g.meta.get(1)?.loc, { file: "odd.tir", line: 5, col: 20 });
  assert.fixture(printGraph(g), text);
  assertRoundTrip(g, "odd");
});

test("random edits of valid IR text give located errors, never a crash", () => {
  let seed = 42;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const bases = [printGraph(compile(tiny).traced), printGraph(compile(tiny, { turbo: { r: 2 } }).graph)];
  const alphabet = '%@[](){}=,:*#"\n -1.0eB3f_';
  for (let i = 0; i < 600; i++) {
    let text = bases[i % 2]!;
    for (let k = 0; k < 1 + (i % 3); k++) {
      const at = Math.floor(rnd() * text.length);
      const r = rnd();
      if (r < 0.4) text = text.slice(0, at) + text.slice(at + 1 + Math.floor(rnd() * 5));
      else if (r < 0.8) text = text.slice(0, at) + alphabet[Math.floor(rnd() * alphabet.length)] + text.slice(at);
      else text = text.slice(0, at) + text.slice(Math.floor(rnd() * text.length)).slice(0, 10) + text.slice(at);
    }
    try {
      parseGraph(text, "fuzz.tir");
    } catch (e) {
      if (!(e instanceof CompileError)) throw new Error(`crash on edit ${i}: ${(e as Error).stack}\n${text}`);
      const lines = text.split("\n");
      assert.ok(e.loc !== undefined && e.loc.line >= 1 && e.loc.line <= lines.length, `edit ${i}: ${e.message}`);
      assert.ok(e.loc!.col >= 1 && e.loc!.col <= lines[e.loc!.line - 1]!.length + 1, `edit ${i}: column ${e.loc!.col}`);
    }
  }
});

const fixtures = readdirSync(dir).filter((f) => f.endsWith(".tir") && !f.endsWith(".expected.tir")).sort();

test("there are at least 25 malformed .tir conformance files", () => {
  const bad = fixtures.filter((f) => /\/\/ expect-error:/.test(readFileSync(join(dir, f), "utf8")));
  assert.ok(bad.length >= 25, `${bad.length}`);
});

for (const file of fixtures) {
  const path = join(dir, file);
  const text = readFileSync(path, "utf8");
  const expect = /\/\/ expect-error: (\d+):(\d+): (.*)$/m.exec(text);
  if (expect === null) {
    test(`tir fixture ${file} compiles to ${file.replace(/\.tir$/, ".expected.tir")}`, () => {
      const out = printGraph(compileGraph(readGraph(path), { verify: true }).graph);
      const golden = path.replace(/\.tir$/, ".expected.tir");
      if (process.env.UPDATE_GOLDEN === "1") writeFileSync(golden, out);
      assert.ok(existsSync(golden), `${golden} is missing; run with UPDATE_GOLDEN=1`);
      assert.fixture(out, readFileSync(golden, "utf8"));
    });
    continue;
  }
  test(`tir fixture ${file} fails at ${expect[1]}:${expect[2]}`, () => {
    let error: unknown;
    try {
      readGraph(path);
    } catch (e) {
      error = e;
    }
    assert.instance(error, CompileError, `${file} parsed without an error (or crashed: ${String(error)})`);
    const err = error as CompileError;
    assert.is(err.loc?.file, path);
    assert.is(err.loc?.line, Number(expect[1]));
    assert.is(err.loc?.col, Number(expect[2]));
    const [header, source, caret] = formatDiagnostic(err).split("\n");
    assert.is(header, `${relative(process.cwd(), path)}:${expect[1]}:${expect[2]}: error: ${expect[3]}`);
    assert.is(source, `  ${text.split("\n")[Number(expect[1]) - 1]}`);
    assert.is(caret!.indexOf("^"), 2 + Number(expect[2]) - 1, "caret under the column");
  });
}

test.run();
