/**
 * The Turbo merge step (`k.turboMerge`, runtime/kernels/turbo_merge.ts) as
 * standard ONNX ops, batched over the symbolic B: the same five stages in the
 * same arithmetic order as the tfjs kernel, so both pick the same tokens.
 *
 *   A, B sets      Slice with step 2 on the token axis
 *   cosine, R, dst ReduceSum/Sqrt/Max/Div, MatMul, ReduceMax, ArgMax (first max)
 *   degree E       the fusion S1–S4 on R and the class row I, IsNaN/Where, Clip
 *   selection      TopK (ties: lower index first, as the ONNX spec says); the kept
 *                  A tokens back in position order by a second, ascending TopK
 *   merge          GatherND (batch_dims 1) for rows, GatherElements for dst,
 *                  ScatterElements(reduction add) for the size-weighted sums
 *   output         kept A then new B; protected tokens (class, distillation, registers)
 *                  keep their positions
 *
 * Node names start with `turbo_merge/<step>` so a profile can add them up.
 */

import { CLASS_DEGREE, DEGREE_LIMIT, NORM_EPSILON, S2_EPSILON } from "../contract/merge_constants.ts";
import { mergedCount, protectedSets } from "../contract/merged_count.ts";
import type { Shape } from "../ir/types.ts";
import { attr, type OnnxGraphBuilder } from "./onnx_builder.ts";

export interface MergeOptions {
  readonly r: number;
  readonly alpha: number;
  readonly scale: number;
  readonly fusion: "S1" | "S2" | "S3" | "S4";
  readonly beta: number;
  readonly gamma: number;
  readonly layer: number;
  readonly cls: boolean;
  readonly distill: boolean;
  /** Positions 0 … protect − 1 never merge, never receive and keep their places. @default {0} */
  readonly protect?: number;
  readonly trackSources: boolean;
}

/** The option keys of `k.turboMerge` that this rendering implements. */
export const mergeOptionKeys = ["r", "alpha", "scale", "fusion", "beta", "gamma", "layer", "cls", "distill", "protect", "trackSources"] as const satisfies readonly (keyof MergeOptions)[];

export interface MergeValues {
  readonly x: string;
  readonly metric: string;
  readonly size: string;
  readonly clsAttn: string | undefined;
  readonly sources: string | undefined;
}

export interface MergeOutputs {
  readonly x: string;
  readonly size: string;
  readonly sources: string | undefined;
}

