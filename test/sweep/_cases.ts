/**
 * The reliability sweep's inputs (issue 16): bad or odd inputs across every
 * surface a user touches — spec files, CLI options, IR text (seeded
 * mutations of the golden .tir files), the einops pattern grammar, weights
 * files, run() calls, compiled folders and load() options. Each case runs
 * one thing and says what happened; `_child.ts` classifies it. The list is
 * deterministic (seeded), so a case id names the same input on every run.
 */

import * as tf from "@tensorflow/tfjs-core";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { compileGraph } from "../../compiler/compile.ts";
import { einsum, input, model, rearrange, reduce, trace } from "../../compiler/dsl/mod.ts";
import { parseGraph } from "../../compiler/ir/parse.ts";
import { load } from "../../runtime/mod.ts";
import { encodeSafetensors, randomWeights } from "../../runtime/weights/mod.ts";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const dsl = JSON.stringify(join(repoRoot, "compiler/dsl/mod.ts"));

/** What a case saw: the CLI's exit and stderr, a value, or a thrown error. */
export type Seen =
  | { kind: "cli"; exit: number; err: string; outDir: string | undefined }
  | { kind: "ok"; note?: string }
  | { kind: "threw"; error: unknown };

/** The sandbox a case runs in: `work` is the working directory; nothing may appear outside `work/compiled`, `work/out`, `work/in`. */
export interface Ctx {
  readonly work: string;
  /** Writes an input file under work/in and returns its path relative to work. */
  file(name: string, text: string | Uint8Array): string;
  /** Runs turbo-compile in-process. */
  cli(args: readonly string[], outDir?: string): Promise<Seen>;
  /** A compiled folder of the small model (input x: [B,4] → y: [B,3]) and its good weights. */
  readonly small: { dir: string; weights: Map<string, { shape: number[]; data: Float32Array }> };
}

export interface SweepCase {
  readonly id: string;
  readonly surface: "spec" | "cli" | "ir" | "pattern" | "weights" | "run" | "folder" | "load";
  /** Part of the fast subset the test suite runs. */
  readonly fast: boolean;
  run(ctx: Ctx): Promise<Seen>;
}

const cases: SweepCase[] = [];
const add = (surface: SweepCase["surface"], id: string, fast: boolean, run: (ctx: Ctx) => Promise<Seen>) => cases.push({ id: `${surface}/${id}`, surface, fast, run });

/** Runs `f`; a return is "ok", a throw is "threw". */
async function attempt(f: () => unknown): Promise<Seen> {
  try {
    const note = await f();
    return { kind: "ok", note: typeof note === "string" ? note : undefined };
  } catch (error) {
    return { kind: "threw", error };
  }
}

let seed = 20261204;
const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff) / 0x7fffffff;
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

// ── spec files, compiled with turbo-compile (in a worker, like a user's)

