/**
 * plan_memory — requires: a lowered program. Ensures: every program tensor
 * that is not an output is disposed right after its last use (the
 * tfjs-converter executor's live-until map, computed once at compile time),
 * and returns the live bytes while each step runs, from which the peak for
 * any batch size follows. Inputs belong to the caller and are never disposed.
 */

import type { Arg, Program } from "../lower/program.ts";
import { bytesPerElement, elementCount } from "../ir/types.ts";
import type { Linear } from "./cost.ts";

function tensorsOf(a: Arg, out: string[]): string[] {
  if ("t" in a) out.push(a.t);
  else if ("list" in a) for (const x of a.list) tensorsOf(x, out);
  else if ("obj" in a) for (const x of Object.values(a.obj)) tensorsOf(x, out);
  return out;
}

export interface MemoryPlan {
  /** Live bytes while step i runs: everything still alive plus step i's output. */
  liveBytes: Linear[];
}

export function planMemory(p: Program): { program: Program; memory: MemoryPlan } {
  const lastUse = new Map<string, number>();
  p.steps.forEach((s, i) => {
    for (const a of s.args) for (const t of tensorsOf(a, [])) lastUse.set(t, i);
  });
  const keep = new Set([...p.outputs.map((o) => o.tensor), ...p.inputs.map((i) => i.tensor)]);
  const bytes = new Map<string, Linear>();
  const steps = p.steps.map((s) => ({ ...s, dispose: [] as string[] }));
  for (const [t, i] of lastUse) if (!keep.has(t)) steps[i]!.dispose.push(t);
  for (const s of steps) s.dispose.sort((a, b) => a.localeCompare(b, "en", { numeric: true }));

  const liveBytes: Linear[] = [];
  let live: Linear = { perBatch: 0, fixed: 0 };
  steps.forEach((s, i) => {
    for (const o of [{ out: s.out, shape: s.shape }, ...s.extra]) {
      const e = elementCount(o.shape);
      const b = { perBatch: e.perBatch * bytesPerElement.f32, fixed: e.fixed * bytesPerElement.f32 };
      bytes.set(o.out, b);
      live = { perBatch: live.perBatch + b.perBatch, fixed: live.fixed + b.fixed };
    }
    liveBytes.push(live);
    // A result that is never used (not even as an output) is freed at once.
    const unused = [s.out, ...s.extra.map((e) => e.out)].filter((t) => !lastUse.has(t) && !keep.has(t));
    steps[i]!.dispose.push(...unused);
    const dead = steps[i]!.dispose;
    for (const t of dead) {
      const d = bytes.get(t);
      if (d !== undefined) live = { perBatch: live.perBatch - d.perBatch, fixed: live.fixed - d.fixed };
    }
  });
  return { program: { ...p, steps }, memory: { liveBytes } };
}
