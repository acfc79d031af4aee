/**
 * insert_generation — Turbo's generation mode (spec/turbo.md, "Generation
 * mode: merge and restore"). Requires: a traced graph with high-level
 * `attention` ops. Ensures: around every chosen sub-layer of the image token
 * stream,
 *
 *     x ← x + restore(f(merge(h)))      h = the sub-layer's input (norm, modulation)
 *
 * a `window_merge` of h (one destination per window of the token grid,
 * seeded, r = ⌊ratio·N⌋ sources merged) before the sub-layer's first
 * linears and a `window_restore` of the branch before the residual add, so
 * the stream keeps all N tokens from block to block and the output has every
 * pixel. Found from the graph, not from builders:
 *
 * - a sub-layer is the branch of a residual `add` on the image stream whose
 *   other operand s is the stream it reads: the nodes computed from s that
 *   reach the branch, entered through linears that all read one tensor h;
 * - it is self-attention when the branch holds an attention whose keys are
 *   the image stream, cross-attention when its keys come from another stream
 *   (the prompt), an MLP otherwise;
 * - the image stream is the queries' stream of the first self-attention.
 *
 * The semantic value I (α ≠ 0) is the visual-textual map of the block's
 * cross-attention, evaluated at the sub-layer's input: the cross-attention's
 * query projection of h against its text keys, softmax over the image
 * tokens, averaged over text tokens and heads (`textualMap`). For the cross-attention's own
 * merge that is exactly the map the paper uses; for self-attention and the
 * MLP it is the same map at their input (the block's own cross-attention
 * runs after self-attention, so its map of the current tokens is not yet
 * known there).
 */

import { windowCounts } from "../contract/merged_count.ts";
import { CompileError } from "../diagnostics.ts";
import { ancestors, type AnyNode, type Graph, type Operand } from "../ir/graph.ts";
import { isBatch, type Dim } from "../ir/types.ts";
import { retyper } from "./_retype.ts";
import { rewrite, type RewriteContext } from "./_rewrite.ts";
import { tokenStreams } from "./_streams.ts";

export type SubLayer = "self" | "cross" | "mlp";
export const subLayers: readonly SubLayer[] = ["self", "cross", "mlp"];

export interface GenerationOptions {
  /** Fraction of the N tokens merged at each wrapped sub-layer (tomesd's ratio): r = ⌊ratio·N⌋, clamped to the sources. @default {0.5} */
  ratio?: number;
  /** Which sub-layers merge and restore. @default {["self"]} */
  where?: readonly SubLayer[];
  /** The token grid [rows, columns] (row-major positions). @default {[√N, √N]} */
  grid?: readonly [number, number];
  /** The window [sy, sx] that holds one destination. @default {[2, 2]} */
  window?: readonly [number, number];
  /** Seed of the destination inside each window (fixed at compile time). @default {0} */
  seed?: number;
  /** Weight α of the semantic value; 0 is tomesd's rule (redundancy only). @default {5} */
  alpha?: number;
  /** Scale c that brings I (about 1/N) to the size of R. @default {30} */
  scale?: number;
  /** Block indices (0-based, in model order) that never merge. */
  skip?: readonly number[];
}

/** One sub-layer the pass can wrap (ids in the traced graph). */
export interface GenerationSite {
  kind: SubLayer;
  /** The sub-layer's input h (what merges), the branch's last node (what restores) and the residual add. */
  input: number;
  branch: number;
  add: number;
  /** The branch's nodes computed from h (they see the merged tokens). */
  inner: ReadonlySet<number>;
  /** The attention of a self- or cross-attention sub-layer. */
  attention?: number;
  scope: string;
  block: number;
}

function bad(option: string, message: string): CompileError {
  return new CompileError(`insertGeneration: option ${option}: ${message}`);
}

function validate(o: GenerationOptions) {
  const ratio = o.ratio ?? 0.5;
  const where = o.where ?? ["self"];
  const window = o.window ?? [2, 2];
  const seed = o.seed ?? 0;
  const alpha = o.alpha ?? 5;
  const scale = o.scale ?? 30;
  if (!(ratio >= 0 && ratio < 1)) throw bad("ratio", `${ratio} must lie in [0, 1)`);
  if (where.length === 0) throw bad("where", "names no sub-layer; give one or more of self, cross, mlp");
  for (const w of where) if (!subLayers.includes(w)) throw bad("where", `"${w}" is not one of ${subLayers.join(", ")}`);
  for (const [name, pair] of [["window", window], ["grid", o.grid]] as const) {
    if (pair !== undefined && !(pair.length === 2 && pair.every((v) => Number.isInteger(v) && v >= 1))) throw bad(name, `[${pair}] must be two positive integers (rows, columns)`);
  }
  if (!Number.isInteger(seed)) throw bad("seed", `${seed} must be an integer`);
  if (!Number.isFinite(alpha)) throw bad("alpha", `${alpha} must be a finite number`);
  if (!(scale > 0) || !Number.isFinite(scale)) throw bad("scale", `${scale} must be a positive number`);
  for (const s of o.skip ?? []) if (!Number.isInteger(s) || s < 0) throw bad("skip", `block index ${s} must be a non-negative integer`);
  return { ratio, where, window, seed, alpha, scale, grid: o.grid, skip: o.skip ?? [] };
}