const specHead = `import { add, attention, broadcast, clsToken, concat, einsum, encoderBlock, gelu, input, layerNorm, linear, matmul, mean, mlp, model, patchEmbed, rearrange, reduce, reshape, scale, slice, softmax, transpose } from ${dsl};\n`;
const specs: [string, string, string[]?][] = [
  ["no-exports", "const x = 1;\n"],
  ["default-not-model", "export default 42;\n"],
  ["default-function", "export default () => 1;\n"],
  ["build-returns-undefined", `export default model("m", () => undefined as never);\n`],
  ["build-returns-array", `export default model("m", () => [input("x", ["B", 4])] as never);\n`],
  ["build-returns-tensor", `export default model("m", () => input("x", ["B", 4]) as never);\n`],
  ["build-returns-empty", `export default model("m", () => ({}));\n`],
  ["output-not-tensor", `export default model("m", () => ({ y: 3 as never }));\n`],
  ["output-other-model", `let t: any; trace_other(); function trace_other() {}\nexport default model("m", () => { input("x", ["B", 4]); return { y: t }; });\n`],
  ["throws-string", `export default model("m", () => { throw "nope"; });\n`],
  ["throws-error", `export default model("m", () => { throw new RangeError("bad range"); });\n`],
  ["throws-top-level", `throw new Error("top");\n`],
  ["syntax-error", `export default model("m", () => ({ y: input("x", ["B", 4]) ));\n`],
  ["missing-import", `import { nope } from "./nope.ts";\nexport default nope;\n`],
  ["async-build", `export default model("m", (async () => ({ y: input("x", ["B", 4]) })) as never);\n`],
  ["builder-outside-model", `linear(input("x", ["B", 4]), 2, { name: "fc" });\nexport default model("m", () => ({ y: input("x", ["B", 4]) }));\n`],
  ["nested-trace", `import { trace } from ${dsl};\nconst inner = model("i", () => ({ y: input("x", ["B", 4]) }));\nexport default model("m", () => { trace(inner); return { y: input("x", ["B", 4]) }; });\n`],
  ["user-stack-overflow", `const f = (n: number): number => f(n + 1) + 1;\nexport default model("m", () => { f(0); return { y: input("x", ["B", 4]) }; });\n`],
  ["process-exit", `export default model("m", () => { process.exit(3); });\n`],
  ["open-interval", `setInterval(() => {}, 1000);\nexport default model("m", () => ({ y: linear(input("x", ["B", 4]), 2, { name: "fc" }) }));\n`],
  ["console-noise", `console.log("hello from the spec");\nexport default model("m", () => ({ y: linear(input("x", ["B", 4]), 2, { name: "fc" }) }));\n`],
  ["build-never-returns", `export default model("m", () => { for (;;) {} });\n`, ["--trace-timeout", "2"]],
  ["top-never-returns", `for (;;) {}\nexport default model("m", () => ({ y: input("x", ["B", 4]) }));\n`, ["--trace-timeout", "2"]],
  ["grows-forever", `export default model("m", () => { let x = input("x", ["B", 4]); for (;;) x = add(x, x); });\n`, ["--max-nodes", "3000"]],
  ["params-forever", `export default model("m", () => { let x = input("x", ["B", 4]); for (let i = 0; ; i++) x = linear(x, 4, { name: "l" + i }); });\n`, ["--max-nodes", "3000"]],
  ["async-rejection", `Promise.reject(new Error("later"));\nexport default model("m", () => ({ y: linear(input("x", ["B", 4]), 2, { name: "fc" }) }));\n`],
];
const dims: [string, string][] = [
  ["negative", "-1"], ["zero", "0"], ["float", "1.5"], ["nan", "NaN"], ["infinity", "Infinity"], ["huge", "1e20"], ["string", `"N"`], ["batch-twice", `"B", "B"`], ["null", "null"], ["object", "{}"],
];
for (const [name, d] of dims) specs.push([`input-dim-${name}`, `export default model("m", () => ({ y: input("x", ["B", ${d}] as never) }));\n`]);
const widths: [string, string][] = [["zero", "0"], ["negative", "-2"], ["float", "2.5"], ["nan", "NaN"], ["huge", "3e9"], ["string", `"8" as never`], ["undefined", "undefined as never"]];
for (const [name, w] of widths) specs.push([`linear-width-${name}`, `export default model("m", () => ({ y: linear(input("x", ["B", 4]), ${w}, { name: "fc" }) }));\n`]);
const builderMisuse: [string, string][] = [
  ["linear-no-options", `linear(x, 2, undefined as never)`],
  ["linear-name-empty", `linear(x, 2, { name: "" })`],
  ["linear-twice-same-name", `add(linear(x, 4, { name: "fc" }), linear(x, 4, { name: "fc" }))`],
  ["layernorm-null", `layerNorm(null as never, { name: "ln" })`],
  ["attention-heads-zero", `attention(reshape(x, ["B", 1, 4]), { heads: 0, name: "a" })`],
  ["attention-heads-nan", `attention(reshape(x, ["B", 1, 4]), { heads: NaN, name: "a" })`],
  ["attention-rank2", `attention(x, { heads: 2, name: "a" })`],
  ["encoder-heads-not-dividing", `encoderBlock(reshape(x, ["B", 1, 4]), { heads: 3, name: "e" })`],
  ["matmul-mismatch", `matmul(x, x)`],
  ["add-mismatch", `add(x, input("z", ["B", 5]))`],
  ["add-string", `add(x, "nope" as never)`],
  ["concat-axis-9", `concat([x, x], 9)`],
  ["concat-empty", `concat([], 0)`],
  ["slice-out-of-range", `slice(x, { axis: 1, begin: 3, size: 9 } as never)`],
  ["reshape-wrong-count", `reshape(x, ["B", 5])`],
  ["reshape-negative", `reshape(x, ["B", -4])`],
  ["transpose-bad-perm", `transpose(x, [0, 0])`],
  ["transpose-perm-nan", `transpose(x, [NaN, 1] as never)`],
  ["softmax-axis-5", `softmax(x, 5 as never)`],
  ["mean-axes-out", `mean(x, [7] as never)`],
  ["scale-nan", `scale(x, NaN)`],
  ["scale-string", `scale(x, "2" as never)`],
  ["cls-token-rank2", `clsToken(x)`],
  ["patch-not-dividing", `patchEmbed(input("p", ["B", 3, 10, 10]), { patch: 3, dim: 8, name: "pe" })`],
  ["patch-rank2", `patchEmbed(x, { patch: 2, dim: 8, name: "pe" })`],
  ["broadcast-bad", `broadcast(x, ["B", 3])`],
  ["gelu-number", `gelu(3 as never)`],
  ["mlp-hidden-zero", `mlp(x, { hidden: 0, name: "m" } as never)`],
  ["einsum-no-operands", `einsum("b d -> b")`],
  ["rearrange-not-string", `rearrange(x, 42 as never)`],
  ["reduce-bad-op", `reduce(x, "b d -> b", "median" as never)`],
];
for (const [name, expr] of builderMisuse) specs.push([name, `export default model("m", () => { const x = input("x", ["B", 4]); return { y: ${expr} }; });\n`]);
/** Model names as TypeScript literals; without --out they become compiled/<name>. */
const modelNames: [string, string][] = [
  ["slash", `"a/b"`], ["dot", `"."`], ["dotdot", `".."`], ["escape-3", `"../../../x"`], ["absolute", `"/tmp/turbograph-sweep-abs"`],
  ["nul", `"a\\u0000b"`], ["newline", `"a\\nb"`], ["long", `"${"x".repeat(300)}"`], ["unicode", `"模型-ü"`], ["backslash", `"a\\\\b"`], ["number", "42 as never"], ["spaces", `"  "`],
];
for (const [name, literal] of modelNames) {
  specs.push([`model-name-${name}`, `export default model(${literal}, () => ({ y: linear(input("x", ["B", 4]), 2, { name: "fc" }) }));\n`]);
}
const ioNames: [string, string][] = [["output-empty", `{ "": t }`], ["output-proto", `{ ["__proto__"]: t } as never`], ["output-constructor", `{ constructor: t } as never`], ["output-quote", `{ 'a"b': t }`]];
for (const [name, out] of ioNames) specs.push([name, `export default model("m", () => { const t = linear(input("x", ["B", 4]), 2, { name: "fc" }); return ${out}; });\n`]);
specs.push(["input-name-empty", `export default model("m", () => ({ y: input("", ["B", 4]) }));\n`]);
specs.push(["input-name-proto", `export default model("m", () => ({ y: linear(input("__proto__", ["B", 4]), 2, { name: "fc" }) }));\n`]);
specs.push(["input-twice", `export default model("m", () => ({ y: add(input("x", ["B", 4]), input("x", ["B", 4])) }));\n`]);
specs.push(["no-inputs", `export default model("m", () => ({ y: undefined as never }));\n`]);

