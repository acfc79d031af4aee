/**
 * Attribute kinds per op, for checking attributes that come from outside the
 * compiler (the IR text parser). The printer and parser are generic in
 * attribute values; this table only says which keys an op takes and what
 * kind of value each must be. An op without an entry takes any attributes
 * its shape rule accepts, so a new op parses before it has an entry here.
 * A key whose kind is `{ optional: kind }` may be left out.
 */

import type { Op, OpAttrs } from "./ops.ts";
import type { Dim } from "./types.ts";

export type AttrKind = "int" | "number" | "bool" | "string" | "ints" | "shape" | { readonly oneOf: readonly string[] } | { readonly optional: AttrKind };

type Schema<K extends Op> = { readonly [A in keyof OpAttrs[K]]-?: AttrKind };

const reduceAttrs = { axes: "ints", keepDims: "bool" } as const;

export const attrSchemas: { readonly [K in Op]?: Schema<K> } = {
  input: { name: "string" },
  add: {},
  mul: {},
  scale: { value: "number" },
  gelu: {},
  log: {},
  sigmoid: {},
  exp: {},
  sin: {},
  cos: {},
  layer_norm: { eps: "number" },
  softmax: {},
  linear: {},
  matmul: {},
  attention: { heads: "int", bias: { optional: "bool" } },
  cls_attention: { heads: "int", query: { optional: "int" }, bias: { optional: "bool" } },
  turbo_merge: {
    r: "int",
    alpha: "number",
    scale: "number",
    fusion: { oneOf: ["S1", "S2", "S3", "S4"] },
    beta: "number",
    gamma: "number",
    layer: "int",
    cls: "bool",
    distill: "bool",
    protect: "int",
    semantic: "bool",
    track: "bool",
  },
  merged_size: {},
  merged_sources: {},
  window_merge: { r: "int", grid: "ints", window: "ints", seed: "int", alpha: "number", scale: "number", semantic: "bool" },
  window_restore: { tokens: "int" },
  fill: { shape: "shape", value: "number" },
  eye: { shape: "shape" },
  reshape: { shape: "shape" },
  transpose: { perm: "ints" },
  concat: { axis: "int" },
  slice: { axis: "int", start: "int", end: "int" },
  broadcast: { shape: "shape" },
  mean: reduceAttrs,
  sum: reduceAttrs,
  max: reduceAttrs,
};

const isDim = (v: unknown): v is Dim =>
  (typeof v === "number" && Number.isInteger(v)) ||
  (typeof v === "object" && v !== null && Number.isInteger((v as { batch?: unknown }).batch));

function fits(kind: AttrKind, v: unknown): boolean {
  if (typeof kind === "object" && "optional" in kind) return fits(kind.optional, v);
  switch (kind) {
    case "int":
      return Number.isInteger(v);
    case "number":
      return typeof v === "number" && Number.isFinite(v);
    case "bool":
      return typeof v === "boolean";
    case "string":
      return typeof v === "string";
    case "ints":
      return Array.isArray(v) && v.every((x) => Number.isInteger(x));
    case "shape":
      return Array.isArray(v) && v.every(isDim);
    default:
      return typeof v === "string" && "oneOf" in kind && kind.oneOf.includes(v);
  }
}

export function describeKind(kind: AttrKind): string {
  if (typeof kind === "object" && "optional" in kind) return describeKind(kind.optional);
  if (typeof kind === "object") return `one of ${kind.oneOf.map((s) => JSON.stringify(s)).join(", ")}`;
  return { int: "an integer", number: "a finite number", bool: "true or false", string: "a string", ints: "a list of integers", shape: "a shape" }[kind];
}

/** A problem with one attribute (`key` undefined: with the set as a whole). */
export interface AttrProblem {
  readonly key: string | undefined;
  readonly message: string;
}

/** Checks `attrs` against the op's schema; undefined when they fit or the op has no schema. */
export function checkAttrs(op: Op, attrs: Readonly<Record<string, unknown>>): AttrProblem | undefined {
  const schema = attrSchemas[op] as Readonly<Record<string, AttrKind>> | undefined;
  if (schema === undefined) return undefined;
  const expected = Object.keys(schema);
  for (const [key, value] of Object.entries(attrs)) {
    const kind = schema[key];
    if (kind === undefined) {
      const takes = expected.length === 0 ? "it takes no attributes" : `its attributes are ${expected.join(", ")}`;
      return { key, message: `${op}: unknown attribute "${key}"; ${takes}` };
    }
    if (!fits(kind, value)) return { key, message: `${op}: attribute ${key} must be ${describeKind(kind)}` };
  }
  const optional = (k: string) => typeof schema[k] === "object" && "optional" in (schema[k] as object);
  const missing = expected.filter((k) => !optional(k) && !(k in attrs));
  if (missing.length > 0) return { key: undefined, message: `${op}: missing attribute${missing.length > 1 ? "s" : ""} ${missing.join(", ")}` };
  return undefined;
}