function usersOf(g: Graph): number[][] {
  const out: number[][] = g.nodes.map(() => []);
  for (const n of g.nodes) for (const i of new Set(n.inputs)) if (typeof i === "number") out[i]!.push(n.id);
  return out;
}

/** Every node computed from `from`, itself included. */
function descendants(g: Graph, users: number[][], from: number): Set<number> {
  const seen = new Set([from]);
  for (let i = from; i < g.nodes.length; i++) if (seen.has(i)) for (const u of users[i]!) seen.add(u);
  return seen;
}


/** The sub-layers of the image stream, in graph order, and the stream's origin. */
export function findGenerationSites(g: Graph): { sites: GenerationSite[]; origin: number | undefined } {
  const streams = tokenStreams(g);
  const attentions = g.nodes.filter((n) => n.op === "attention");
  const sameStream = (a: AnyNode) => {
    const [q, k] = a.inputs.map((o) => (typeof o === "number" ? streams[o] : undefined));
    return q !== undefined && k !== undefined && q.origin === k.origin;
  };
  const first = attentions.find(sameStream) ?? attentions[0];
  const origin = first === undefined ? undefined : streams[first.inputs[0] as number]?.origin;
  if (origin === undefined) return { sites: [], origin };
  const onStream = (o: Operand): o is number => typeof o === "number" && streams[o]?.origin === origin && streams[o]!.axis === 1;
  const users = usersOf(g);
  const sites: GenerationSite[] = [];
  const scopes: string[] = [];
  for (const n of g.nodes) {
    if (n.op !== "add" || !onStream(n.inputs[0]!) || !onStream(n.inputs[1]!)) continue;
    const [l, r] = n.inputs as [number, number];
    const [s, y] = l < r ? [l, r] : [r, l];
    const above = ancestors(g, y);
    if (!above.has(s)) continue;
    const below = descendants(g, users, s);
    const branch = new Set([...above].filter((id) => id !== s && below.has(id)));
    // Entry linears: linears of the branch on the image stream with no linear of the branch above them.
    const linearAbove = new Map<number, boolean>();
    for (const id of [...branch].sort((a, b) => a - b)) {
      const node = g.nodes[id]!;
      linearAbove.set(id, node.inputs.some((o) => typeof o === "number" && branch.has(o) && (g.nodes[o]!.op === "linear" || linearAbove.get(o) === true)));
    }
    const entries = [...branch].filter((id) => {
      const node = g.nodes[id]!;
      return node.op === "linear" && onStream(node.inputs[0]!) && !linearAbove.get(id) && (branch.has(node.inputs[0] as number) || node.inputs[0] === s);
    });
    const inputs = new Set(entries.map((id) => g.nodes[id]!.inputs[0] as number));
    if (inputs.size !== 1) continue;
    const h = [...inputs][0]!;
    const fromH = descendants(g, users, h);
    const inner = new Set([...branch].filter((id) => id !== h && fromH.has(id)));
    const att = [...inner].map((id) => g.nodes[id]!).filter((a) => a.op === "attention");
    const kind: SubLayer = att.some(sameStream) ? "self" : att.length > 0 ? "cross" : "mlp";
    const scope = g.meta.get(n.id)?.scope ?? "(model)";
    if (!scopes.includes(scope)) scopes.push(scope);
    const attention = kind === "self" ? att.find(sameStream) : att[0];
    sites.push({ kind, input: h, branch: y, add: n.id, inner, ...(attention === undefined ? {} : { attention: attention.id }), scope, block: scopes.indexOf(scope) });
  }
  return { sites, origin };
}