for (const [i, [name, body, extra]] of specs.entries()) {
  add("spec", name, i % 3 === 0 || name.includes("never") || name.includes("forever"), async (ctx) => {
    const path = ctx.file(`${name}.ts`, specHead + body);
    const out = `out/spec-${name}`;
    return ctx.cli([path, "--no-check", ...(name.startsWith("model-name-") ? [] : ["--out", out]), ...(extra ?? [])], name.startsWith("model-name-") ? undefined : out);
  });
}
add("spec", "type-checked-misuse", true, async (ctx) => ctx.cli([ctx.file("typed.ts", specHead + `export default model("m", () => ({ y: linear(input("x", ["B", 4]), "2", { name: "fc" }) }));\n`), "--out", "out/typed"], "out/typed"));
add("spec", "commonjs-folder", false, async (ctx) => {
  mkdirSync(join(ctx.work, "in/cjs"), { recursive: true });
  writeFileSync(join(ctx.work, "in/cjs/package.json"), `{ "type": "commonjs" }\n`);
  return ctx.cli([ctx.file("cjs/spec.ts", specHead + `export default model("m", () => ({ y: linear(input("x", ["B", 4]), 2, { name: "fc" }) }));\n`), "--no-check", "--out", "out/cjs"], "out/cjs");
});

// ── CLI options

