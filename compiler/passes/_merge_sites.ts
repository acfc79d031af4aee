/**
 * Where Turbo merges: found from the residual stream, not from op order
 * (spec/turbo.md, "Where the compiler puts the merge").
 *
 * A self-attention is an `attention` whose queries and keys carry the same
 * token stream; a cross-attention (keys from another stream) is never a
 * site. The block's attention residual is the first `add` after the
 * attention that joins a tensor computed from the attention (through its
 * projection, a LayerScale `mul`, anything per token) with a tensor of the
 * stream the queries were computed from. The merge goes after that add, or
 *
 * - after the layer norm that is the add's only user (post-norm,
 *   `LN(x + attn(x))`: the normalised sum is what the next residual carries);
 * - after the outer add when the residual add's only user adds a branch that
 *   does not read it (parallel blocks, `x + attn(ln x) + mlp(ln x)`: merging
 *   inside the block would leave the MLP branch with the old tokens).
 *
 * Only the stream of the first self-attention merges (the image tokens of a
 * two-stream model); self-attention over another stream is left alone.
 */

import type { AnyNode, Graph } from "../ir/graph.ts";
import { tokenStreams, type StreamAxis } from "./_streams.ts";

export interface MergeSite {
  /** The block's attention node and the node the merge follows (ids in the traced graph). */
  attention: number;
  residual: number;
  /** The stream tensor the attention read and its residual add carries on. */
  stream: number;
  scope: string;
  /** How the site was found. */
  form: "pre-norm" | "post-norm" | "parallel";
}

/** An attention that is not a merge site, and why (for explanations and tests). */
export interface NotASite {
  attention: number;
  reason: string;
}

export interface MergeSites {
  sites: MergeSite[];
  skipped: NotASite[];
  streams: (StreamAxis | undefined)[];
  /** The merged stream (the first self-attention's), if any. */
  origin: number | undefined;
}

function usersOf(g: Graph): AnyNode[][] {
  const out: AnyNode[][] = g.nodes.map(() => []);
  for (const n of g.nodes) for (const i of new Set(n.inputs)) if (typeof i === "number") out[i]!.push(n);
  return out;
}

/** Every node computed from `from` (itself included). */
function descendants(g: Graph, users: AnyNode[][], from: number): Set<number> {
  const seen = new Set<number>([from]);
  for (let i = from; i < g.nodes.length; i++) {
    if (!seen.has(i)) continue;
    for (const u of users[i]!) seen.add(u.id);
  }
  return seen;
}

/** The merge sites of `g`, in graph order. */
export function findMergeSites(g: Graph): MergeSite[] {
  return analyseMergeSites(g).sites;
}

export function analyseMergeSites(g: Graph): MergeSites {
  const streams = tokenStreams(g);
  const users = usersOf(g);
  const streamOf = (o: unknown) => (typeof o === "number" ? streams[o] : undefined);
  const sites: MergeSite[] = [];
  const skipped: NotASite[] = [];
  let origin: number | undefined;
  for (const a of g.nodes) {
    if (a.op !== "attention") continue;
    const sq = streamOf(a.inputs[0]);
    const sk = streamOf(a.inputs[1]);
    if (sq === undefined || sk === undefined || sq.origin !== sk.origin) {
      skipped.push({ attention: a.id, reason: "cross-attention: its keys come from another token stream" });
      continue;
    }
    if (origin !== undefined && sq.origin !== origin) {
      skipped.push({ attention: a.id, reason: "self-attention over a second token stream; only the first stream merges" });
      continue;
    }
    // The stream the queries were computed from: q's ancestors on the same stream.
    const upstream = new Set<number>();
    const stack = [a.inputs[0] as number];
    while (stack.length > 0) {
      const id = stack.pop()!;
      if (upstream.has(id)) continue;
      upstream.add(id);
      for (const o of g.nodes[id]!.inputs) if (typeof o === "number" && streams[o]?.origin === sq.origin) stack.push(o);
    }
    const fromAttention = descendants(g, users, a.id);
    let residual: AnyNode | undefined;
    let stream = -1;
    for (const id of [...fromAttention].sort((x, y) => x - y)) {
      const n = g.nodes[id]!;
      if (n.op !== "add" || streams[id]?.origin !== sq.origin) continue;
      const [l, r] = n.inputs;
      const joins = (p: unknown, q: unknown) => typeof p === "number" && typeof q === "number" && upstream.has(p) && !fromAttention.has(p) && fromAttention.has(q);
      if (joins(l, r) || joins(r, l)) {
        residual = n;
        stream = (joins(l, r) ? l : r) as number;
        break;
      }
    }
    if (residual === undefined) {
      skipped.push({ attention: a.id, reason: "no residual add joins the attention's output with the stream it read" });
      continue;
    }
    let site: AnyNode = residual;
    let form: MergeSite["form"] = "pre-norm";
    for (;;) {
      const us: AnyNode[] = users[site.id]!;
      if (us.length !== 1) break;
      const u = us[0]!;
      if (u.op === "add") {
        const other = u.inputs[0] === site.id ? u.inputs[1] : u.inputs[0];
        // A parallel branch: another tensor of the same stream, not computed from this sum.
        if (typeof other !== "number" || streams[other]?.origin !== sq.origin || descendants(g, users, site.id).has(other)) break;
        site = u;
        form = "parallel";
        continue;
      }
      // Post-norm: the norm's output is what the next residual add carries
      // (a final norm before the head is not a block's norm).
      const carries = (ln: AnyNode) => {
        const below = descendants(g, users, ln.id);
        return users[ln.id]!.some((v) => v.op === "add" && v.inputs.some((x) => x !== ln.id && typeof x === "number" && below.has(x)));
      };
      if (form === "pre-norm" && u.op === "layer_norm" && u.inputs[0] === site.id && carries(u)) {
        site = u;
        form = "post-norm";
      }
      break;
    }
    const shape = site.type.shape;
    const keys = g.nodes[a.inputs[1] as number]!.type.shape;
    if (shape.length !== 3 || streams[site.id]?.axis !== 1 || shape[1] !== keys[1]) {
      skipped.push({ attention: a.id, reason: "the residual is not [batch, tokens, width] over the attention's tokens" });
      continue;
    }
    if (sites.some((s) => s.residual === site.id)) continue;
    origin ??= sq.origin;
    sites.push({ attention: a.id, residual: site.id, stream, scope: g.meta.get(site.id)?.scope ?? `block ${sites.length}`, form });
  }
  return { sites, skipped, streams, origin };
}
