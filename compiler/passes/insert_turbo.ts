/**
 * insert_turbo — requires: a traced graph with high-level `attention` ops.
 * Ensures: in every self-attention block (attention → output projection →
 * residual add → layer norm of the MLP) with a scheduled r > 0, a
 * `turbo_merge` follows the residual add; every later attention over the
 * merged tokens gets their sizes (proportional attention, + log(size) on the
 * logits), and the class attention used as semantic value is taken with that
 * bias. All shapes stay static: block ℓ removes
 *
 *   r_ℓ = min(Υ_ℓ, ⌊(N_ℓ − p)/2⌋, max(0, N_ℓ − threshold))
 *
 * tokens, p the protected tokens (class, distillation). The rules are in
 * spec/turbo.md; the merge itself is the runtime kernel `turboMerge`.
 */

import { mergedCount } from "../contract/merged_count.ts";
import { CompileError } from "../diagnostics.ts";
import type { AnyNode, Graph, Operand } from "../ir/graph.ts";
import type { Dim } from "../ir/types.ts";
import { rewrite } from "./_rewrite.ts";

export type Fusion = "S1" | "S2" | "S3" | "S4";

/** Υ per block: one number for all, a list (one per block), or ToMe's schedule. */
export type TurboSchedule = number | readonly number[] | { readonly r: number; readonly inflect: number };

export interface TurboOptions {
  r: TurboSchedule;
  /** Token floor: a block never takes the sequence below this many tokens (default 0). */
  threshold?: number;
  alpha?: number;
  scale?: number;
  fusion?: Fusion;
  beta?: number;
  gamma?: number;
  /** Similarity metric: the block's keys (default) or queries, averaged over heads. */
  metric?: "keys" | "queries";
  /** Block indices (0-based, in model order) that never merge. */
  skip?: readonly number[];
  /** Position 0 is a class token (default true). */
  cls?: boolean;
  /** Position 1 is a distillation token (default false). */
  distill?: boolean;
  /** Add outputs `size.<block>` with each merge's token sizes [B, N', 1]. */
  reportSizes?: boolean;
  /** Add an output `sources` [B, N_final, N_0]: which original tokens each final token stands for. */
  trackSources?: boolean;
}

export interface MergeSite {
  /** The block's attention node and its residual add (ids in the traced graph). */
  attention: number;
  residual: number;
  scope: string;
}

const fusions: readonly Fusion[] = ["S1", "S2", "S3", "S4"];

function bad(option: string, message: string): CompileError {
  return new CompileError(`insertTurbo: option ${option}: ${message}`);
}

function users(g: Graph): Map<number, AnyNode[]> {
  const out = new Map<number, AnyNode[]>();
  for (const n of g.nodes) for (const i of n.inputs) if (typeof i === "number") out.set(i, [...(out.get(i) ?? []), n]);
  return out;
}

/**
 * Finds the self-attention blocks: attention whose q and k are projections of
 * the same tensor, whose only user is the output projection, whose only user
 * is a residual add that feeds a layer norm (the MLP's).
 */
export function findMergeSites(g: Graph): MergeSite[] {
  const use = users(g);
  const sites: MergeSite[] = [];
  const source = (o: Operand) => (typeof o === "number" && g.nodes[o]!.op === "linear" ? g.nodes[o]!.inputs[0] : undefined);
  for (const a of g.nodes) {
    if (a.op !== "attention") continue;
    const [q, k] = a.inputs;
    if (source(q!) === undefined || source(q!) !== source(k!)) continue;
    const proj = use.get(a.id) ?? [];
    if (proj.length !== 1 || proj[0]!.op !== "linear") continue;
    const res = use.get(proj[0]!.id) ?? [];
    if (res.length !== 1 || res[0]!.op !== "add") continue;
    if (!(use.get(res[0]!.id) ?? []).some((n) => n.op === "layer_norm")) continue;
    sites.push({ attention: a.id, residual: res[0]!.id, scope: g.meta.get(res[0]!.id)?.scope ?? `block ${sites.length}` });
  }
  return sites;
}

/** Υ for each of `blocks` merging blocks, validated. */
export function resolveSchedule(r: TurboSchedule, blocks: number): number[] {
  const check = (v: number, what: string) => {
    if (!Number.isInteger(v) || v < 0) throw bad("r", `${what} ${v} must be a non-negative integer`);
  };
  if (typeof r === "number") {
    check(r, "r");
    return Array.from({ length: blocks }, () => r);
  }
  if (Array.isArray(r)) {
    const list = r as readonly number[];
    if (list.length !== blocks) throw bad("r", `the list has ${list.length} entries but the model has ${blocks} attention blocks`);
    list.forEach((v, i) => check(v, `entry ${i}`));
    return [...list];
  }
  const s = r as { r: number; inflect: number };
  check(s.r, "r");
  if (!(s.inflect >= -1 && s.inflect <= 1)) throw bad("inflect", `${s.inflect} must lie in [-1, 1]`);
  const lo = Math.floor(s.r * (1 - s.inflect));
  const hi = 2 * s.r - lo;
  if (blocks === 1) return [s.r];
  return Array.from({ length: blocks }, (_, i) => Math.floor(lo + (i * (hi - lo)) / (blocks - 1)));
}

