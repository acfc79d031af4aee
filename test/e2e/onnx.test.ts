/**
 * The ONNX target: the tiny ViT compiled with and without Turbo, rendered as
 * model.onnx and run on onnxruntime, against the same program on wasm with
 * the same weights and pixels (logits within 1e-4, merged sizes and
 * `sources` identical); the ONNX checker with full shape inference (when a
 * Python with the onnx package is present); onnxruntime loading it without
 * warnings; and load()'s errors on the onnxruntime backend.
 */

import * as tf from "@tensorflow/tfjs-core";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import onnxProto from "onnx-proto";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { main } from "../../compiler/cli.ts";
import { compile, type Compiled } from "../../compiler/compile.ts";
import { emitOnnx, onnxKernels } from "../../compiler/lower/emit_onnx.ts";
import type { TurboOptions } from "../../compiler/passes/insert_turbo.ts";
import { tiny } from "../../examples/vit/vit.ts";
import { load, loadModule, LoadError, type Model, type OnnxModel } from "../../runtime/mod.ts";
import { pixels, relativeError, tempDir } from "../_helpers.ts";

const fixtures = fileURLToPath(new URL("../fixtures/onnx/", import.meta.url));

/** The promise rejects with an error that `check` accepts (the message is shown when it does not). */
async function rejects(run: () => Promise<unknown>, check: (e: unknown) => boolean): Promise<void> {
  let error: unknown;
  try {
    await run();
  } catch (e) {
    error = e;
  }
  assert.ok(error !== undefined, "expected an error");
  assert.ok(check(error), `unexpected error: ${error instanceof Error ? `${error.constructor.name}: ${error.message}` : String(error)}`);
}

interface Built {
  dir: string;
  compiled: Compiled;
  wasm: Model;
  ort: OnnxModel;
}

async function build(turbo: TurboOptions | undefined, seed = 7): Promise<Built> {
  const compiled = compile(tiny, turbo === undefined ? { verify: true } : { verify: true, turbo });
  const dir = tempDir("turbograph-onnx-");
  writeFileSync(join(dir, "model.mjs"), compiled.module.js);
  writeFileSync(join(dir, "model.onnx"), emitOnnx(compiled.program, compiled.plan, "tiny"));
  const wasm = await loadModule(await import(pathToFileURL(join(dir, "model.mjs")).href), { weights: { random: seed }, backend: "wasm" });
  const ort = await load(dir, { backend: "onnxruntime", weights: { random: seed }, threads: 1 });
  return { dir, compiled, wasm, ort };
}

const settings: readonly (readonly [string, TurboOptions | undefined, number])[] = [
  ["unmerged", undefined, 3],
  ["Turbo r=3 (S1), sources and sizes", { r: 3, trackSources: true, reportSizes: true }, 3],
  ["r=4 with threshold 12, batch 1", { r: 4, threshold: 12, trackSources: true, reportSizes: true }, 1],
  ["per-block r=5:2, ToMe (alpha 0)", { r: [5, 2], alpha: 0, trackSources: true }, 2],
  ["r=3, S2", { r: 3, fusion: "S2", trackSources: true }, 2],
  ["r=3, S3", { r: 3, fusion: "S3", alpha: 1, trackSources: true }, 2],
  ["r=3, S4 beta 0.5 gamma 1", { r: 3, fusion: "S4", beta: 0.5, gamma: 1, trackSources: true }, 2],
  ["r=1:8 without a class token (block 2 keeps nothing of A)", { r: [1, 8], cls: false, alpha: 0, trackSources: true, reportSizes: true }, 2],
];

for (const [name, turbo, batch] of settings) {
  test(`onnxruntime runs the tiny ViT ${name} like wasm: logits within 1e-4, the same merges`, async () => {
    const { compiled, wasm, ort } = await build(turbo);
    const x = pixels([batch, 3, 32, 32], 11);
    const want = wasm.run({ pixels: x });
    const got = await ort.run({ pixels: x });
    assert.equal(Object.keys(got).sort(), compiled.plan.outputs.map((o) => o.name).sort());
    for (const [key, w] of Object.entries(want)) {
      const g = got[key]!;
      assert.equal(g.shape, w.shape, `${key} shape`);
      if (key === "logits") {
        const err = relativeError(g.dataSync(), w.dataSync());
        assert.ok(err < 1e-4, `logits relative error ${err}`);
      } else {
        // size.<block> and sources are counts: they must agree exactly.
        assert.equal(Array.from(g.dataSync()), Array.from(w.dataSync()), `${key} differs`);
      }
    }
    if (turbo?.trackSources) {
      const merged = compiled.plan.blocks.reduce((a, b) => a + b.merged, 0);
      assert.ok(merged > 0, "the setting merges something");
      assert.is(got.sources!.shape[1], 17 - merged);
    }
    wasm.dispose();
    await ort.dispose();
  });
}

