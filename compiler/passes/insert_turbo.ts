/**
 * insert_turbo — requires: a traced graph with high-level `attention` ops.
 * Ensures: after the attention residual of every self-attention block on the
 * model's token stream (found from the residual adds: pre-norm, post-norm,
 * LayerScale and parallel blocks, `_merge_sites.ts`) with a scheduled r > 0,
 * a `turbo_merge`; every op after it that was traced with the old token
 * count (reshape, broadcast, slice) is re-typed with the new one, or refused
 * with a located error where the count cannot be re-derived; every later
 * attention whose keys are the merged tokens gets their sizes (proportional
 * attention, + log(size) on the logits), cross-attention included, by stream
 * identity, never by length; an additive mask on such an attention is
 * rebuilt for the new key count when it is zero past the protected prefix
 * (`_key_mask.ts`). The tokens concatenated from parameters or token ids at
 * the front of the stream (class, distillation, register tokens, a text
 * segment) are protected.
 * All shapes stay static: block ℓ removes
 *
 *   r_ℓ = min(Υ_ℓ, ⌊(N_ℓ − p)/2⌋, max(0, N_ℓ − threshold))
 *
 * tokens, p the protected tokens. The rules are in spec/turbo.md; the merge
 * itself is the runtime kernel `turboMerge`.
 */

import { mergedCount } from "../contract/merged_count.ts";
import { CompileError } from "../diagnostics.ts";
import { ancestors, type AnyNode, type Graph, type Operand } from "../ir/graph.ts";
import { formatShape, type Dim } from "../ir/types.ts";
import { crossAttentions, resolveCross } from "./_cross_merge.ts";
import { shrinkKeyMask, zeroPast } from "./_key_mask.ts";
import { analyseMergeSites, findMergeSites, type MergeSite } from "./_merge_sites.ts";
import { retyper } from "./_retype.ts";
import { rewrite } from "./_rewrite.ts";
import { firstPiece, frontPieces, fromTokenIds, readsPosition0, textOrParameter, type StreamAxis } from "./_streams.ts";

export { analyseMergeSites, findMergeSites, type MergeSite };

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
  /**
   * Override: position 0 is (true) or is not (false) a class token, whose
   * attention row is the semantic value. Default: found from the graph (a
   * parameter token at the front of the stream that the model reads out).
   */
  cls?: boolean;
  /** Deprecated override: the first two positions are class and distillation tokens (found from the graph by default). */
  distill?: boolean;
  /** Override: how many leading positions are protected (default: the parameter tokens at the front of the stream). */
  protect?: number;
  /**
   * Override: the position whose attention row is the semantic value I
   * (default 0: the class token, which in a single-stream vision-language
   * model is the text's). Must be a protected position, so that it holds the
   * same token in every block.
   */
  semanticToken?: number;
  /**
   * Fusion-layer merging (dual-stream models): Υ of a merge of the context
   * after each cross-attention whose keys are the merged tokens and that
   * another such cross-attention follows, in graph order (a number for all,
   * or a list). The context tokens the later
   * cross-attentions read shrink; the semantic value is the querying
   * stream's position-0 token's row in that cross-attention (a BLIP-style
   * text encoder's class token), the metric its keys. Default: none.
   */
  cross?: number | readonly number[];
  /** α of the context merges (`cross`); default `alpha`. */
  crossAlpha?: number;
  /** Add outputs `size.<block>` with each merge's token sizes [B, N', 1]. */
  reportSizes?: boolean;
  /** Add an output `sources` [B, N_final, N_0]: which original tokens each final token stands for. */
  trackSources?: boolean;
}

const fusions: readonly Fusion[] = ["S1", "S2", "S3", "S4"];

