/**
 * The benchmark's onnxruntime rows (issue 12): turbograph's own ONNX graph
 * (`emitOnnx` of the planned program, Turbo merge included) and a reference
 * graph for the same weights, PyTorch's `torch.onnx.export` of a ViT in
 * Hugging Face layout (`bench/torch_vit_export.py`), both run by
 * onnxruntime-node with the same session options and threads.
 *
 * Both rows pay the same per-run costs: the pixels read out of tfjs into an
 * onnxruntime tensor, and the logits back into a tf.Tensor (the runtime's
 * `run()` contract).
 *
 * Merge share on onnxruntime: a second session with onnxruntime's profiler on
 * runs the same input; every profiled node is named after the program step
 * it renders (`<kernel>/<tensor>/<n>`, compiler/lower/emit_onnx.ts), so its
 * kernel time goes to Turbo when the step's IR node is one of
 * `turboNodes(graph)`. Nodes onnxruntime fused across steps keep one step's
 * name; time in nodes that name no step is reported as unattributed. The
 * first profiled run is a warm-up and is left out.
 */

import * as tf from "@tensorflow/tfjs-core";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type * as Ort from "onnxruntime-node";
import type { Compiled } from "../compiler/compile.ts";
import { emitOnnx } from "../compiler/lower/emit_onnx.ts";
import type { VitConfig } from "../examples/vit/config.ts";
import { loadOnnx, type OnnxModel } from "../runtime/mod.ts";
import { sessionOptions } from "../runtime/onnx_session.ts";
import { encodeSafetensors, toHfVit, type WeightTensor } from "../runtime/weights/mod.ts";
import { turboNodes } from "./turbo_share.ts";

const exportScript = fileURLToPath(new URL("./torch_vit_export.py", import.meta.url));

/** Runs an onnxruntime session on a tf.Tensor input the way `OnnxModel.run` does; returns the logits. */
async function runSession(ort: typeof Ort, session: Ort.InferenceSession, x: tf.Tensor): Promise<tf.Tensor> {
  const feeds = { pixels: new ort.Tensor("float32", x.dataSync() as Float32Array, x.shape) };
  const r = (await session.run(feeds)).logits!;
  const t = tf.tensor(r.data as Float32Array, r.dims as number[], "float32");
  r.dispose();
  return t;
}

export interface Reference {
  readonly ort: typeof Ort;
  readonly bytes: Uint8Array;
  readonly torch: string;
}

/**
 * Exports the reference graph for `weights` (turbograph names), or says why not
 * (no python3, no torch, the export failed).
 */
