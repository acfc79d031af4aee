/**
 * Where a model run spends its time, tfjs kernel by kernel.
 *
 *   npx tsx bench/profile.ts [--model s16] [--batch 8] [--turbo 0] [--reps 3] [--eager]
 *
 * Runs the compiled ViT (or, with --eager, examples/vit/eager.ts) with random
 * weights on the wasm backend under `tf.profile`, and sums each kernel's wall
 * time (the wasm backend runs kernels synchronously, so a kernel's wall time
 * is its cost) by kernel name, splitting matmuls into 2-D and batched ones and
 * giving their achieved GFLOP/s. `npm run bench` prints the same table for
 * ViT-S/16 in BENCHMARKS.md. A diagnostic, not a benchmark: tf.profile adds a
 * little overhead per kernel.
 */

import * as tf from "@tensorflow/tfjs-core";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import { compile } from "../compiler/compile.ts";
import type { ModelSpec } from "../compiler/dsl/trace.ts";
import { vitConfigs, type VitConfig } from "../examples/vit/config.ts";
import { eagerVit } from "../examples/vit/eager.ts";
import * as specs from "../examples/vit/vit.ts";
import { gelu } from "../runtime/kernels/gelu.ts";
import { loadModule, registerSimdMatmul, selectBackend } from "../runtime/mod.ts";
import { randomWeights } from "../runtime/weights/mod.ts";

export interface KernelRow {
  kernel: string;
  callsPerRun: number;
  msPerRun: number;
  share: number;
  /** Achieved GFLOP/s, for matmuls only. */
  gflops: number | null;
}

/** Profiles `reps` calls of `f` (after one warm-up) and returns kernels sorted by time. */
export async function kernelProfile(f: () => tf.Tensor, reps: number): Promise<{ rows: KernelRow[]; kernelMsPerRun: number }> {
  f().dispose();
  const acc = new Map<string, { ms: number; calls: number; flops: number }>();
  for (let i = 0; i < reps; i++) {
    let out: tf.Tensor | undefined;
    const p = await tf.profile(() => (out = f()));
    out?.dispose();
    for (const k of p.kernels) {
      let key = k.name;
      let flops = 0;
      if (k.name === "BatchMatMul" || k.name === "_FusedMatMul") {
        // Neither turbograph nor eager.ts transposes the left operand, so the
        // inner dimension is its last one.
        const a = k.inputShapes[0] as number[];
        const out = k.outputShapes[0] as number[];
        flops = 2 * out.reduce((s, d) => s * d, 1) * a[a.length - 1]!;
        key = `MatMul ${a.length > 2 && a.slice(0, -2).some((d) => d > 1) ? "batched" : "2-D"}`;
      }
      const row = acc.get(key) ?? { ms: 0, calls: 0, flops: 0 };
      row.ms += (await k.kernelTimeMs) as number;
      row.calls++;
      row.flops += flops;
      acc.set(key, row);
    }
  }
  const total = [...acc.values()].reduce((s, r) => s + r.ms, 0);
  const rows = [...acc]
    .sort((a, b) => b[1].ms - a[1].ms)
    .map(([kernel, r]) => ({
      kernel,
      callsPerRun: r.calls / reps,
      msPerRun: r.ms / reps,
      share: r.ms / total,
      gflops: r.flops ? r.flops / r.ms / 1e6 : null,
    }));
  return { rows, kernelMsPerRun: total / reps };
}

/** The rows as a Markdown table. */
export function profileTable(rows: KernelRow[]): string[] {
  return [
    "| kernel | calls per run | ms per run | share | GFLOP/s |",
    "|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.kernel} | ${r.callsPerRun} | ${r.msPerRun.toFixed(1)} | ${(100 * r.share).toFixed(1)} % | ${r.gflops === null ? "–" : r.gflops.toFixed(1)} |`),
  ];
}

/** Profiles the compiled model (Υ = r) and, optionally, the eager implementation. */
export async function profileVit(spec: ModelSpec, config: VitConfig, batch: number, r: number, reps: number, eager: boolean) {
  const c = compile(spec, r ? { turbo: { r } } : {});
  const weights = randomWeights(c.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), 7);
  const x = tf.randomUniform([batch, config.channels, config.image, config.image], 0, 1, "float32", 1) as tf.Tensor4D;
  try {
    if (eager) {
      const params = new Map([...weights].map(([k, w]) => [k, tf.tensor(w.data, w.shape, "float32")]));
      // At its best, as in the benchmark: turbograph's SIMD matmul installed, and the runtime's GELU.
      registerSimdMatmul();
      try {
        return await kernelProfile(() => eagerVit(config, params, x, undefined, undefined, { gelu }), reps);
      } finally {
        tf.dispose([...params.values()]);
      }
    }
    const dir = mkdtempSync(join(tmpdir(), "turbograph-profile-"));
    writeFileSync(join(dir, "model.mjs"), c.module.js);
    const model = await loadModule(await import(pathToFileURL(join(dir, "model.mjs")).href), { weights, backend: "wasm" });
    try {
      return await kernelProfile(() => model.run({ pixels: x }).logits!, reps);
    } finally {
      model.dispose();
    }
  } finally {
    x.dispose();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values: args } = parseArgs({
    options: {
      model: { type: "string", default: "s16" },
      batch: { type: "string", default: "8" },
      turbo: { type: "string", default: "0" },
      reps: { type: "string", default: "3" },
      eager: { type: "boolean", default: false },
    },
  });
  const name = args.model!;
  const spec = (specs as Record<string, unknown>)[name] as ModelSpec | undefined;
  const config = (vitConfigs as Record<string, VitConfig>)[name];
  const ints = { batch: Number(args.batch), turbo: Number(args.turbo), reps: Number(args.reps) };
  const bad = Object.entries(ints).find(([k, v]) => !Number.isInteger(v) || v < (k === "turbo" ? 0 : 1));
  if (!spec || !config || bad) {
    console.error(`bench/profile.ts: ${bad ? `--${bad[0]} must be an integer ≥ ${bad[0] === "turbo" ? 0 : 1}` : `unknown --model "${name}" (one of ${Object.keys(vitConfigs).join(", ")})`}`);
    process.exit(2);
  }
  await selectBackend("wasm");
  const { rows, kernelMsPerRun } = await profileVit(spec, config, ints.batch, ints.turbo, ints.reps, args.eager!);
  console.log(`${args.eager ? "eager" : "compiled"} ${name}, batch ${ints.batch}${ints.turbo ? `, Υ = ${ints.turbo}` : ""}: ${kernelMsPerRun.toFixed(0)} ms of kernels per run`);
  console.log(profileTable(rows).join("\n"));
}