const okSpec = (ctx: Ctx) => ctx.file("ok.ts", specHead + `export default model("ok", () => ({ y: linear(input("x", ["B", 4]), 3, { name: "fc" }) }));\n`);
const blockSpec = (ctx: Ctx) => ctx.file("blocks.ts", specHead + `export default model("blocks", () => { let x = input("x", ["B", 9, 8]); for (let i = 0; i < 2; i++) x = encoderBlock(x, { heads: 2, name: "layer." + i }); return { y: x }; });\n`);
const options: [string, (ctx: Ctx) => string[], boolean?][] = [
  ["batch-float", (c) => [okSpec(c), "--batch", "1.5"]],
  ["batch-hex", (c) => [okSpec(c), "--batch", "0x10"]],
  ["batch-space", (c) => [okSpec(c), "--batch", " 2"]],
  ["batch-huge", (c) => [okSpec(c), "--batch", "99999999999999999999"]],
  ["batch-twice", (c) => [okSpec(c), "--batch", "2", "--batch", "3"]],
  ["batch-neg-zero", (c) => [okSpec(c), "--batch", "-0"]],
  ["emit-empty", (c) => [okSpec(c), "--emit", ""]],
  ["emit-comma", (c) => [okSpec(c), "--emit", ","]],
  ["emit-twice", (c) => [okSpec(c), "--emit", "ts,ts"]],
  ["emit-upper", (c) => [okSpec(c), "--emit", "TS"]],
  ["model-empty", (c) => [okSpec(c), "--model", ""]],
  ["model-proto", (c) => [okSpec(c), "--model", "__proto__"]],
  ["model-constructor", (c) => [okSpec(c), "--model", "constructor"]],
  ["out-is-compiled", (c) => [okSpec(c), "--no-check", "--out", "compiled"], true],
  ["out-dot", (c) => [okSpec(c), "--no-check", "--out", "out/."], true],
  ["out-nul", (c) => [okSpec(c), "--no-check", "--out", "out/a\u0000b"]],
  ["out-long-name", (c) => [okSpec(c), "--no-check", "--out", `out/${"y".repeat(300)}`]],
  ["out-sys", (c) => [okSpec(c), "--no-check", "--out", "/sys/turbograph-sweep"]],
  ["out-proc-deep", (c) => [okSpec(c), "--no-check", "--out", "/proc/self/turbograph"]],
  ["out-dev-null", (c) => [okSpec(c), "--no-check", "--out", "/dev/null"]],
  ["max-nodes-huge", (c) => [okSpec(c), "--no-check", "--max-nodes", "1e30", "--out", "out/mn"], true],
  ["max-nodes-one", (c) => [okSpec(c), "--no-check", "--max-nodes", "1"]],
  ["trace-timeout-tiny", (c) => [okSpec(c), "--no-check", "--trace-timeout", "1e-9"]],
  ["trace-timeout-infinity", (c) => [okSpec(c), "--no-check", "--trace-timeout", "Infinity"]],
  ["double-dash", (c) => ["--", okSpec(c)]],
  ["spec-dash", () => ["-"]],
  ["spec-dot-tir", () => [".tir"]],
  ["spec-upper-tir", (c) => [c.file("g.TIR", readFileSync(join(repoRoot, "test/fixtures/tir/ok_mlp.tir"), "utf8")), "--check"]],
  ["spec-json", (c) => [c.file("g.json", "{}\n"), "--no-check"]],
  ["spec-empty-ts", (c) => [c.file("empty.ts", ""), "--no-check"]],
  ["spec-binary", (c) => [c.file("bin.ts", new Uint8Array([0, 159, 146, 150, 255, 0, 1])), "--no-check"]],
  ["spec-unicode-path", (c) => [c.file("模型 spec.ts", specHead + `export default model("uni", () => ({ y: input("x", ["B", 4]) }));\n`), "--no-check", "--out", "out/uni"], true],
  ["turbo-empty", (c) => [blockSpec(c), "--turbo", ""]],
  ["turbo-r-negative", (c) => [blockSpec(c), "--no-check", "--turbo", "r=-1"]],
  ["turbo-r-huge", (c) => [blockSpec(c), "--no-check", "--turbo", "r=1000000000"]],
  ["turbo-r-nan", (c) => [blockSpec(c), "--turbo", "r=NaN"]],
  ["turbo-r-list-wrong-length", (c) => [blockSpec(c), "--no-check", "--turbo", "r=1:2:3:4:5"]],
  ["turbo-r-list-empty-item", (c) => [blockSpec(c), "--turbo", "r=1::2"]],
  ["turbo-inflect-list", (c) => [blockSpec(c), "--turbo", "r=1:2,inflect=3"]],
  ["turbo-threshold-negative", (c) => [blockSpec(c), "--no-check", "--turbo", "r=2,threshold=-1"]],
  ["turbo-alpha-infinity", (c) => [blockSpec(c), "--turbo", "r=2,alpha=Infinity"]],
  ["turbo-fusion-bad", (c) => [blockSpec(c), "--no-check", "--turbo", "r=2,fusion=S9"]],
  ["turbo-metric-bad", (c) => [blockSpec(c), "--no-check", "--turbo", "r=2,metric=values"]],
  ["turbo-skip-reversed", (c) => [blockSpec(c), "--no-check", "--turbo", "r=2,skip=3:1"]],
  ["turbo-skip-letters", (c) => [blockSpec(c), "--turbo", "r=2,skip=a:b"]],
  ["turbo-sizes-yes", (c) => [blockSpec(c), "--turbo", "r=2,sizes=yes"]],
  ["turbo-double-comma", (c) => [blockSpec(c), "--turbo", "r=2,,alpha=1"]],
  ["turbo-equals-only", (c) => [blockSpec(c), "--turbo", "="]],
  ["turbo-gamma-float", (c) => [blockSpec(c), "--turbo", "r=2,gamma=1.5"]],
  ["turbo-scale-zero", (c) => [blockSpec(c), "--no-check", "--turbo", "r=2,scale=0"]],
  ["turbo-beta-negative", (c) => [blockSpec(c), "--no-check", "--turbo", "r=2,beta=-5"]],
  ["turbo-no-blocks", (c) => [okSpec(c), "--no-check", "--turbo", "r=2", "--out", "out/nb"], true],
  ["turbo-ok", (c) => [blockSpec(c), "--no-check", "--turbo", "r=2,sizes=true,sources=true", "--out", "out/turbo-ok"], true],
];
for (const [i, [name, args, writes]] of options.entries()) {
  add("cli", name, i % 2 === 0, async (ctx) => {
    const a = args(ctx);
    const at = a.indexOf("--out");
    return ctx.cli(a, writes === true && at >= 0 ? a[at + 1] : undefined);
  });
}