function validate(o: TurboOptions): Required<Omit<TurboOptions, "r" | "skip">> & { skip: readonly number[] } {
  const alpha = o.alpha ?? 5;
  const scale = o.scale ?? 30;
  const beta = o.beta ?? 1;
  const gamma = o.gamma ?? 0;
  const threshold = o.threshold ?? 0;
  const fusion = o.fusion ?? "S1";
  const metric = o.metric ?? "keys";
  if (!Number.isFinite(alpha)) throw bad("alpha", `${alpha} must be a finite number`);
  if (!(scale > 0) || !Number.isFinite(scale)) throw bad("scale", `${scale} must be a positive number`);
  if (!Number.isFinite(beta)) throw bad("beta", `${beta} must be a finite number`);
  if (!Number.isInteger(gamma) || gamma < 0) throw bad("gamma", `${gamma} must be a non-negative integer`);
  if (!Number.isInteger(threshold) || threshold < 0) throw bad("threshold", `${threshold} must be a non-negative integer`);
  if (!fusions.includes(fusion)) throw bad("fusion", `"${fusion}" is not one of ${fusions.join(", ")}`);
  if (metric !== "keys" && metric !== "queries") throw bad("metric", `"${metric}" is not "keys" or "queries"`);
  for (const s of o.skip ?? []) if (!Number.isInteger(s) || s < 0) throw bad("skip", `block index ${s} must be a non-negative integer`);
  return {
    alpha, scale, beta, gamma, threshold, fusion, metric,
    skip: o.skip ?? [],
    cls: o.cls ?? true,
    distill: o.distill ?? false,
    reportSizes: o.reportSizes ?? false,
    trackSources: o.trackSources ?? false,
  };
}

/** Ops whose result keeps the token axis of their first stream operand. */
const tokenPreserving = new Set(["add", "mul", "scale", "gelu", "log", "layer_norm", "linear", "softmax", "attention"]);

export function insertTurbo(g: Graph, options: TurboOptions): Graph {
  const o = validate(options);
  const sites = findMergeSites(g);
  if (sites.length === 0) throw new CompileError(`insertTurbo: model "${g.name}" has no self-attention block (attention → projection → residual add → layer norm) to merge in`);
  const schedule = resolveSchedule(options.r, sites.length);
  for (const s of o.skip) if (s >= sites.length) throw bad("skip", `block index ${s} is out of range; the model has ${sites.length} attention blocks`);
  const first = g.nodes[sites[0]!.residual]!.type.shape[1];
  if (typeof first === "number" && o.threshold > first) {
    throw bad("threshold", `${o.threshold} is above the ${first} tokens entering the first block`);
  }
  const siteAt = new Map(sites.map((s, i) => [s.residual, { site: s, index: i }]));

  /** The size tensor of the token stream each new node belongs to. */
  const streamSize = new Map<number, Operand>();
  let sources: Operand | undefined;
  let layer = 0;
  const extraOutputs: { name: string; id: number }[] = [];

  const out = rewrite(g, (n, ctx) => {
    const inputs = n.inputs.map(ctx.map);
    const sizeOf = (x: Operand) => (typeof x === "number" ? streamSize.get(x) : undefined);
    let id: number;
    if (n.op === "attention") {
      const size = sizeOf(inputs[1]!);
      id = ctx.add("attention", size === undefined ? inputs.slice(0, 3) : [...inputs.slice(0, 3), size], n.attrs);
    } else {
      id = ctx.add(n.op, inputs, n.attrs as never);
    }
    if (tokenPreserving.has(n.op)) {
      const stream = inputs.map(sizeOf).find((s) => s !== undefined);
      const t = ctx.b.type(id).shape;
      if (stream !== undefined && t.length === 3 && t[1] === ctx.b.type(stream).shape[1]) streamSize.set(id, stream);
    }
    const at = siteAt.get(n.id);
    if (at === undefined) return id;

    // A merge site: compute this block's r and insert the merge after the residual add.
    const [b, tokens] = ctx.b.type(id).shape as [Dim, number];
    const budget = o.skip.includes(at.index) ? 0 : schedule[at.index]!;
    const floor = Math.max(0, tokens - o.threshold);
    const r = mergedCount(tokens, Math.min(budget, floor), { cls: o.cls, distill: o.distill });
    if (r === 0) return id;
    const attn = g.nodes[at.site.attention]! as AnyNode & { op: "attention" };
    const heads = attn.attrs.heads;
    const [q, k] = [ctx.map(attn.inputs[0]!), ctx.map(attn.inputs[1]!)];
    const width = ctx.b.type(k).shape[2] as number;
    const byHead = ctx.add("reshape", [o.metric === "keys" ? k : q], { shape: [b, tokens, heads, width / heads] });
    const metric = ctx.add("mean", [byHead], { axes: [2], keepDims: false });
    const size = sizeOf(id) ?? ctx.add("fill", [], { shape: [b, tokens, 1], value: 1 });
    const semantic = o.alpha !== 0;
    const operands: Operand[] = [id, metric, size];
    if (semantic) {
      const kSize = sizeOf(k);
      operands.push(ctx.add("cls_attention", kSize === undefined ? [q, k] : [q, k, kSize], { heads }));
    }
    if (o.trackSources) {
      sources ??= ctx.add("eye", [], { shape: [b, tokens, tokens] });
      operands.push(sources);
    }
    const merge = ctx.add("turbo_merge", operands, {
      r, alpha: o.alpha, scale: o.scale, fusion: o.fusion, beta: o.beta, gamma: o.gamma, layer,
      cls: o.cls, distill: o.distill, semantic, track: o.trackSources,
    });
    layer++;
    const merged = ctx.add("merged_size", [merge], {});
    streamSize.set(merge, merged);
    if (o.trackSources) sources = ctx.add("merged_sources", [merge, sources!], {});
    if (o.reportSizes) extraOutputs.push({ name: `size.${at.site.scope}`, id: merged });
    return merge;
  });

  const outputs = [...out.outputs, ...extraOutputs];
  if (o.trackSources && sources !== undefined && typeof sources === "number") outputs.push({ name: "sources", id: sources });
  return { ...out, outputs };
}
