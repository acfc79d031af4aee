/**
 * cost — requires: a verified graph. Ensures nothing about the graph (it is
 * an analysis); returns FLOPs and bytes per node, per block (the node's
 * scope) and in total. Every tensor has at most one batch dimension, so each
 * figure is linear in the batch: `perBatch·B + fixed`.
 *
 * FLOPs count multiply and add separately (a matmul is 2·m·k·n); elementwise
 * ops count their rough arithmetic per element (GELU 8, layer norm 8, softmax 5).
 */

import { operandType, type AnyNode, type Graph } from "../ir/graph.ts";
import type { Op, WindowMergeAttrs } from "../ir/ops.ts";
import { windowCounts } from "../contract/merged_count.ts";
import { bytesPerElement, elementCount, type TensorType } from "../ir/types.ts";

export interface Linear {
  perBatch: number;
  fixed: number;
}

export interface NodeCost {
  flops: Linear;
  /** Bytes written (the output) plus parameter bytes read. */
  bytes: Linear;
}

export interface BlockCost {
  name: string;
  /** Tokens (axis 1 of the residual stream) entering and leaving the block. */
  tokensIn: number | undefined;
  tokensOut: number | undefined;
  /** Tokens removed by Turbo merges in the block. */
  merged: number;
  flops: Linear;
}

export interface CostReport {
  nodes: NodeCost[];
  blocks: BlockCost[];
  total: NodeCost;
}

const zero = (): Linear => ({ perBatch: 0, fixed: 0 });
const times = (e: Linear, k: number): Linear => ({ perBatch: e.perBatch * k, fixed: e.fixed * k });
const plus = (a: Linear, b: Linear): Linear => ({ perBatch: a.perBatch + b.perBatch, fixed: a.fixed + b.fixed });

const perElement = (k: number) => (n: AnyNode) => times(elementCount(n.type.shape), k);

const flopRules: { readonly [K in Op]: (n: AnyNode, ins: readonly TensorType[]) => Linear } = {
  input: zero,
  add: perElement(1),
  mul: perElement(1),
  scale: perElement(1),
  gelu: perElement(8),
  log: perElement(1),
  sigmoid: perElement(4),
  exp: perElement(1),
  sin: perElement(1),
  cos: perElement(1),
  gather: zero,
  layer_norm: perElement(8),
  softmax: perElement(5),
  linear: (n, ins) => {
    const inner = ins[1]!.shape[0] as number;
    return times(elementCount(n.type.shape), 2 * inner + (ins.length > 2 ? 1 : 0));
  },
  matmul: (n, ins) => {
    const a = ins[0]!.shape;
    return times(elementCount(n.type.shape), 2 * (a[a.length - 1] as number));
  },
  attention: (n, ins) => {
    // q·kᵀ and p·v: 2·N·M·D each, plus softmax over [B, h, N, M].
    const m = ins[1]!.shape[1] as number;
    const width = ins[0]!.shape[2] as number;
    const heads = (n.attrs as { heads: number }).heads;
    const qk = times(elementCount(n.type.shape), 4 * m);
    return plus(qk, times(elementCount(n.type.shape), (5 * m * heads) / width));
  },
  cls_attention: (_n, ins) => {
    // One query row per sample: q₀·kᵀ (2·M·D), softmax over [h, M], mean over heads.
    const [q, k] = ins as [TensorType, TensorType];
    const m = k.shape[1] as number;
    const width = q.shape[2] as number;
    return times(elementCount([k.shape[0]!]), 2 * m * width + 7 * m);
  },
  turbo_merge: (n, ins) => {
    // Normalising the metric, the A×B cosine matrix, and the weighted merge of x.
    const [x, metric] = ins as [TensorType, TensorType];
    const tokens = x.shape[1] as number;
    const d = metric.shape[2] as number;
    const a = Math.ceil(tokens / 2);
    const b = Math.floor(tokens / 2);
    const perSample = 3 * tokens * d + 2 * a * b * d + 3 * tokens * (x.shape[2] as number);
    return times(elementCount([x.shape[0]!]), perSample);
  },
  window_merge: (n, ins) => {
    // Normalising the metric, the sources × destinations cosine matrix, the merge of x.
    const [x, metric] = ins as [TensorType, TensorType];
    const tokens = x.shape[1] as number;
    const d = metric.shape[2] as number;
    const a = n.attrs as WindowMergeAttrs;
    const { destinations, sources } = windowCounts(a.grid, a.window, a.r);
    const perSample = 3 * tokens * d + 2 * sources * destinations * d + 3 * tokens * (x.shape[2] as number);
    return times(elementCount([x.shape[0]!]), perSample);
  },
  window_restore: zero,
  merged_size: zero,
  merged_sources: zero,
  fill: zero,
  eye: zero,
  reshape: zero,
  transpose: zero,
  concat: zero,
  slice: zero,
  broadcast: zero,
  mean: (_n, ins) => elementCount(ins[0]!.shape),
  sum: (_n, ins) => elementCount(ins[0]!.shape),
  max: (_n, ins) => elementCount(ins[0]!.shape),
};

function bytesOf(t: TensorType): Linear {
  return times(elementCount(t.shape), bytesPerElement[t.dtype]);
}

export function cost(g: Graph): CostReport {
  const nodes: NodeCost[] = [];
  const blocks = new Map<string, BlockCost>();
  let total: NodeCost = { flops: zero(), bytes: zero() };
  for (const n of g.nodes) {
    const ins = n.inputs.map((o) => operandType(g, o));
    const flops = flopRules[n.op](n, ins);
    let bytes = n.op === "reshape" || n.op === "input" ? zero() : bytesOf(n.type);
    for (const o of n.inputs) if (typeof o === "string") bytes = plus(bytes, bytesOf(operandType(g, o)));
    const c = { flops, bytes };
    nodes.push(c);
    total = { flops: plus(total.flops, flops), bytes: plus(total.bytes, bytes) };
    if (n.op === "input") continue;
    const scope = g.meta.get(n.id)?.scope ?? "(outside blocks)";
    // Ops outside blocks come from anywhere in the model (norms, heads, a second stream's embedding): no token count in or out.
    const tokens = (t: TensorType) => (scope !== "(outside blocks)" && t.shape.length === 3 && typeof t.shape[1] === "number" ? t.shape[1] : undefined);
    let blk = blocks.get(scope);
    if (blk === undefined) {
      blk = { name: scope, tokensIn: ins[0] === undefined ? undefined : tokens(ins[0]), tokensOut: undefined, merged: 0, flops: zero() };
      blocks.set(scope, blk);
    }
    blk.flops = plus(blk.flops, flops);
    if (n.op === "turbo_merge" || n.op === "window_merge") blk.merged += n.attrs.r;
    const out = tokens(n.type);
    if (out !== undefined) blk.tokensOut = out;
  }
  return { nodes, blocks: [...blocks.values()], total };
}

export const evalLinear = (e: Linear, batch: number): number => e.perBatch * batch + e.fixed;