/** Emits one merge; writes its results into the given output names. `n` is the token count in. */
export function emitTurboMerge(g: OnnxGraphBuilder, step: string, inputs: MergeValues, n: number, o: MergeOptions, out: MergeOutputs, outTokens: Shape[number]): void {
  const name = `turbo_merge/${step}`;
  const protection = { cls: o.cls, distill: o.distill, protect: o.protect ?? 0 };
  const merged = mergedCount(n, o.r, protection);
  const guarded = protectedSets(protection);
  if (outTokens !== n - merged) throw new Error(`internal: merge ${step} keeps ${JSON.stringify(outTokens)} tokens but ${n} − r' = ${n - merged}`);
  if (o.trackSources !== (inputs.sources !== undefined && out.sources !== undefined)) throw new Error(`internal: merge ${step} tracks sources without a sources value`);
  if (merged === 0) {
    g.op("Identity", [inputs.x], name, [], out.x);
    g.op("Identity", [inputs.size], name, [], out.size);
    if (out.sources !== undefined) g.op("Identity", [inputs.sources!], name, [], out.sources);
    return;
  }
  const nA = Math.ceil(n / 2);
  const nB = Math.floor(n / 2);
  const kept = nA - merged;
  const f = (v: number) => g.floats([v]);
  const everyOther = (t: string, start: number) => g.op("Slice", [t, g.ints([start]), g.ints([n]), g.ints([1]), g.ints([2])], name);
  const range = (t: string, start: number, end: number) => g.op("Slice", [t, g.ints([start]), g.ints([end]), g.ints([1])], name);
  const unsqueeze = (t: string) => g.op("Unsqueeze", [t, g.ints([2])], name);
  const rows = (table: string, index: string) => g.op("GatherND", [table, unsqueeze(index)], name, [attr.int("batch_dims", 1)]);

  // 1–2. Cosine similarity of A to B, the best partner of each A token (first max).
  const norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [inputs.metric, inputs.metric], name), g.ints([-1])], name, [attr.int("keepdims", 1)])], name);
  const unit = g.op("Div", [inputs.metric, g.op("Max", [norm, f(NORM_EPSILON)], name)], name);
  let scores = g.op("MatMul", [everyOther(unit, 0), g.op("Transpose", [everyOther(unit, 1)], name, [attr.ints("perm", [0, 2, 1])])], name);
  if (guarded.b > 0) {
    const column = new Array<number>(nB).fill(0);
    column.fill(-Infinity, 0, guarded.b); // protected tokens of B are never destinations
    scores = g.op("Add", [scores, g.floats(column, [nB])], name);
  }
  const redundancy = g.op("ReduceMax", [scores], name, [attr.ints("axes", [2]), attr.int("keepdims", 0)]);
  const destination = g.op("ArgMax", [scores], name, [attr.int("axis", 2), attr.int("keepdims", 0), attr.int("select_last_index", 0)]);

  // 3. Information degree E, with the kernel's operations in the kernel's order.
  let degree = redundancy;
  if (inputs.clsAttn !== undefined && (o.fusion === "S2" || o.alpha !== 0)) {
    const value = everyOther(inputs.clsAttn, 0);
    const weighted = (k: number) => g.op("Mul", [value, f(k)], name);
    switch (o.fusion) {
      case "S1":
        degree = g.op("Sub", [redundancy, weighted(o.alpha * o.scale)], name);
        break;
      case "S2":
        degree = g.op("Div", [redundancy, g.op("Add", [weighted(o.scale), f(S2_EPSILON)], name)], name);
        break;
      case "S3":
        degree = g.op("Mul", [redundancy, g.op("Sub", [f(1), weighted(o.alpha * o.scale)], name)], name);
        break;
      case "S4":
        degree = g.op("Sub", [redundancy, weighted(Math.pow(o.beta, Math.abs(o.gamma - o.layer)) * o.alpha * o.scale)], name);
        break;
    }
  }
    degree = g.op("Where", [g.op("IsNaN", [degree], name), f(-DEGREE_LIMIT), degree], name);
  degree = g.op("Clip", [degree, f(-DEGREE_LIMIT), f(DEGREE_LIMIT)], name);
  if (guarded.a > 0) {
    // Protected tokens of A (the class token) never merge.
    const keep = Array.from({ length: nA }, (_, i) => (i < guarded.a ? 0 : 1));
    const classDegree = Array.from({ length: nA }, (_, i) => (i < guarded.a ? CLASS_DEGREE : 0));
    degree = g.op("Add", [g.op("Mul", [degree, g.floats(keep, [nA])], name), g.floats(classDegree, [nA])], name);
  }

  // 4. A by E, highest first; the r' first merge, the rest stay, back in position order.
  const byDegree = g.node("TopK", [degree, g.ints([nA])], name, { attrs: [attr.int("axis", -1), attr.int("largest", 1), attr.int("sorted", 1)], outputs: 2 })[1]!;
  const sourceA = range(byDegree, 0, merged);
  const keptA = kept === 0
    ? undefined
    : g.node("TopK", [range(byDegree, merged, nA), g.ints([kept])], name, { attrs: [attr.int("axis", -1), attr.int("largest", 0), attr.int("sorted", 1)], outputs: 2 })[0]!;

  // 5. Size-weighted average into each destination: x_d + Σ s_i (x_i − x_d) / S.
  const target = g.op("GatherElements", [destination, sourceA], name, [attr.int("axis", 1)]); // [B, r'], index into B
  const targetIndex = unsqueeze(target); // [B, r', 1]
  // Into zeros first, then added, as the kernel's scatterND; rows of `updates` wider than 1 need the index repeated.
  const scatterAdd = (base: string, updates: string, wide: boolean) => {
    const zeros = g.op("ConstantOfShape", [g.op("Shape", [base], name)], name);
    const index = !wide ? targetIndex : g.op("Expand", [targetIndex, g.op("Shape", [updates], name)], name);
    return g.op("ScatterElements", [zeros, index, updates], name, [attr.int("axis", 1), attr.string("reduction", "add")]);
  };
  const xA = everyOther(inputs.x, 0);
  const xB = everyOther(inputs.x, 1);
  const sizeA = everyOther(inputs.size, 0);
  const sizeB = everyOther(inputs.size, 1);
  const movingSize = rows(sizeA, sourceA);
  const pull = g.op("Mul", [movingSize, g.op("Sub", [rows(xA, sourceA), rows(xB, target)], name)], name);
  const newSizeB = g.op("Add", [sizeB, scatterAdd(sizeB, movingSize, false)], name);
  const newXB = g.op("Add", [xB, g.op("Div", [scatterAdd(xB, pull, true), newSizeB], name)], name);

  // Output: the kept A tokens then B, except that protected tokens keep their positions.
  const order = outputRuns(kept, nB, guarded.a, guarded.b);
  const assemble = (a: string, newB: string, output: string) => {
    const keptRows = keptA === undefined ? undefined : rows(a, keptA);
    const parts = order.map((run) => {
      const from = run.from === "A" ? keptRows! : newB;
      const whole = run.start === 0 && run.length === (run.from === "A" ? kept : nB);
      return whole ? from : range(from, run.start, run.start + run.length);
    });
    if (parts.length === 1) g.op("Identity", parts, name, [], output);
    else g.op("Concat", parts, name, [attr.int("axis", 1)], output);
  };
  assemble(xA, newXB, out.x);
  assemble(sizeA, newSizeB, out.size);
  if (inputs.sources !== undefined && out.sources !== undefined) {
    const sourcesA = everyOther(inputs.sources, 0);
    const sourcesB = everyOther(inputs.sources, 1);
    const newSourcesB = g.op("Add", [sourcesB, scatterAdd(sourcesB, rows(sourcesA, sourceA), true)], name);
    assemble(sourcesA, newSourcesB, out.sources);
  }
}

/**
 * The output as runs of kept-A rows and new-B rows: slot by slot, a protected
 * token at its own position, else the next unprotected kept A token, then the
 * unprotected B tokens (the kernel's `outputOrder`).
 */
function outputRuns(kept: number, nB: number, guardedA: number, guardedB: number): { from: "A" | "B"; start: number; length: number }[] {
  const runs: { from: "A" | "B"; start: number; length: number }[] = [];
  const take = (from: "A" | "B", start: number) => {
    const last = runs[runs.length - 1];
    if (last !== undefined && last.from === from && last.start + last.length === start) last.length++;
    else runs.push({ from, start, length: 1 });
  };
  let a = guardedB === 0 ? 0 : guardedA;
  let b = guardedB;
  for (let slot = 0; slot < kept + nB; slot++) {
    if (guardedB > 0 && slot % 2 === 0 && slot / 2 < guardedA) take("A", slot / 2);
    else if (guardedB > 0 && slot % 2 === 1 && (slot - 1) / 2 < guardedB) take("B", (slot - 1) / 2);
    else if (a < kept) take("A", a++);
    else take("B", b++);
  }
  return runs;
}
