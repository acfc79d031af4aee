/**
 * Primitive builders: one IR op each, shapes checked at trace time. Batch
 * dims in user-given shapes are written with the model's batch name ("B").
 */

import { CompileError } from "../diagnostics.ts";
import { dimProduct, formatShape, type Dim } from "../ir/types.ts";
import { rearrange } from "./einops.ts";
import { currentTrace, emit, here, param as declare, Tensor } from "./trace.ts";

export type Operand = Tensor | string;

export const add = (a: Tensor, b: Operand): Tensor => emit("add", [a, b], {});
export const mul = (a: Tensor, b: Operand): Tensor => emit("mul", [a, b], {});
export const scale = (x: Tensor, value: number): Tensor => emit("scale", [x], { value });
export const gelu = (x: Tensor): Tensor => emit("gelu", [x], {});
export const log = (x: Tensor): Tensor => emit("log", [x], {});
export const sigmoid = (x: Tensor): Tensor => emit("sigmoid", [x], {});
/** SiLU (swish), x · sigmoid(x): the activation of diffusion transformers. */
export const silu = (x: Tensor): Tensor => emit("mul", [x, emit("sigmoid", [x], {})], {});
export const exp = (x: Tensor): Tensor => emit("exp", [x], {});
export const sin = (x: Tensor): Tensor => emit("sin", [x], {});
export const cos = (x: Tensor): Tensor => emit("cos", [x], {});
export const softmax = (x: Tensor): Tensor => emit("softmax", [x], {});
export const matmul = (a: Tensor, b: Operand): Tensor => emit("matmul", [a, b], {});
/** Rows of the parameter `table` [V, D] picked by the i32 token ids `ids` [...] → [..., D]. */
export const gather = (table: string, ids: Tensor): Tensor => emit("gather", [ids, table], {});
export const transpose = (x: Operand, perm: readonly number[]): Tensor => emit("transpose", [x], { perm: [...perm] });
export const concat = (xs: readonly Operand[], axis: number): Tensor => emit("concat", xs, { axis });
export const mean = (x: Tensor, axes: readonly number[], keepDims = false): Tensor =>
  emit("mean", [x], { axes: [...axes], keepDims });

export interface SliceOptions {
  axis: number;
  start: number;
  end: number;
}
export const slice = (x: Tensor, o: SliceOptions): Tensor => emit("slice", [x], { axis: o.axis, start: o.start, end: o.end });

/** Converts a user shape (numbers, the batch name, at most one -1) to IR dims. */
function userShape(builder: string, shape: readonly (number | string)[], total?: Dim): Dim[] {
  const t = currentTrace(builder);
  const batch = t.builder.batch;
  const dims: (Dim | -1)[] = shape.map((d) => {
    if (typeof d === "string") {
      if (d !== batch) throw new CompileError(`${builder}: dim "${d}" is not the model's batch dimension "${batch}"`, here());
      return { batch: 1 };
    }
    if (d === -1) return -1;
    if (!Number.isInteger(d) || d <= 0) throw new CompileError(`${builder}: dim ${d} must be a positive integer or -1`, here());
    return d;
  });
  const holes = dims.filter((d) => d === -1).length;
  if (holes === 0) return dims as Dim[];
  if (holes > 1 || total === undefined) throw new CompileError(`${builder}: at most one dim may be -1`, here());
  const known = dimProduct(dims.filter((d): d is Dim => d !== -1));
  let fill: Dim | undefined;
  if (known !== undefined) {
    if (typeof total === "number" && typeof known === "number" && total % known === 0) fill = total / known;
    if (typeof total !== "number" && typeof known === "number" && total.batch % known === 0) fill = { batch: total.batch / known };
    if (typeof total !== "number" && typeof known !== "number" && total.batch % known.batch === 0) fill = total.batch / known.batch;
  }
  if (fill === undefined) throw new CompileError(`${builder}: cannot infer the -1 in ${JSON.stringify(shape)}`, here());
  return dims.map((d) => (d === -1 ? fill! : d));
}

/** The shape of a tensor or of a declared parameter. */
function shapeOf(builder: string, x: Operand): readonly Dim[] {
  if (x instanceof Tensor) return x.shape;
  const p = typeof x === "string" ? currentTrace(builder).builder.params.get(x) : undefined;
  if (p === undefined) throw new CompileError(`${builder}: ${typeof x === "string" ? `unknown parameter "${x}"; declare it with param(name, shape)` : "the input is not a tensor or a parameter"}`, here());
  return p.shape;
}

export function reshape(x: Operand, shape: readonly (number | string)[]): Tensor {
  const total = dimProduct(shapeOf("reshape", x));
  return emit("reshape", [x], { shape: userShape("reshape", shape, total) });
}

export function broadcast(x: Operand, shape: readonly (number | string)[]): Tensor {
  return emit("broadcast", [x], { shape: userShape("broadcast", shape) });
}

/** A constant tensor: every element `value` (zeros to pad an additive mask, say). */
export function full(shape: readonly (number | string)[], value: number): Tensor {
  if (typeof value !== "number" || !Number.isFinite(value)) throw new CompileError(`full: value ${String(value)} must be a finite number`, here());
  return emit("fill", [], { shape: userShape("full", shape), value });
}

const paramName = /^[A-Za-z0-9_][A-Za-z0-9_.\-]*$/;

/**
 * A learned parameter of the model (a LayerScale γ, a class or register
 * token, a position embedding): its name is the weight's name in the weights
 * file, its shape static. The result is an operand every primitive takes
 * (`add(x, pos)`, `mul(h, gamma)`, `reshape(reg, [1, 4, D])`). Declaring the
 * same name again shares the weight, as the builders do; with another shape
 * it is an error.
 */
export function param(name: string, shape: readonly number[]): string {
  if (typeof name !== "string" || !paramName.test(name)) {
    throw new CompileError(`param: name ${JSON.stringify(name)} must be letters, digits, "_", "." or "-" (like "layer.0.gamma")`, here());
  }
  if (!Array.isArray(shape) || shape.length === 0 || shape.some((d) => !Number.isInteger(d) || d <= 0)) {
    throw new CompileError(`param "${name}": shape ${JSON.stringify(shape)} must be a non-empty list of positive integers (parameters have no batch dimension)`, here());
  }
  return declare(name, shape, "param");
}

/** The class token: position 0 of the token axis, [B, N, D] → [B, D]. */
export function clsToken(x: Tensor): Tensor {
  if (x.rank !== 3) throw new CompileError(`clsToken: input must be [batch, tokens, width] but has shape ${formatShape(x.shape)}`, here());
  return rearrange(slice(x, { axis: 1, start: 0, end: 1 }), "b 1 d -> b d");
}