// ── IR text: seeded mutations of the golden .tir files, compiled in-process

const goldens = ["test/golden/vit_tiny.traced.tir", "test/fixtures/tir/ok_mlp.tir", "test/fixtures/tir/ok_attention.tir"].map((f) => readFileSync(join(repoRoot, f), "utf8"));
const tokensOfIr = ["[", "]", "(", ")", "%", "@", "=", ",", ":", "*", "#", '"', "\n", "-", "1e20", "0", "-1", "B", "B*0", "f32", "f64", "NaN", "\uFEFF", "\\", "\u0000", "return", "param", "graph", "[[[[[[[[[[", "9".repeat(400), "%99999999999", "@w", "input", "matmul"];
function mutate(text: string, edits: number): string {
  let t = text;
  for (let k = 0; k < edits; k++) {
    const at = Math.floor(rnd() * t.length);
    const r = rnd();
    if (r < 0.3) t = t.slice(0, at) + t.slice(at + 1 + Math.floor(rnd() * 8));
    else if (r < 0.7) t = t.slice(0, at) + pick(tokensOfIr) + t.slice(at);
    else if (r < 0.85) {
      const from = Math.floor(rnd() * t.length);
      t = t.slice(0, at) + t.slice(from, from + 1 + Math.floor(rnd() * 40)) + t.slice(at);
    } else t = t.replace(/\d+/, () => pick(["0", "1", "3", "1e9", "2147483648", "-3", "1.5"]));
  }
  return t;
}
for (let i = 0; i < 90; i++) {
  const text = mutate(goldens[i % goldens.length]!, 1 + (i % 4));
  add("ir", `mutation-${i}`, i % 3 === 0, async () => attempt(() => {
    const g = parseGraph(text, `mutation-${i}.tir`);
    compileGraph(g, { verify: true });
  }));
}
const irSpecials: [string, string][] = [
  ["empty", ""], ["only-bom", "\uFEFF"], ["only-comment", "// nothing\n"], ["crlf", goldens[1]!.replace(/\n/g, "\r\n")], ["cr-only", goldens[1]!.replace(/\n/g, "\r")],
  ["deep-parens", `graph "g"(B) {\n  %0: f32[B,4] = input[name=${"(".repeat(3000)}]\n}\n`],
  ["deep-brackets-shape", `graph "g"(B) {\n  %0: f32${"[".repeat(3000)}B,4] = input[name="x"]\n}\n`],
  ["many-nodes", `graph "g"(B) {\n  %0: f32[B,4] = input[name="x"]\n${Array.from({ length: 3000 }, (_, i) => `  %${i + 1}: f32[B,4] = gelu %${i}`).join("\n")}\n  return y=%3000\n}\n`],
  ["long-line", `graph "${"n".repeat(200000)}"(B) {\n  %0: f32[B,4] = input[name="x"]\n  return y=%0\n}\n`],
  ["batch-factor-huge", `graph "g"(B) {\n  %0: f32[B*99999999999,4] = input[name="x"]\n  return y=%0\n}\n`],
  ["elements-overflow", `graph "g"(B) {\n  %0: f32[B,2147483647,2147483647,2147483647] = input[name="x"]\n  %1: f32[B,2147483647,2147483647,2147483647] = gelu %0\n  return y=%1\n}\n`],
  ["reshape-overflow", `graph "g"(B) {\n  %0: f32[B,4] = input[name="x"]\n  %1: f32[B,2,2] = reshape[shape=[B,2,2.5]] %0\n  return y=%1\n}\n`],
  ["unicode-names", `graph "模型"(B) {\n  param @"权重": f32[4,2]\n  %0: f32[B,4] = input[name="入"]\n  %1: f32[B,2] = linear %0, @"权重"\n  return "出"=%1\n}\n`],
  ["name-proto", `graph "__proto__"(B) {\n  param @__proto__: f32[4,2]\n  %0: f32[B,4] = input[name="__proto__"]\n  %1: f32[B,2] = linear %0, @__proto__\n  return __proto__=%1\n}\n`],
];
for (const [name, text] of irSpecials) {
  add("ir", name, true, async () => attempt(() => compileGraph(parseGraph(text, `${name}.tir`), { verify: true })));
}
add("ir", "cli-mutated-file", true, async (ctx) => ctx.cli([ctx.file("mut.tir", mutate(goldens[0]!, 3)), "--out", "out/mut"], "out/mut"));
add("ir", "cli-golden-escaping-name", true, async (ctx) => ctx.cli([ctx.file("esc.tir", goldens[1]!.replace('graph "mlp"', 'graph "../../../../esc"'))]));