test("every kernel that lowering emits has an ONNX rendering", () => {
  const source = readFileSync(fileURLToPath(new URL("../../compiler/lower/program.ts", import.meta.url)), "utf8");
  const used = new Set([...source.matchAll(/"((?:tf|k)\.[A-Za-z]+)"/g)].map((m) => m[1]!));
  assert.ok(used.size > 10);
  const missing = [...used].filter((k) => !onnxKernels.includes(k));
  assert.equal(missing, [], `kernels without an ONNX rule: ${missing.join(", ")}`);
});

test("each layer_norm renders as one LayerNormalization (the logits tests above hold it to the nine tfjs steps)", () => {
  const compiled = compile(tiny, { turbo: { r: 3 } });
  const model = onnxProto.onnx.ModelProto.decode(emitOnnx(compiled.program, compiled.plan, "tiny"));
  const ops = model.graph!.node!.map((n) => n.opType);
  const norms = compiled.graph.nodes.filter((n) => n.op === "layer_norm").length;
  assert.ok(norms >= 3, "the tiny ViT has layer norms");
  assert.is(ops.filter((o) => o === "LayerNormalization").length, norms);
  // Nothing of the decomposed form is left: its rsqrt was the only source of Reciprocal.
  assert.equal(ops.filter((o) => o === "Reciprocal"), []);
  const ln = model.graph!.node!.find((n) => n.opType === "LayerNormalization")!;
  assert.equal(ln.attribute!.map((a) => a.name).sort(), ["axis", "epsilon"]);
  const eps = (compiled.graph.nodes.find((n) => n.op === "layer_norm")!.attrs as { eps: number }).eps;
  const f = ln.attribute!.find((a) => a.name === "epsilon")!.f!;
  assert.ok(Math.abs(f - eps) <= 1e-7 * eps, `epsilon ${f}, the graph's ${eps}`);
});

test("a transpose that lowering staged for tfjs (rank 6, the patch embedding) renders as one Transpose with the IR's permutation", () => {
  const compiled = compile(tiny);
  const wide = compiled.graph.nodes.filter((n) => n.op === "transpose" && (n.attrs as { perm: number[] }).perm.length > 4);
  assert.is(wide.length, 1, "the tiny ViT has one rank-6 transpose");
  const staged = compiled.program.steps.filter((s) => s.node === wide[0]!.id && s.kernel === "tf.transpose");
  assert.ok(staged.length >= 1 && staged.every((s) => (s.args[1] as { lit: number[] }).lit.length <= 4), "tfjs gets ≤ 4-D stages");
  const model = onnxProto.onnx.ModelProto.decode(emitOnnx(compiled.program, compiled.plan, "tiny"));
  const perms = model.graph!.node!.filter((n) => n.opType === "Transpose").map((n) => (n.attribute!.find((a) => a.name === "perm")!.ints as unknown[]).map(Number));
  assert.equal(perms.filter((p) => p.length > 4), [[...(wide[0]!.attrs as { perm: number[] }).perm]]);
});

/** A Python that imports onnx, or the reason there is none. */
function findOnnxPython(): { python: string } | { reason: string } {
  for (const python of ["python3", "/usr/bin/python3"]) {
    const r = spawnSync(python, ["-c", "import onnx"], { encoding: "utf8" });
    if (r.status === 0) return { python };
  }
  return { reason: "no python3 with the onnx package (apt-get install python3-onnx)" };
}

