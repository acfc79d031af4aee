/**
 * Pure token arithmetic of the merge, shared by the kernel and the compiler's
 * static planner (which must not load tfjs to know a shape).
 *
 * @module
 */

/** @internal */
export function assertCount(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(
      `Invalid argument "${name}": expected a non-negative integer, got "${value}"`,
    );
  }
}

/**
 * The number of tokens r' that a merge with budget `r` removes from `n`
 * tokens: min(r, ⌊(n − p)/2⌋) with p protected tokens (class, distillation),
 * and 0 when no destination is left (n = 3 with a distillation token and no
 * class token). Pure arithmetic, for the static planner.
 *
 * @example
 * ```ts
 * mergedCount(197, 16, { cls: true }); // 16
 * mergedCount(5, 16, { cls: true }); // 2
 * ```
 */
export function mergedCount(
  n: number,
  r: number,
  options: { cls?: boolean; distill?: boolean } = {},
): number {
  assertCount("n", n);
  assertCount("r", r);
  const cls = options.cls ?? true;
  const distill = options.distill ?? false;
  const protectedCount = (cls ? 1 : 0) + (distill ? 1 : 0);
  const destinations = Math.floor(n / 2) - (distill ? 1 : 0);
  if (destinations <= 0) return 0;
  return Math.max(0, Math.min(r, Math.floor((n - protectedCount) / 2)));
}