// ── the einops pattern grammar, traced in-process

const patterns: [string, "rearrange" | "reduce" | "einsum", string][] = [
  ["r", "rearrange", "b n (h d) -> b h n d"], ["r", "rearrange", "b n d -> (b n) d"], ["s", "reduce", "b n d -> b d"], ["e", "einsum", "b n d, b m d -> b n m"],
];
const patternAlphabet = ["(", ")", "->", ",", " ", "...", "1", "0", "h", "d", "b", "n", "_", "é", "((", "))", "- >", "→", "\n", "*"];
for (let i = 0; i < 60; i++) {
  const [, kind, base] = patterns[i % patterns.length]!;
  let p = base;
  for (let k = 0; k < 1 + (i % 3); k++) {
    const at = Math.floor(rnd() * (p.length + 1));
    p = rnd() < 0.5 ? p.slice(0, at) + pick(patternAlphabet) + p.slice(at) : p.slice(0, at) + p.slice(at + 1 + Math.floor(rnd() * 3));
  }
  const sizes: Record<string, number> = rnd() < 0.5 ? { h: 2 } : pick<Record<string, number>>([{}, { h: 0 }, { h: -2 }, { h: 1.5 }, { q: 2 }, { h: NaN }]);
  add("pattern", `${kind}-${i}`, i % 2 === 0, async () => attempt(() => {
    const m = model(`p${i}`, () => {
      const x = input("x", ["B", 6, 8]);
      if (kind === "rearrange") return { y: rearrange(x, p, sizes) };
      if (kind === "reduce") return { y: reduce(x, p, "mean", sizes) };
      return { y: einsum(p, x, input("k", ["B", 5, 8])) };
    });
    compileGraph(trace(m), { verify: true });
  }));
}
for (const [name, p] of [["huge-pattern", `b n ${"(".repeat(5000)}d${")".repeat(5000)} -> b n d`], ["many-axes", `${Array.from({ length: 500 }, (_, i) => `a${i}`).join(" ")} -> b`], ["empty", ""], ["arrow-only", "->"]] as const) {
  add("pattern", name, true, async () => attempt(() => trace(model("p", () => ({ y: rearrange(input("x", ["B", 6, 8]), p) })))));
}

// ── weights files, loaded with load(dir, { weights: path })

