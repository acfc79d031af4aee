/**
 * The merge share: how much of a compiled run is work that Turbo added.
 *
 * Which steps are Turbo's is read from the final graph, not from op names:
 *  - the merge itself (`turbo_merge`) and the size and provenance values
 *    (`merged_size`, `merged_sources`, and the `fill`/`eye` that start them);
 *  - everything computed only from those (log size, its reshapes), and the
 *    `add` that puts log size on the attention logits (proportional attention);
 *  - everything whose only users are Turbo's: the similarity metric (keys
 *    averaged over heads) and the class token's attention row. A node the
 *    model needs anyway (kᵀ, shared by the attention and the class row after
 *    cse) stays the model's. The residual stream going into a merge, and the
 *    logits under the log-size add, are the model's: those uses pass through.
 *
 * Timing: the compiled module's `forward` is given a tfjs namespace whose
 * functions time each call, so each program step (one tfjs call, or one
 * runtime kernel such as `turboMerge`) gets its own wall time. The wasm and
 * cpu backends run kernels synchronously, so a call's wall time is its
 * kernel's. The count of calls is checked against the program's steps.
 */

import * as tf from "@tensorflow/tfjs-core";
import type { Compiled } from "../compiler/compile.ts";
import type { Graph } from "../compiler/ir/graph.ts";
import { loadModule, type LoadOptions, type Model } from "../runtime/mod.ts";

/** Values that exist only because of Turbo: sizes, provenance and their starting values. */
const turboOnlyValues = new Set(["merged_size", "merged_sources", "fill", "eye"]);

/** Ids of the nodes of `g` that Turbo added (see the module comment). */
export function turboNodes(g: Graph): Set<number> {
  // Values computed from sizes/provenance only (log size and its reshapes, …).
  const derived = new Set<number>();
  const biasAdds = new Set<number>();
  for (const n of g.nodes) {
    const nodeInputs = n.inputs.filter((i): i is number => typeof i === "number");
    if (turboOnlyValues.has(n.op) || (n.op !== "input" && n.op !== "turbo_merge" && nodeInputs.length > 0 && nodeInputs.every((i) => derived.has(i)))) derived.add(n.id);
    else if (n.op === "add" && nodeInputs.some((i) => derived.has(i))) biasAdds.add(n.id); // logits + log(size)
  }
  // What the model needs: back from its outputs, where a merge needs only its
  // stream and a log-size add only its logits (what Turbo reads is not the model's).
  const model = new Set<number>();
  const stack = g.outputs.map((o) => o.id).filter((id) => !derived.has(id));
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (model.has(id)) continue;
    model.add(id);
    const n = g.nodes[id]!;
    const needed = n.op === "turbo_merge" ? [n.inputs[0]!] : biasAdds.has(id) ? n.inputs.filter((i) => typeof i !== "number" || !derived.has(i)) : n.inputs;
    for (const i of needed) if (typeof i === "number") stack.push(i);
  }
  const turbo = new Set<number>();
  for (const n of g.nodes) if (!model.has(n.id) || n.op === "turbo_merge" || biasAdds.has(n.id)) turbo.add(n.id);
  return turbo;
}

export interface StepTimer {
  model: Model;
  /** Milliseconds per program step of the last run. */
  readonly stepMs: Float64Array;
  /** Indices of the steps that are Turbo's. */
  readonly turboSteps: readonly number[];
}

/** Loads a compiled model whose every step is timed; `stepMs` holds the last run's times. */
export async function loadTimed(compiled: Compiled, module: { plan: unknown; forward: (...a: never[]) => unknown }, options: LoadOptions): Promise<StepTimer> {
  const steps = compiled.program.steps;
  const turbo = turboNodes(compiled.graph);
  const stepMs = new Float64Array(steps.length);
  let step = 0;
  const time = <F extends (...a: never[]) => unknown>(f: F): F =>
    ((...a: never[]) => {
      const t0 = performance.now();
      const out = f(...a);
      if (step < steps.length) stepMs[step] = performance.now() - t0;
      step++;
      return out;
    }) as F;
  const timedTf: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(tf)) timedTf[name] = typeof value === "function" && name !== "dispose" ? time(value as never) : value;
  const forward = module.forward as unknown as (tfns: unknown, w: unknown, inputs: unknown, k: Record<string, unknown>) => unknown;
  const timedModule = {
    plan: module.plan,
    forward: (_tf: unknown, w: unknown, inputs: unknown, k: Record<string, unknown>) => {
      step = 0;
      const timedK = Object.fromEntries(Object.entries(k).map(([name, f]) => [name, typeof f === "function" ? time(f as never) : f]));
      const out = forward(timedTf, w, inputs, timedK);
      if (step !== steps.length) throw new Error(`internal: the module made ${step} calls for ${steps.length} program steps; the merge share cannot be attributed`);
      return out;
    },
  };
  const model = await loadModule(timedModule, options);
  return { model, stepMs, turboSteps: steps.flatMap((s, i) => (turbo.has(s.node) ? [i] : [])) };
}
