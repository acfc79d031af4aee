/**
 * Tensor types of the IR. Every dimension is a static number except the
 * model's batch dimension, which is symbolic. A symbolic dimension may carry a
 * static factor after canonicalisation (`B*197` for activations flattened to
 * `[B·N, D]`), so a `Dim` is either a number or `{ batch: k }` meaning k·B.
 */

export type Dim = number | { readonly batch: number };
export type Shape = readonly Dim[];
/** f32 for every value but token ids, which are i32 and only `gather` reads. */
export type DType = "f32" | "i32";

export interface TensorType {
  readonly dtype: DType;
  readonly shape: Shape;
}

export const batchDim = (k = 1): Dim => ({ batch: k });

export const isBatch = (d: Dim): d is { readonly batch: number } => typeof d !== "number";

export function dimEq(a: Dim, b: Dim): boolean {
  if (typeof a === "number" || typeof b === "number") return a === b;
  return a.batch === b.batch;
}

export function shapeEq(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => dimEq(d, b[i]!));
}

/** Product of dims; the result is symbolic when any factor is. Returns undefined for B·B. */
export function dimProduct(dims: Shape): Dim | undefined {
  let k = 1;
  let symbolic = false;
  for (const d of dims) {
    if (typeof d === "number") k *= d;
    else {
      if (symbolic) return undefined;
      symbolic = true;
      k *= d.batch;
    }
  }
  return symbolic ? { batch: k } : k;
}

/** Number of elements as k·B + c (exactly one of the two is non-zero). */
export function elementCount(shape: Shape): { perBatch: number; fixed: number } {
  const p = dimProduct(shape);
  if (p === undefined) throw new Error("internal: shape has more than one batch dimension");
  return typeof p === "number" ? { perBatch: 0, fixed: p } : { perBatch: p.batch, fixed: 0 };
}

export function dimValue(d: Dim, batch: number): number {
  return typeof d === "number" ? d : d.batch * batch;
}

export function formatDim(d: Dim, batchName = "B"): string {
  if (typeof d === "number") return String(d);
  return d.batch === 1 ? batchName : `${batchName}*${d.batch}`;
}

export function formatShape(shape: Shape, batchName = "B"): string {
  return `[${shape.map((d) => formatDim(d, batchName)).join(",")}]`;
}

export function formatType(t: TensorType, batchName = "B"): string {
  return `${t.dtype}${formatShape(t.shape, batchName)}`;
}

export const bytesPerElement: Record<DType, number> = { f32: 4, i32: 4 };