export function exportReference(ort: typeof Ort, config: VitConfig, weights: ReadonlyMap<string, WeightTensor>): Reference | { skipped: string } {
  // The first interpreter that has torch: $PYTHON, then python3 on the PATH, then
  // Debian's own (a pyenv or venv python3 first on the PATH does not see python3-torch).
  const candidates = [...new Set([process.env.PYTHON, "python3", "/usr/bin/python3"].filter((p): p is string => p !== undefined && p !== ""))];
  let python: string | undefined;
  let torch = "";
  const failures: string[] = [];
  for (const candidate of candidates) {
    const probe = spawnSync(candidate, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" });
    if (probe.error === undefined && probe.status === 0) {
      python = candidate;
      torch = probe.stdout.trim();
      break;
    }
    failures.push(`${candidate}: ${probe.error?.message ?? probe.stderr.trim().split("\n").at(-1)}`);
  }
  if (python === undefined) {
    return { skipped: `no python with PyTorch (${failures.join("; ")}); apt-get install python3-torch libopenblas0-openmp, or set PYTHON` };
  }
  const dir = mkdtempSync(join(tmpdir(), "turbograph-torch-"));
  try {
    const st = join(dir, "weights.safetensors");
    writeFileSync(st, encodeSafetensors(toHfVit(weights, { channels: config.channels })));
    const out = join(dir, "model.onnx");
    const args = [exportScript, st, out, "--image", config.image, "--patch", config.patch, "--channels", config.channels, "--dim", config.dim,
      "--depth", config.depth, "--heads", config.heads, "--mlp-ratio", config.mlpRatio, "--classes", config.classes, "--eps", config.eps].map(String);
    const r = spawnSync(python, args, { encoding: "utf8", timeout: 600_000 });
    if (r.status !== 0) return { skipped: `torch.onnx.export failed: ${(r.stderr || r.error?.message || "").trim().split("\n").at(-1)}` };
    return { ort, bytes: new Uint8Array(readFileSync(out)), torch };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface OrtRow {
  run(): Promise<void>;
  /** Logits for the agreement check. */
  logits(): Promise<tf.Tensor>;
  dispose(): Promise<void>;
}

/** The reference graph in a session with `threads` intra-op threads. */
export async function referenceRow(ref: Reference, threads: number, x: tf.Tensor): Promise<OrtRow> {
  // The options loadOnnx gives our graph, so both rows run alike.
  const session = await ref.ort.InferenceSession.create(ref.bytes, sessionOptions(["cpu"], threads));
  return {
    run: async () => (await runSession(ref.ort, session, x)).dispose(),
    logits: () => runSession(ref.ort, session, x),
    dispose: () => session.release(),
  };
}

/** turbograph's ONNX graph of `c`, through the runtime's `loadOnnx` (the path users take). */
export async function turbographRow(c: Compiled, threads: number, x: tf.Tensor, weights: ReadonlyMap<string, tf.Tensor>): Promise<OrtRow & { model: OnnxModel; bytes: Uint8Array }> {
  const bytes = emitOnnx(c.program, c.plan, c.plan.model);
  const model = await loadOnnx(bytes, { weights, threads });
  const logits = async () => {
    const out = await model.run({ pixels: x });
    return out.logits!;
  };
  return {
    model,
    bytes,
    run: async () => (await logits()).dispose(),
    logits,
    dispose: () => model.dispose(),
  };
}

export interface OrtShare {
  /** Turbo's share of the profiled kernel time. */
  turbo: number;
  /** Share of kernel time in nodes that name no program step (onnxruntime's fusions that renamed them). */
  unattributed: number;
  /** The op types of those nodes, most time first. */
  unattributedOps: string[];
  runs: number;
}

/**
 * Profiles `runs` runs of `c`'s ONNX graph on onnxruntime and splits the node
 * kernel time into Turbo's, the model's, and unattributed (module comment).
 */
export async function profileShare(c: Compiled, bytes: Uint8Array, threads: number, x: tf.Tensor, weights: ReadonlyMap<string, tf.Tensor>, runs: number): Promise<OrtShare> {
  const dir = mkdtempSync(join(tmpdir(), "turbograph-ortprof-"));
  try {
    const model = await loadOnnx(bytes, { weights, threads, sessionOptions: { enableProfiling: true, profileFilePrefix: join(dir, "profile") } });
    // One run more than counted: the first (allocations, first touches) is a warm-up.
    for (let i = 0; i <= runs; i++) tf.dispose(Object.values(await model.run({ pixels: x })));
    model.session.endProfiling();
    await model.dispose();
    const file = readdirSync(dir).find((f) => f.endsWith(".json"));
    if (file === undefined) throw new Error(`internal: onnxruntime wrote no profile into ${dir}`);
    const events = JSON.parse(readFileSync(join(dir, file), "utf8")) as { cat?: string; name?: string; ts?: number; dur?: number; args?: { op_name?: string } }[];
    const runsSeen = events.filter((e) => e.cat === "Session" && e.name === "model_run").sort((a, b) => a.ts! - b.ts!);
    if (runsSeen.length !== runs + 1) throw new Error(`internal: the onnxruntime profile has ${runsSeen.length} runs, expected ${runs + 1}`);
    const warmUpEnd = runsSeen[0]!.ts! + runsSeen[0]!.dur!;
    const turbo = turboNodes(c.graph);
    // Every node is named `<kernel>/<step out>/…` (a fused node keeps the name of
    // one of the nodes it replaced, with a suffix): the second part is the step.
    const stepIsTurbo = new Map(c.program.steps.map((s) => [s.out, turbo.has(s.node)]));
    let total = 0;
    let turboUs = 0;
    const unattributed = new Map<string, number>();
    for (const e of events) {
      if (e.cat !== "Node" || e.name === undefined || !e.name.endsWith("_kernel_time") || e.ts! <= warmUpEnd) continue;
      const dur = e.dur ?? 0;
      total += dur;
      const isTurbo = stepIsTurbo.get(e.name.split("/")[1] ?? "");
      if (isTurbo === undefined) {
        const op = e.args?.op_name ?? e.name;
        unattributed.set(op, (unattributed.get(op) ?? 0) + dur);
      } else if (isTurbo) turboUs += dur;
    }
    if (total === 0) throw new Error("internal: the onnxruntime profile has no node events");
    const unattributedUs = [...unattributed.values()].reduce((x, y) => x + y, 0);
    return {
      turbo: turboUs / total,
      unattributed: unattributedUs / total,
      unattributedOps: [...unattributed].sort((x, y) => y[1] - x[1]).map(([op]) => op),
      runs,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Largest |a − b| over the largest |b|: the agreement of two logits tensors. */
export async function relativeError(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const [da, db] = [await a.data(), await b.data()];
  let num = 0;
  let den = 0;
  for (let i = 0; i < db.length; i++) {
    num = Math.max(num, Math.abs(da[i]! - db[i]!));
    den = Math.max(den, Math.abs(db[i]!));
  }
  return num / den;
}