function bad(option: string, message: string): CompileError {
  return new CompileError(`insertTurbo: option ${option}: ${message}`);
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

function validate(o: TurboOptions): Required<Omit<TurboOptions, "r" | "skip" | "cls" | "distill" | "protect" | "semanticToken" | "cross">> & Pick<TurboOptions, "cls" | "distill" | "protect" | "semanticToken" | "cross"> & { skip: readonly number[]; crossAlpha: number } {
  const alpha = o.alpha ?? 5;
  const scale = o.scale ?? 30;
  const beta = o.beta ?? 1;
  const gamma = o.gamma ?? 0;
  const threshold = o.threshold ?? 0;
  const fusion = o.fusion ?? "S1";
  const metric = o.metric ?? "keys";
  if (!Number.isFinite(alpha)) throw bad("alpha", `${alpha} must be a finite number`);
  const crossAlpha = o.crossAlpha ?? alpha;
  if (!Number.isFinite(crossAlpha)) throw bad("crossAlpha", `${crossAlpha} must be a finite number`);
  if (!(scale > 0) || !Number.isFinite(scale)) throw bad("scale", `${scale} must be a positive number`);
  if (!Number.isFinite(beta)) throw bad("beta", `${beta} must be a finite number`);
  if (!Number.isInteger(gamma) || gamma < 0) throw bad("gamma", `${gamma} must be a non-negative integer`);
  if (!Number.isInteger(threshold) || threshold < 0) throw bad("threshold", `${threshold} must be a non-negative integer`);
  if (!fusions.includes(fusion)) throw bad("fusion", `"${fusion}" is not one of ${fusions.join(", ")}`);
  if (metric !== "keys" && metric !== "queries") throw bad("metric", `"${metric}" is not "keys" or "queries"`);
  for (const s of o.skip ?? []) if (!Number.isInteger(s) || s < 0) throw bad("skip", `block index ${s} must be a non-negative integer`);
  if (o.protect !== undefined && !(Number.isInteger(o.protect) && o.protect >= 0)) throw bad("protect", `${o.protect} must be a non-negative integer`);
  if (o.semanticToken !== undefined && !(Number.isInteger(o.semanticToken) && o.semanticToken >= 0)) throw bad("semanticToken", `${o.semanticToken} must be a non-negative integer`);
  return {
    alpha, scale, beta, gamma, threshold, fusion, metric, crossAlpha,
    skip: o.skip ?? [],
    ...(o.cls === undefined ? {} : { cls: o.cls }),
    ...(o.distill === undefined ? {} : { distill: o.distill }),
    ...(o.protect === undefined ? {} : { protect: o.protect }),
    ...(o.semanticToken === undefined ? {} : { semanticToken: o.semanticToken }),
    ...(o.cross === undefined ? {} : { cross: o.cross }),
    reportSizes: o.reportSizes ?? false,
    trackSources: o.trackSources ?? false,
  };
}

/** Protection attributes of a merge that keeps the first `p` positions. */
const guard = (p: number) => ({ cls: p >= 1, distill: p >= 2, protect: p });

/** What the graph says about the front of the merged stream, and what the options make of it. */
interface Protection {
  /** Leading positions that never merge and never receive. */
  protect: number;
  /** Whether position 0 is a class token. */
  cls: boolean;
  /** The position whose attention row is the semantic value. */
  semantic: number;
  /** How many of the protected tokens came from token ids (a text segment). */
  text: number;
}

/**
 * Which leading positions are protected and which token's attention row is
 * the semantic value: from the graph, unless an option overrides. The
 * protected prefix is every token concatenated at the front of the stream
 * from parameters or from token ids (a class token, register tokens, the
 * text segment of a single-stream vision-language model).
 */
function protection(g: Graph, site: MergeSite, streams: readonly (StreamAxis | undefined)[], origin: number, o: ReturnType<typeof validate>): Protection {
  const pieces = frontPieces(g, site.stream, textOrParameter(g));
  const ids = fromTokenIds(g);
  const front = pieces.reduce((a, p) => a + p.tokens, 0);
  const text = pieces.filter((p) => typeof p.node === "number" && ids[p.node]).reduce((a, p) => a + p.tokens, 0);
  // Position 0 is the class token when it is a lone parameter token, or when the model reads it out.
  const cls = o.cls ?? (front >= 1 && (firstPiece(g, site.stream) === 1 || readsPosition0(g, streams, origin)));
  let protect = o.protect ?? (o.cls === false ? 0 : front);
  if (cls) protect = Math.max(protect, 1);
  if (o.distill === true) protect = Math.max(protect, 2);
  const semantic = o.semanticToken ?? 0;
  if (o.alpha !== 0 && o.semanticToken !== undefined) {
    if (semantic >= protect) throw bad("semanticToken", `position ${semantic} is not protected (the first ${protect} positions are), so it would not hold the same token after a merge; name a protected position, or protect more with protect=k`);
    return { protect, cls, semantic, text };
  }
  if (o.alpha !== 0 && !cls) {
    const found = o.cls === false
      ? "the option cls=false says position 0 is not one"
      : front === 0
      ? "no token is concatenated from a parameter at the front of the token stream"
      : `the ${front} parameter tokens at the front of the stream are protected, but position 0 is not a lone token and the model never reads it out as a class token`;
    throw bad("alpha", `model "${g.name}" has no class token to take the semantic value from (${found}); choose alpha=0 (plain ToMe: merge by redundancy alone), or cls=true to name position 0 as the class token whose attention row is the semantic value`);
  }
  return { protect, cls, semantic, text };
}


export function insertTurbo(g: Graph, options: TurboOptions): Graph {
  return insertTurboWithNotes(g, options).graph;
}

/** What the protected tokens and the semantic value were found to be, as a sentence for the plan's `explain` list. */
function protectionNote(p: Protection, alpha: number, scope: string): string {
  const parts = p.text > 0 ? `${p.text} from token ids (the text segment)${p.protect > p.text ? `, ${p.protect - p.text} more from parameters` : ""}` : "the tokens concatenated at the front of the stream";
  const what = p.protect === 0 ? "no token is protected" : `the first ${p.protect} tokens are protected (${parts})`;
  const semantic = alpha === 0
    ? "alpha=0: no semantic value (plain ToMe)"
    : `the semantic value is the attention row of token ${p.semantic}${p.semantic === 0 ? (p.text > 0 ? " (the text class token)" : " (the class token)") : p.semantic < p.text ? " (a text token)" : ""}`;
  return `merges from ${scope} on: ${what}; ${semantic}`;
}

/** The model inputs `id` is computed from, for saying which stream merges. */
function inputsOf(g: Graph, id: number): string[] {
  const names = [...ancestors(g, id)].flatMap((n) => {
    const node = g.nodes[n]!;
    return node.op === "input" ? [node.attrs.name] : [];
  });
  return [...new Set(names)].sort();
}

/** Scopes of attention nodes, listed once each in graph order. */
function scopesOf(g: Graph, ids: readonly number[]): string {
  return [...new Set(ids.map((id) => g.meta.get(id)?.scope ?? `%${id}`))].join(", ");
}

/**
 * Which stream merges, which attentions are left alone and why, and which
 * cross-attentions read the merged tokens: a model with a second token
 * stream gets these notes; a model with one stream none.
 */
function streamNotes(g: Graph, sites: readonly MergeSite[], skipped: readonly { attention: number; reason: string }[], sized: readonly number[], origin: number): string[] {
  const second = skipped.filter((s) => s.reason.startsWith("self-attention over a second"));
  const cross = sized.filter((id) => !sites.some((s) => s.attention === id));
  if (second.length === 0 && cross.length === 0) return []; // one stream: nothing to tell apart
  const from = inputsOf(g, origin);
  const notes = [`the merged token stream is the one the self-attention of ${scopesOf(g, sites.map((s) => s.attention))} reads${from.length === 0 ? "" : ` (computed from input ${from.join(", ")})`}`];
  if (second.length > 0) notes.push(`not merged: the self-attention of ${scopesOf(g, second.map((s) => s.attention))} reads a second token stream`);
  if (cross.length > 0) notes.push(`proportional attention (+ log size on the keys) in the cross-attention of ${scopesOf(g, cross)}: its keys are the merged tokens`);
  return notes;
}

/** `insertTurbo`, and a note on what it protected and where its semantic value comes from. */
export function insertTurboWithNotes(g: Graph, options: TurboOptions): { graph: Graph; notes: string[] } {
  const o = validate(options);
  const { sites, skipped, streams, origin } = analyseMergeSites(g);
  if (sites.length === 0 || origin === undefined) {
    const why = skipped.length === 0 ? "the graph has no attention op" : skipped.map((s) => `%${s.attention}: ${s.reason}`).join("; ");
    throw new CompileError(`insertTurbo: model "${g.name}" has no self-attention block to merge in (an attention whose queries and keys read one token stream, and a residual add that returns its output to that stream): ${why}`);
  }
  const schedule = resolveSchedule(options.r, sites.length);
  for (const s of o.skip) if (s >= sites.length) throw bad("skip", `block index ${s} is out of range; the model has ${sites.length} attention blocks`);
  const first = g.nodes[sites[0]!.residual]!.type.shape[1];
  if (typeof first === "number" && o.threshold > first) {
    throw bad("threshold", `${o.threshold} is above the ${first} tokens entering the first block`);
  }
  const guarded = protection(g, sites[0]!, streams, origin, o);
  const { protect } = guarded;
  const notes = [protectionNote(guarded, o.alpha, sites[0]!.scope)];
  /** Attention nodes (traced ids) that got the merged tokens' sizes. */
  const sized: number[] = [];
  /** What fusion-layer merging did, per cross-attention. */
  const crossNotes: string[] = [];
  /** The (rebuilt) additive mask of each biased attention (traced id → new graph), for its class-attention row. */
  const masks = new Map<number, Operand>();
  const siteAt = new Map(sites.map((s, i) => [s.residual, { site: s, index: i }]));
  const onStream = (x: Operand): x is number => typeof x === "number" && streams[x]?.origin === origin;

  /** The size tensor (new graph) of each new node of the merged stream, once a merge happened. */
  const streamSize = new Map<Operand, Operand>();
  let sources: Operand | undefined;
  let layer = 0;
  let lastMerge: string | undefined;
  const extraOutputs: { name: string; id: number }[] = [];

  const retyped = retyper(g, streams, "insertTurbo", () => lastMerge);

  // Fusion-layer merging: each cross-attention over the merged tokens, its context tensor, and its Υ.
  const crossSites = o.cross === undefined ? [] : crossAttentions(g, (x) => onStream(x) && streams[x]!.axis === 1);
  const crossSchedule = o.cross === undefined ? [] : resolveCross(o.cross, crossSites.length);
  const crossAt = new Map(crossSites.map((s, i) => [s.attention, { ...s, index: i }]));
  /** The merged context (new graph) that replaces a context tensor (traced id) in every later op. */
  const override = new Map<number, Operand>();

  const out = rewrite(g, (n, ctx) => {
    const inputs = n.inputs.map((x) => (typeof x === "number" ? override.get(x) : undefined) ?? ctx.map(x));
    const sizeOf = (x: Operand) => streamSize.get(x);
    let id: number;
    if (n.op === "attention") {
      // Proportional attention wherever the keys are the merged tokens (cross-attention too).
      const k = n.inputs[1]!;
      const size = onStream(k) && streams[k]!.axis === 1 ? sizeOf(inputs[1]!) : undefined;
      if (size !== undefined) sized.push(n.id);
      const own = inputs.slice(0, (n.attrs as { bias?: boolean }).bias === true ? 4 : 3); // q, k, v (, bias); the size goes last
      if (own.length === 4) {
        const keys = ctx.b.type(own[1]!).shape[1]!;
        const traced = g.nodes[n.inputs[1] as number]!.type.shape[1];
        const maskKeys = ctx.b.type(own[3]!).shape.at(-1);
        if (keys !== traced && maskKeys !== 1) {
          if (!zeroPast(g, n.inputs[3]!, protect)) {
            throw new CompileError(
              `insertTurbo: the additive mask of the attention ${g.meta.get(n.id)?.scope ?? `%${n.id}`} is traced over ${String(traced)} keys, but merging left ${String(keys)}, and the mask is not provably zero past the ${protect} protected tokens, so it cannot follow the merge. Mask only the protected front of the sequence (a padded text segment: keyPadding(mask, tokens)), or merge nothing before this block (skip)`,
              g.meta.get(n.id)?.loc,
            );
          }
          own[3] = shrinkKeyMask(ctx, own[3]!, protect, keys);
        }
        masks.set(n.id, own[3]!);
      }
      id = ctx.add("attention", size === undefined ? own : [...own, size], n.attrs);
      const cross = crossAt.get(n.id);
      if (cross !== undefined) {
        // Merge the context after this cross-attention: later ones read fewer tokens.
        const context = override.get(cross.context) ?? ctx.map(cross.context);
        const [b, tokens] = ctx.b.type(context).shape as [Dim, number];
        const r = mergedCount(tokens, crossSchedule[cross.index]!, guard(protect));
        if (r > 0) {
          const heads = (n.attrs as { heads: number }).heads;
          const [q, k] = [own[0]!, own[1]!];
          const width = ctx.b.type(k).shape[2] as number;
          const metric = ctx.add("mean", [ctx.add("reshape", [k], { shape: [b, tokens, heads, width / heads] })], { axes: [2], keepDims: false });
          const sizes = sizeOf(k) ?? ctx.add("fill", [], { shape: [b, tokens, 1], value: 1 });
          const operands: Operand[] = [context, metric, sizes];
          if (o.crossAlpha !== 0) {
            const row: Operand[] = [q, k, ...(own.length === 4 ? [own[3]!] : []), ...(size === undefined ? [] : [size])];
            operands.push(ctx.add("cls_attention", row, { heads, ...(own.length === 4 ? { bias: true } : {}) }));
          }
          if (o.trackSources) {
            sources ??= ctx.add("eye", [], { shape: [b, tokens, tokens] });
            operands.push(sources);
          }
          const merge = ctx.add("turbo_merge", operands, {
            r, alpha: o.crossAlpha, scale: o.scale, fusion: o.fusion, beta: o.beta, gamma: o.gamma, layer,
            ...guard(protect), semantic: o.crossAlpha !== 0, track: o.trackSources,
          });
          layer++;
          const merged = ctx.add("merged_size", [merge], {});
          streamSize.set(merge, merged);
          override.set(cross.context, merge);
          if (o.trackSources) sources = ctx.add("merged_sources", [merge, sources!], {});
          if (o.reportSizes) extraOutputs.push({ name: `size.${cross.scope}.context`, id: merged });
          crossNotes.push(`the cross-attention of ${cross.scope} merges its context after reading it: ${tokens} → ${tokens - r} tokens for the later cross-attentions; ${o.crossAlpha === 0 ? "alpha=0: no semantic value (plain ToMe)" : "the semantic value is the attention row of its query 0 (the querying stream's class token)"}`);
        }
      }
    } else {
      id = retyped(n, inputs, ctx);
    }
    if (onStream(n.id)) {
      const from = n.inputs.findIndex((x, i) => onStream(x) && sizeOf(inputs[i]!) !== undefined);
      if (from >= 0) streamSize.set(id, sizeOf(inputs[from]!)!);
    }
    const at = siteAt.get(n.id);
    if (at === undefined) return id;

    // A merge site: compute this block's r and insert the merge after it.
    const [b, tokens] = ctx.b.type(id).shape as [Dim, number];
    const budget = o.skip.includes(at.index) ? 0 : schedule[at.index]!;
    const floor = Math.max(0, tokens - o.threshold);
    const r = mergedCount(tokens, Math.min(budget, floor), guard(protect));
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
      const query = guarded.semantic === 0 ? {} : { query: guarded.semantic };
      const mask = masks.get(at.site.attention);
      const ops: Operand[] = [q, k, ...(mask === undefined ? [] : [mask]), ...(kSize === undefined ? [] : [kSize])];
      operands.push(ctx.add("cls_attention", ops, { heads, ...query, ...(mask === undefined ? {} : { bias: true }) }));
    }
    if (o.trackSources) {
      sources ??= ctx.add("eye", [], { shape: [b, tokens, tokens] });
      operands.push(sources);
    }
    const merge = ctx.add("turbo_merge", operands, {
      r, alpha: o.alpha, scale: o.scale, fusion: o.fusion, beta: o.beta, gamma: o.gamma, layer,
      ...guard(protect), semantic, track: o.trackSources,
    });
    layer++;
    lastMerge = at.site.scope;
    const merged = ctx.add("merged_size", [merge], {});
    streamSize.set(merge, merged);
    if (o.trackSources) sources = ctx.add("merged_sources", [merge, sources!], {});
    if (o.reportSizes) extraOutputs.push({ name: `size.${at.site.scope}`, id: merged });
    return merge;
  });

  const outputs = [...out.outputs, ...extraOutputs];
  if (o.trackSources && sources !== undefined && typeof sources === "number") outputs.push({ name: "sources", id: sources });
  return { graph: { ...out, outputs }, notes: [...notes, ...streamNotes(g, sites, skipped, sized, origin), ...crossNotes] };
}
