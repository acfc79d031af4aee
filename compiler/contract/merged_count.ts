/**
 * Pure token arithmetic of the merge, shared by the kernel and the compiler's
 * static planner (which must not load tfjs to know a shape).
 *
 * @module
 */

import { windowPartition } from "./window_partition.ts";

/** @internal */
export function assertCount(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(
      `Invalid argument "${name}": expected a non-negative integer, got "${value}"`,
    );
  }
}

/** Protected positions: `cls` is 0, `distill` is 1, `protect` is every position below it. */
export interface Protection {
  cls?: boolean;
  distill?: boolean;
  /** Positions 0 … protect − 1 are protected (class, distillation, register tokens). @default {0} */
  protect?: number;
}

/**
 * How many tokens of each parity set are protected: the first `a` tokens of A
 * (even positions) and the first `b` of B (odd positions). Protected
 * positions are always such prefixes.
 */
export function protectedSets(options: Protection = {}): { a: number; b: number } {
  const k = options.protect ?? 0;
  assertCount("protect", k);
  const cls = options.cls ?? true;
  const distill = options.distill ?? false;
  return {
    a: Math.max(Math.ceil(k / 2), cls ? 1 : 0),
    b: Math.max(Math.floor(k / 2), distill ? 1 : 0),
  };
}

/**
 * The number of tokens r' that a merge with budget `r` removes from `n`
 * tokens: min(r, ⌊(n − p)/2⌋) with p protected tokens (class, distillation,
 * the first `protect` positions), and 0 when no destination is left (n = 3
 * with a distillation token and no class token). Pure arithmetic, for the
 * static planner.
 *
 * @example
 * ```ts
 * mergedCount(197, 16, { cls: true }); // 16
 * mergedCount(5, 16, { cls: true }); // 2
 * mergedCount(21, 16, { protect: 5 }); // 8
 * ```
 */
export function mergedCount(n: number, r: number, options: Protection = {}): number {
  assertCount("n", n);
  assertCount("r", r);
  const { a, b } = protectedSets(options);
  const sources = Math.ceil(n / 2) - a;
  const destinations = Math.floor(n / 2) - b;
  if (destinations <= 0 || sources <= 0) return 0;
  return Math.max(0, Math.min(r, Math.floor((n - a - b) / 2), sources));
}

/**
 * Generation mode: how many destinations and sources the partition of a
 * rows×columns grid by sy×sx windows has (window_partition.ts), and the
 * sources merged for a requested r (clamped to the sources). Shapes need only
 * these counts, which do not depend on the seed.
 */
export function windowCounts(grid: readonly number[], window: readonly number[], r: number): { destinations: number; sources: number; merged: number } {
  assertCount("r", r);
  const { destinations, sources } = windowPartition({ grid: grid as [number, number], window: window as [number, number] });
  return { destinations: destinations.length, sources: sources.length, merged: Math.min(r, sources.length) };
}