test("the ONNX checker (full check, strict shape inference) accepts the graphs; every value has a shape", async () => {
  const found = findOnnxPython();
  if ("reason" in found) {
    console.log(`  skipped the ONNX checker: ${found.reason}`);
    return;
  }
  for (const turbo of [undefined, { r: 3, threshold: 12, trackSources: true, reportSizes: true }, { r: [5, 2], fusion: "S2" as const }]) {
    const compiled = compile(tiny, turbo === undefined ? {} : { turbo });
    const path = join(tempDir("turbograph-onnx-check-"), "model.onnx");
    writeFileSync(path, emitOnnx(compiled.program, compiled.plan, "tiny"));
    const r = spawnSync(found.python, [join(fixtures, "check_model.py"), path], { encoding: "utf8" });
    assert.is(r.status, 0, `checker failed for ${JSON.stringify(turbo)}:\n${r.stderr}`);
    const report = JSON.parse(r.stdout) as { opset: number[]; outputs: Record<string, (string | number)[]>; unshaped: string[]; values: number };
    assert.equal(report.opset, [17]);
    assert.equal(report.unshaped, []);
    for (const o of compiled.plan.outputs) {
      assert.equal(report.outputs[o.name], o.shape.map((d) => (typeof d === "number" ? d : d.batch === 1 ? "B" : `B*${d.batch}`)), o.name);
    }
  }
});

test("onnxruntime loads a merged model.onnx without a warning", () => {
  const compiled = compile(tiny, { turbo: { r: 3, trackSources: true } });
  const dir = tempDir("turbograph-onnx-log-");
  writeFileSync(join(dir, "model.onnx"), emitOnnx(compiled.program, compiled.plan, "tiny"));
  const r = spawnSync(process.execPath, ["--import", "tsx", join(fixtures, "session_log.ts"), dir], { encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, "ran: logits, sources");
  const warnings = r.stderr.split("\n").filter((l) => /\[[WE]:onnxruntime/.test(l));
  assert.equal(warnings, []);
});

test("turbo-compile --emit onnx writes model.onnx that load(dir, { backend: 'onnxruntime' }) runs", async () => {
  const dir = tempDir("turbograph-onnx-cli-");
  const err: string[] = [];
  const code = await main(["examples/vit/vit.ts", "--no-check", "--turbo", "r=2", "--emit", "onnx,ts", "--out", dir], { out: () => {}, err: (t) => err.push(t) });
  assert.is(code, 0, err.join(""));
  const model = await load(dir, { backend: "onnxruntime", weights: { random: 3 } });
  assert.is(model.info.backend.name, "onnxruntime");
  const out = await model.run({ pixels: pixels([2, 3, 32, 32], 1) });
  assert.equal(out.logits!.shape, [2, 10]);
  await model.dispose();
});

test("load() on onnxruntime: the same LoadErrors as on tfjs", async () => {
  const { dir, ort, wasm } = await build({ r: 2 });
  const noOnnx = tempDir("turbograph-onnx-none-");
  await rejects(() => load(noOnnx, { backend: "onnxruntime", weights: { random: 1 } }), (e: unknown) => e instanceof LoadError && /holds no model\.onnx; compile it with turbo-compile --emit onnx/.test(e.message));
  const weights = new Map([["head.weight", { data: new Float32Array(3), shape: [3] }]]);
  let tfjsMessage = "";
  try {
    await loadModule(await import(pathToFileURL(join(dir, "model.mjs")).href), { weights, backend: "wasm" });
  } catch (e) {
    tfjsMessage = (e as Error).message;
  }
  assert.ok(tfjsMessage.length > 0);
  await rejects(() => load(dir, { backend: "onnxruntime", weights }), (e: unknown) => e instanceof LoadError && e.message === tfjsMessage);
  await rejects(() => ort.run({ pixels: tf.zeros([2, 3, 31, 32]) }), (e: unknown) => e instanceof LoadError && /has shape \[2,3,31,32\] but the plan expects \[B,3,32,32\]/.test((e as Error).message));
  await rejects(() => ort.run({}), (e: unknown) => e instanceof LoadError && /missing input "pixels"/.test((e as Error).message));
  await rejects(() => load(dir, { backend: "onnxruntime", weights: { random: 1 }, threads: 0 }), (e: unknown) => e instanceof LoadError && /threads must be a positive integer/.test((e as Error).message));
  writeFileSync(join(noOnnx, "model.onnx"), "not a model");
  await rejects(() => load(noOnnx, { backend: "onnxruntime", weights: { random: 1 } }), (e: unknown) => e instanceof LoadError && /is not an ONNX model|was not written by turbo-compile/.test((e as Error).message));
  await ort.dispose();
  await rejects(() => ort.run({ pixels: tf.zeros([1, 3, 32, 32]) }), (e: unknown) => e instanceof LoadError && /disposed/.test((e as Error).message));
  wasm.dispose();
});

test.run();