function header(json: unknown, data = new Uint8Array(0)): Uint8Array {
  const text = new TextEncoder().encode(JSON.stringify(json));
  const out = new Uint8Array(8 + text.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  return out;
}
const weightFiles: [string, (ctx: Ctx) => Uint8Array][] = [
  ["empty", () => new Uint8Array(0)],
  ["seven-bytes", () => new Uint8Array(7)],
  ["header-huge", () => { const b = new Uint8Array(16); new DataView(b.buffer).setBigUint64(0, 2n ** 62n, true); return b; }],
  ["header-not-json", () => { const b = header({}); b.set(new TextEncoder().encode("{x"), 8); return b; }],
  ["header-array", () => header([1, 2])],
  ["dtype-i64", () => header({ "fc.weight": { dtype: "I64", shape: [4, 3], data_offsets: [0, 96] } }, new Uint8Array(96))],
  ["offsets-outside", () => header({ "fc.weight": { dtype: "F32", shape: [4, 3], data_offsets: [0, 48] } }, new Uint8Array(8))],
  ["overlap", () => header({ "fc.weight": { dtype: "F32", shape: [4, 3], data_offsets: [0, 48] }, "fc.bias": { dtype: "F32", shape: [3], data_offsets: [36, 48] } }, new Uint8Array(48))],
  ["shape-negative", () => header({ "fc.weight": { dtype: "F32", shape: [-4, 3], data_offsets: [0, 48] } }, new Uint8Array(48))],
  ["metadata-number", () => header({ __metadata__: { a: 1 } })],
  ["missing-tensor", (c) => encodeSafetensors(new Map([["fc.weight", c.small.weights.get("fc.weight")!]]))],
  ["extra-tensor", (c) => encodeSafetensors(new Map([...c.small.weights, ["extra", { shape: [1], data: new Float32Array(1) }]]))],
  ["wrong-shape", (c) => encodeSafetensors(new Map([...c.small.weights, ["fc.weight", { shape: [3, 4], data: new Float32Array(12) }]]))],
  ["nan", (c) => encodeSafetensors(new Map([...c.small.weights, ["fc.bias", { shape: [3], data: new Float32Array([0, NaN, 0]) }]]))],
  ["f16-infinity", (c) => header({ "fc.weight": { dtype: "F32", shape: [4, 3], data_offsets: [0, 48] }, "fc.bias": { dtype: "F16", shape: [3], data_offsets: [48, 54] } }, Uint8Array.from([...new Uint8Array(c.small.weights.get("fc.weight")!.data.buffer.slice(0)), 0, 0, 0, 0x7c, 0, 0]))],
  ["truncated", (c) => { const b = encodeSafetensors(c.small.weights); return b.subarray(0, b.length - 5); }],
  ["good", (c) => encodeSafetensors(c.small.weights)],
];
for (const [i, [name, bytes]] of weightFiles.entries()) {
  add("weights", name, i % 2 === 0, async (ctx) => {
    const path = join(ctx.work, ctx.file(`${name}.safetensors`, bytes(ctx)));
    return attempt(async () => {
      const m = await load(ctx.small.dir, { weights: path, backend: "cpu" });
      const y = m.run({ x: tf.ones([2, 4]) }).y!;
      const ok = y.shape.join(",") === "2,3";
      y.dispose();
      m.dispose();
      if (!ok) throw new Error("internal: wrong output shape");
    });
  });
}
add("weights", "weights-is-folder", false, async (ctx) => attempt(() => load(ctx.small.dir, { weights: ctx.work, backend: "cpu" })));

// ── run() calls on a loaded model

const runs: [string, () => unknown][] = [
  ["wrong-dtype", () => ({ x: tf.ones([2, 4], "int32") })],
  ["wrong-shape", () => ({ x: tf.ones([2, 5]) })],
  ["batch-zero", () => ({ x: tf.ones([0, 4]) })],
  ["rank0", () => ({ x: tf.scalar(1) })],
  ["missing", () => ({})],
  ["extra", () => ({ x: tf.ones([2, 4]), z: tf.ones([1]) })],
  ["array", () => [tf.ones([2, 4])]],
  ["number", () => 3],
  ["undefined", () => undefined],
  ["map", () => new Map([["x", tf.ones([2, 4])]])],
  ["plain-array-input", () => ({ x: [[1, 2, 3, 4]] })],
  ["typed-array-input", () => ({ x: new Float32Array(8) })],
  ["disposed", () => { const t = tf.ones([2, 4]); t.dispose(); return { x: t }; }],
  ["nan-input", () => ({ x: tf.fill([2, 4], NaN) })],
  ["big-batch", () => ({ x: tf.ones([4096, 4]) })],
  ["proto-key", () => JSON.parse(`{"__proto__": 1, "x": 0}`)],
];
for (const [i, [name, inputs]] of runs.entries()) {
  add("run", name, i % 2 === 0, async (ctx) => {
    const m = await load(ctx.small.dir, { weights: ctx.small.weights, backend: "cpu" });
    try {
      return await attempt(() => {
        const given = inputs() as Record<string, unknown>;
        if (name === "proto-key") given.x = tf.ones([1, 4]);
        const out = m.run(given as never);
        for (const t of Object.values(out)) t.dispose();
      });
    } finally {
      m.dispose();
    }
  });
}
add("run", "after-dispose", true, async (ctx) => {
  const m = await load(ctx.small.dir, { weights: ctx.small.weights, backend: "cpu" });
  m.dispose();
  m.dispose();
  return attempt(() => m.run({ x: tf.ones([1, 4]) }));
});

// ── compiled folders, edited or broken

const folders: [string, (js: string) => Record<string, string>][] = [
  ["empty-module", () => ({ "model.mjs": "" })],
  ["garbage", () => ({ "model.mjs": "\u0000\u0001 not javascript {{{" })],
  ["truncated", (js) => ({ "model.mjs": js.slice(0, js.length - 40) })],
  ["plan-only", (js) => ({ "model.mjs": js.replace(/export function forward/, "function forward") })],
  ["plan-format-2", (js) => ({ "model.mjs": js.replace("turbograph.plan/1", "turbograph.plan/2") })],
  ["forward-throws", (js) => ({ "model.mjs": js.replace(/export function forward\(([^)]*)\) \{/, "export function forward($1) { throw new TypeError('boom');") })],
  ["forward-returns-nothing", (js) => ({ "model.mjs": js.replace(/export function forward\(([^)]*)\) \{/, "export function forward($1) { return {};") })],
  ["top-level-throws", (js) => ({ "model.mjs": `throw new Error("top");\n${js}` })],
  ["imports-missing", (js) => ({ "model.mjs": `import "./nope.mjs";\n${js}` })],
  ["model-mjs-folder", () => ({ "model.mjs/x": "" })],
  ["plan-params-string", (js) => ({ "model.mjs": js.replace(/"params": \[/, '"params": "x", "unused": [') })],
  ["only-model-ts", () => ({ "model.ts": readFileSync(join(fileURLToPath(new URL(".", import.meta.url)), "_cases.ts"), "utf8").slice(0, 0) + "export const plan = 1;\n" })],
];
for (const [i, [name, files]] of folders.entries()) {
  add("folder", name, i % 2 === 0, async (ctx) => {
    const dir = join(ctx.work, "in", `folder-${name}`);
    for (const [file, text] of Object.entries(files(readFileSync(join(ctx.small.dir, "model.mjs"), "utf8")))) {
      mkdirSync(join(dir, file, ".."), { recursive: true });
      writeFileSync(join(dir, file), text);
    }
    return attempt(async () => {
      const m = await load(dir, { weights: ctx.small.weights, backend: "cpu" });
      try {
        for (const t of Object.values(m.run({ x: tf.ones([2, 4]) }))) t.dispose();
      } finally {
        m.dispose();
      }
    });
  });
}

// ── load() options

const loads: [string, (ctx: Ctx) => unknown][] = [
  ["backend-unknown", (c) => load(c.small.dir, { weights: c.small.weights, backend: "gpu" as never })],
  ["backend-tensorflow-absent", (c) => load(c.small.dir, { weights: c.small.weights, backend: "tensorflow" })],
  ["random-float-seed", (c) => load(c.small.dir, { weights: { random: 1.5 }, backend: "cpu" })],
  ["random-nan-seed", (c) => load(c.small.dir, { weights: { random: NaN }, backend: "cpu" })],
  ["random-string-seed", (c) => load(c.small.dir, { weights: { random: "1" as never }, backend: "cpu" })],
  ["weights-array", (c) => load(c.small.dir, { weights: [] as never, backend: "cpu" })],
  ["weights-plain-object", (c) => load(c.small.dir, { weights: Object.fromEntries(c.small.weights) as never, backend: "cpu" })],
  ["dir-number", () => load(42 as never, { weights: { random: 1 }, backend: "cpu" })],
  ["dir-empty", () => load("", { weights: { random: 1 }, backend: "cpu" })],
  ["kernels-bad", (c) => load(c.small.dir, { weights: c.small.weights, backend: "cpu", kernels: 5 as never })],
];
for (const [i, [name, f]] of loads.entries()) {
  add("load", name, i % 2 === 0, async (ctx) => attempt(async () => {
    const m = (await f(ctx)) as { dispose(): void };
    m.dispose();
  }));
}

/** Every case, in a fixed order. */
export const sweepCases: readonly SweepCase[] = cases;
/** The seed data the small model is built from. */
export const smallWeights = (params: { name: string; shape: number[] }[]) => randomWeights(params, 5);
