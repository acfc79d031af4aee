/** Shared test helpers: compile a spec into a temporary directory, compare arrays. */

import * as tf from "@tensorflow/tfjs-core";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compile, type CompileOptions, type Compiled } from "../compiler/compile.ts";
import type { ModelSpec } from "../compiler/dsl/trace.ts";
import type { WeightTensor } from "../runtime/weights/mod.ts";

const temporary: string[] = [];
process.on("exit", () => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory under the system's temp dir, removed when the test process exits. */
export function tempDir(prefix = "turbograph-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

/** Compiles `spec` (verifying the IR after every pass) and writes the module to a fresh directory. */
export function compileToDir(spec: ModelSpec, options: CompileOptions = {}): { dir: string; compiled: Compiled } {
  const compiled = compile(spec, { ...options, verify: true });
  const dir = tempDir();
  writeFileSync(join(dir, "model.mjs"), compiled.module.js);
  writeFileSync(join(dir, "model.ts"), compiled.module.ts);
  return { dir, compiled };
}

/** max |a − b| / max |b|: the relative error of `a` against the reference `b`. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let err = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return scale === 0 ? err : err / scale;
}

export function toTensors(w: ReadonlyMap<string, WeightTensor>): Map<string, tf.Tensor> {
  return new Map([...w].map(([k, v]) => [k, tf.tensor(v.data, v.shape, "float32")]));
}

/** Seeded uniform pixels in [0, 1). */
export function pixels(shape: [number, number, number, number], seed: number): tf.Tensor4D {
  return tf.randomUniform(shape, 0, 1, "float32", seed) as tf.Tensor4D;
}