/** The cross-attention that gives a site its semantic value: the block's own, else the nearest in graph order. */
function semanticSource(g: Graph, site: GenerationSite, all: readonly GenerationSite[]): AnyNode & { op: "attention" } {
  const crosses = all.filter((s) => s.kind === "cross" && s.attention !== undefined);
  const own = crosses.find((s) => s.scope === site.scope && site.scope !== "(model)");
  const pick = own ?? crosses.reduce<GenerationSite | undefined>((best, s) => (best === undefined || Math.abs(s.input - site.input) < Math.abs(best.input - site.input) ? s : best), undefined);
  if (pick === undefined) {
    throw bad("alpha", `model "${g.name}" has no cross-attention from the image tokens to a prompt, so there is no visual-textual map to take the semantic value from; choose alpha=0 (tomesd's rule: merge by redundancy alone)`);
  }
  return g.nodes[pick.attention!]! as AnyNode & { op: "attention" };
}

/**
 * The visual-textual map at h [B, N, D] as IR: softmax over the N image
 * tokens of q(h)·k_t/√d per text token t and head, averaged over both →
 * [B, N], with q(h) = h·W + b the cross-attention's query projection. The
 * projection is folded into the text side, logits = h·(W k_t) + b·k_t per
 * head, so the cost is T·H rows against the image tokens instead of a
 * second N×D×D projection of every image token.
 */
function textualMap(ctx: RewriteContext, h: Operand, text: Operand, weight: Operand, bias: Operand | undefined, heads: number): Operand {
  const [b, , width] = ctx.b.type(h).shape as [Dim, number, number];
  const tokens = ctx.b.type(text).shape[1] as number;
  const dh = width / heads;
  const bt = isBatch(b) ? { batch: b.batch * tokens } : b * tokens;
  // U[b, h, t, :] = W[:, h, :] · k[b, t, h, :], as one batched product over heads.
  const kHeads = ctx.add("reshape", [text], { shape: [b, tokens, heads, dh] });
  const kByHead = ctx.add("reshape", [ctx.add("transpose", [kHeads], { perm: [2, 0, 1, 3] })], { shape: [heads, bt, dh] });
  const wByHead = ctx.add("transpose", [ctx.add("reshape", [weight], { shape: [width, heads, dh] })], { perm: [1, 2, 0] }); // [H, dh, D]
  const u = ctx.add("matmul", [kByHead, wByHead], {}); // [H, B·T, D]
  const rows = ctx.add("reshape", [ctx.add("transpose", [ctx.add("reshape", [u], { shape: [heads, b, tokens, width] })], { perm: [1, 0, 2, 3] })], { shape: [b, heads * tokens, width] });
  let logits: Operand = ctx.add("matmul", [rows, ctx.add("transpose", [h], { perm: [0, 2, 1] })], {}); // [B, H·T, N]
  if (bias !== undefined) {
    const c = ctx.add("sum", [ctx.add("mul", [kHeads, ctx.add("reshape", [bias], { shape: [heads, dh] })], {})], { axes: [3], keepDims: false }); // [B, T, H]
    logits = ctx.add("add", [logits, ctx.add("reshape", [ctx.add("transpose", [c], { perm: [0, 2, 1] })], { shape: [b, heads * tokens, 1] })], {});
  }
  const p = ctx.add("softmax", [ctx.add("scale", [logits], { value: 1 / Math.sqrt(dh) })], {});
  return ctx.add("mean", [p], { axes: [1], keepDims: false });
}

export function insertGeneration(g: Graph, options: GenerationOptions = {}): Graph {
  return insertGenerationWithNotes(g, options).graph;
}

