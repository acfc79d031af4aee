/**
 * High-rank transposes as chains of ≤ 4-D ones.
 *
 * tfjs's wasm backend transposes rank ≤ 4 tensors with dedicated loops but
 * falls back to a per-element index computation above that: the patch
 * embedding's [8,3,14,16,14,16] → [8,14,14,3,16,16] takes about 85 ms there,
 * while the same data moved by two 4-D transposes takes a few
 * (`npx tsx bench/profile.ts`, row `Transpose`). So lowering rewrites a
 * transpose whose rank stays above 4 after merging axes that travel together
 * into a sequence of stages, each a reshape and a 4-D (or smaller) transpose
 * that moves one axis group to its final place.
 */

import { dimProduct, type Dim, type Shape } from "../ir/types.ts";

/** One stage: view the tensor as `shape`, then transpose it by `perm`. */
export interface TransposeStage {
  readonly shape: Shape;
  readonly perm: readonly number[];
}

/** The permuted shape. */
export const permuteShape = (shape: Shape, perm: readonly number[]): Shape => perm.map((p) => shape[p]!);

/**
 * Groups of input axes that stay adjacent and in order in the output, with
 * size-1 axes dropped (they can go anywhere for free).
 */
function axisGroups(shape: Shape, perm: readonly number[]): number[][] {
  const kept = perm.filter((a) => shape[a] !== 1);
  const groups: number[][] = [];
  for (const a of kept) {
    const last = groups[groups.length - 1];
    if (last !== undefined && last[last.length - 1] === a - 1) last.push(a);
    else groups.push([a]);
  }
  return groups;
}

/**
 * The stages for `transpose(x, perm)` on a tensor of `shape`, or undefined
 * when one tfjs transpose already has rank ≤ 4 (or the merged dimensions
 * cannot be written, e.g. B·B). After the stages the caller reshapes the
 * result to the output shape.
 */
export function planTranspose(shape: Shape, perm: readonly number[]): TransposeStage[] | undefined {
  if (shape.length <= 4) return undefined;
  // Output order of the groups, and their order in memory (input order).
  const target = axisGroups(shape, perm);
  const size = new Map<number, Dim>();
  for (const [i, g] of target.entries()) {
    const d = dimProduct(g.map((a) => shape[a]!));
    if (d === undefined) return undefined;
    size.set(i, d);
  }
  const order = [...target.keys()].sort((a, b) => target[a]![0]! - target[b]![0]!);
  if (order.length <= 4) {
    // One stage: the merged view is small enough for the fast loops.
    return [{ shape: order.map((g) => size.get(g)!), perm: [...target.keys()].map((g) => order.indexOf(g)) }];
  }
  const stages: TransposeStage[] = [];
  const layout = [...order];
  for (let i = 0; i < target.length; i++) {
    if (layout[i] === i) continue;
    const j = layout.indexOf(i);
    // View as [before i, i..j-1, the group at j, after j] and swap the middle two.
    const parts = [layout.slice(0, i), layout.slice(i, j), [i], layout.slice(j + 1)];
    const present = parts.map((p) => p.length > 0);
    const dims: Dim[] = [];
    for (const [k, p] of parts.entries()) {
      if (!present[k]) continue;
      const d = dimProduct(p.map((g) => size.get(g)!));
      if (d === undefined) return undefined;
      dims.push(d);
    }
    const index = (k: number) => present.slice(0, k).filter(Boolean).length;
    const stagePerm = [0, 2, 1, 3].filter((k) => present[k]).map(index);
    stages.push({ shape: dims, perm: stagePerm });
    layout.splice(j, 1);
    layout.splice(i, 0, i);
  }
  return stages;
}
