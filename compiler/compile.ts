/**
 * The compile pipeline, one flat list of named steps:
 *
 *   trace ─▶ infer_shapes ─▶ dce ─▶ raise_attention ─▶ insert_turbo | insert_generation ─▶ decompose_attention ─▶ canonicalize ─▶ cse ─▶ dce
 *         ─▶ cost ─▶ lower ─▶ plan_memory ─▶ emit_ts
 *
 * Every graph pass is a pure `(graph) → graph` function; with `verify: true`
 * (the tests) the IR invariants are checked after each one.
 */

import type { Plan, PlanDim } from "./contract/plan.ts";
import { trace, type ModelSpec } from "./dsl/trace.ts";
import type { Graph } from "./ir/graph.ts";
import { printGraph } from "./ir/print.ts";
import type { Shape } from "./ir/types.ts";
import { verify } from "./ir/verify.ts";
import { emitTs } from "./lower/emit_ts.ts";
import { lower, type Program } from "./lower/program.ts";
import { canonicalize } from "./passes/canonicalize.ts";
import { cost } from "./passes/cost.ts";
import { cse } from "./passes/cse.ts";
import { dce } from "./passes/dce.ts";
import { decomposeAttention } from "./passes/decompose_attention.ts";
import { inferShapes } from "./passes/infer_shapes.ts";
import { CompileError } from "./diagnostics.ts";
import { insertGenerationWithNotes, type GenerationOptions } from "./passes/insert_generation.ts";
import { insertTurboWithNotes, type TurboOptions } from "./passes/insert_turbo.ts";
import { planMemory } from "./passes/plan_memory.ts";
import { raiseAttentionWithNotes } from "./passes/raise_attention.ts";

export interface CompileOptions {
  /** Verify IR invariants after every pass (slower; on in tests). */
  verify?: boolean;
  /** Shown in the generated module's header. */
  source?: string;
  /** Insert Turbo merges (spec/turbo.md); omitted or r = 0 everywhere: no merging. */
  turbo?: TurboOptions;
  /** Turbo's generation mode instead: merge and restore around sub-layers (spec/turbo.md, "Generation mode"). */
  generation?: GenerationOptions;
  /** Raise attention written from primitives to the `attention` op (default true; false compiles it as written). */
  raiseAttention?: boolean;
}

export interface Compiled {
  /** The traced graph, before any pass. */
  traced: Graph;
  /** The graph after the passes, as lowered. */
  graph: Graph;
  program: Program;
  plan: Plan;
  /** The traced IR and the final IR, as text. */
  ir: { traced: string; final: string };
  module: { ts: string; js: string };
}

type Pass = readonly [name: string, run: (g: Graph) => Graph];

/** The graph passes, in order, for the given options; `notes` collects what raise_attention found. */
export const pipeline = (options: CompileOptions = {}, notes: string[] = []): readonly Pass[] => [
  ["infer_shapes", (g) => inferShapes(g)],
  ["dce", dce],
  ...(options.raiseAttention === false ? [] : [["raise_attention", (g: Graph) => {
    const r = raiseAttentionWithNotes(g);
    notes.push(...r.notes);
    return r.graph;
  }] as const]),
  ...(options.turbo === undefined ? [] : [["insert_turbo", (g: Graph) => {
    const r = insertTurboWithNotes(g, options.turbo!);
    notes.push(...r.notes);
    return r.graph;
  }] as const]),
  ...(options.generation === undefined ? [] : [["insert_generation", (g: Graph) => {
    const r = insertGenerationWithNotes(g, options.generation!);
    notes.push(...r.notes);
    return r.graph;
  }] as const]),
  ["decompose_attention", decomposeAttention],
  ["canonicalize", canonicalize],
  ["cse", cse],
  ["dce", dce],
];

export function runPasses(g: Graph, passes: readonly Pass[], options: CompileOptions = {}): Graph {
  let out = g;
  for (const [name, run] of passes) {
    out = run(out);
    if (options.verify) verify(out, name);
  }
  return out;
}

const planShape = (s: Shape): PlanDim[] => s.map((d) => (typeof d === "number" ? d : { batch: d.batch }));

/** The rows of the smallest table the token-id input `name` indexes (ids must be below it). */
function vocabOf(g: Graph, name: string): number {
  const id = g.nodes.find((n) => n.op === "input" && n.attrs.name === name)?.id;
  const rows = g.nodes.filter((n) => n.op === "gather" && n.inputs[0] === id).map((n) => g.params.get(n.inputs[1] as string)!.shape[0] as number);
  if (rows.length === 0) throw new Error(`internal: the i32 input "${name}" reaches no gather`);
  return Math.min(...rows);
}

/** Compiles a traced graph: passes, cost, lowering, memory plan, module text. */
export function compileGraph(traced: Graph, options: CompileOptions = {}): Compiled {
  if (options.verify) verify(traced, "trace");
  if (options.turbo !== undefined && options.generation !== undefined) {
    throw new CompileError("turbo (understanding mode: a shorter stream from block to block) and generation (merge and restore around sub-layers) are two modes of Turbo; choose one");
  }
  const merging = options.turbo ?? (options.generation === undefined ? undefined : { mode: "generation", ...options.generation });
  const notes: string[] = [];
  const graph = runPasses(traced, pipeline(options, notes), options);
  const costs = cost(graph);
  const baseline = merging === undefined ? costs : cost(runPasses(traced, pipeline({ ...options, turbo: undefined, generation: undefined }), {}));
  const { program, memory } = planMemory(lower(graph));
  let weightBytes = 0;
  for (const p of graph.params.values()) weightBytes += 4 * p.shape.reduce((a, b) => a * b, 1);
  const plan: Plan = {
    format: "turbograph.plan/1",
    model: graph.name,
    batchName: graph.batch,
    inputs: program.inputs.map((i) => {
      if (i.dtype === "f32") return { name: i.name, shape: planShape(i.shape), dtype: "float32" as const };
      return { name: i.name, shape: planShape(i.shape), dtype: "int32" as const, vocab: vocabOf(graph, i.name) };
    }),
    outputs: program.outputs.map((o) => ({ name: o.name, shape: planShape(o.shape), dtype: "float32" })),
    params: [...graph.params].map(([name, p]) => ({ name, shape: [...p.shape], dtype: "float32" })),
    flops: costs.total.flops,
    blocks: costs.blocks.map((b) => ({ name: b.name, tokensIn: b.tokensIn ?? null, tokensOut: b.tokensOut ?? null, merged: b.merged, flops: b.flops })),
    turbo: merging === undefined ? null : {
      options: merging,
      baselineFlops: baseline.total.flops,
      flopsRatio: baseline.total.flops.perBatch / costs.total.flops.perBatch,
    },
    memory: { weightBytes, liveBytes: memory.liveBytes },
    kernels: program.steps.length,
    ...(notes.length === 0 ? {} : { explain: notes }),
  };
  const module = emitTs(program, plan, options.source ?? "<memory>");
  return { traced, graph, program, plan, ir: { traced: printGraph(traced), final: printGraph(graph) }, module };
}

/** Traces and compiles a model spec. */
export function compile(spec: ModelSpec, options: CompileOptions = {}): Compiled {
  return compileGraph(trace(spec), options);
}