/** `insertGeneration`, and notes on what it wrapped for the plan's `explain` list. */
export function insertGenerationWithNotes(g: Graph, options: GenerationOptions = {}): { graph: Graph; notes: string[] } {
  const o = validate(options);
  const { sites: all, origin } = findGenerationSites(g);
  if (origin === undefined) throw new CompileError(`insertGeneration: model "${g.name}" has no attention over a token stream, so there is nothing to merge around`);
  const blocks = Math.max(0, ...all.map((s) => s.block + 1));
  for (const s of o.skip) if (s >= blocks) throw bad("skip", `block index ${s} is out of range; the model has ${blocks} blocks`);
  const sites = all.filter((s) => o.where.includes(s.kind) && !o.skip.includes(s.block));
  if (sites.length === 0) {
    const found = subLayers.map((k) => `${all.filter((s) => s.kind === k).length} ${k}`).join(", ");
    throw bad("where", `model "${g.name}" has no ${o.where.join(" or ")} sub-layer to wrap (found ${found}: a residual add on the image tokens whose branch enters through linears of one input)`);
  }
  const n = g.nodes[sites[0]!.input]!.type.shape[1] as number;
  let grid = o.grid;
  if (grid === undefined) {
    const side = Math.round(Math.sqrt(n));
    if (side * side !== n) throw bad("grid", `the ${n} image tokens are not a square grid; give grid=ROWSxCOLUMNS`);
    grid = [side, side];
  }
  if (grid[0] * grid[1] !== n) throw bad("grid", `${grid[0]}×${grid[1]} is ${grid[0] * grid[1]} tokens, but the image stream has ${n}`);
  const counts = windowCounts(grid, o.window, Math.floor(o.ratio * n));
  const r = counts.merged;
  if (r === 0) return { graph: g, notes: [`generation mode: ratio ${o.ratio} of ${n} tokens merges none; the graph is unchanged`] };
  const streams = tokenStreams(g);
  const semantic = o.alpha !== 0;
  const sources = semantic ? new Map(sites.map((s) => [s.add, semanticSource(g, s, all)])) : new Map();

  const byInput = new Map(sites.map((s) => [s.input, s]));
  const byBranch = new Map(sites.map((s) => [s.branch, s]));
  const mergeOf = new Map<GenerationSite, number>();
  let lastMerge: string | undefined;
  const retyped = retyper(g, streams, "insertGeneration", () => lastMerge);
  const insideOf = (id: number) => sites.find((s) => s.inner.has(id));

  const out = rewrite(g, (node, ctx) => {
    const site = insideOf(node.id);
    let id: number;
    if (site === undefined) {
      if (!byInput.has(node.id) && !byBranch.has(node.id)) return undefined;
      id = ctx.add(node.op, node.inputs.map(ctx.map), node.attrs as never);
    } else {
      const merged = mergeOf.get(site)!;
      const inputs = node.inputs.map((x) => (x === site.input ? merged : ctx.map(x)));
      try {
        id = node.op === "attention" ? ctx.add("attention", inputs, node.attrs) : retyped(node, inputs, ctx);
      } catch (e) {
        if (!(e instanceof CompileError) || e.message.startsWith("insertGeneration:")) throw e;
        throw new CompileError(`insertGeneration: ${node.op} in the ${site.kind} sub-layer of ${site.scope} does not follow the merged token count (does it read the image tokens both merged, through the sub-layer's input, and whole?): ${e.message}`, e.loc ?? ctx.meta.loc);
      }
    }
    const at = byInput.get(node.id);
    if (at !== undefined) {
      const operands: Operand[] = [id, id];
      if (semantic) {
        const cross = sources.get(at.add)!;
        const qLinear = g.nodes[cross.inputs[0] as number]!;
        if (qLinear.op !== "linear") throw new CompileError(`insertGeneration: the cross-attention of ${at.scope} does not take its queries from a linear, so its visual-textual map cannot be evaluated at the ${at.kind} sub-layer's input; choose alpha=0`, g.meta.get(cross.id)?.loc);
        // The text keys come later in graph order for a merge before the cross-attention:
        // computed here from the prompt (cse folds them with the cross-attention's own).
        const early = (x: Operand): Operand => {
          if (typeof x === "string") return x;
          try {
            return ctx.map(x);
          } catch {
            const k = g.nodes[x]!;
            return ctx.add(k.op, k.inputs.map(early), k.attrs as never);
          }
        };
        operands.push(textualMap(ctx, id, early(cross.inputs[1]!), qLinear.inputs[1]!, qLinear.inputs[2], cross.attrs.heads));
      }
      const merge = ctx.add("window_merge", operands, { r, grid: [...grid], window: [...o.window], seed: o.seed, alpha: o.alpha, scale: o.scale, semantic });
      mergeOf.set(at, merge);
      lastMerge = at.scope;
    }
    const done = byBranch.get(node.id);
    if (done !== undefined) return ctx.add("window_restore", [id, mergeOf.get(done)!], { tokens: n });
    return id;
  });
  const counted = subLayers.filter((k) => sites.some((s) => s.kind === k)).map((k) => `${sites.filter((s) => s.kind === k).length} ${k}`).join(", ");
  const notes = [
    `generation mode: merge and restore around ${sites.length} sub-layers (${counted}); ${r} of ${n} tokens merged at each (${o.window[0]}×${o.window[1]} windows on the ${grid[0]}×${grid[1]} grid, ${counts.destinations} destinations, seed ${o.seed}); ` +
      (semantic ? `semantic value: each block's cross-attention map evaluated at the sub-layer's input, alpha=${o.alpha}, scale=${o.scale}` : "alpha=0: no semantic value (tomesd's rule)"),
  ];
  return { graph: out, notes };
}
