/**
 * The IR text form, one SSA line per node:
 *
 *   graph "vit-tiny"(B) {
 *     param @layer.0.attn.q.weight: f32[64,64]
 *     %0: f32[B,3,32,32] = input[name="pixels"]
 *     %7: f32[B,17,64] = linear %6, @layer.0.attn.q.weight, @layer.0.attn.q.bias   # layer.0
 *     return logits=%40
 *   }
 *
 * Attributes print as `key=value` with JSON-like values; shapes inside
 * attributes print with the batch name (`[B*17,64]`).
 */

import { CompileError, type SourceLoc } from "../diagnostics.ts";
import type { AnyNode, Graph, Operand } from "./graph.ts";
import { formatDim, formatShape, formatType, type Dim } from "./types.ts";

/** `%3`, `@layer.0.q.weight`, or `@"name with spaces"` for names the parser could not read bare. */
export function formatOperand(o: Operand): string {
  if (typeof o === "number") return `%${o}`;
  return /^[A-Za-z0-9_.-]+$/.test(o) ? `@${o}` : `@${JSON.stringify(o)}`;
}

/** Attribute values: numbers, booleans, JSON strings, lists of values; batch dims print as `B`, `B*17`. */
function formatAttr(value: unknown, batch: string): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return `[${value.map((v) => formatAttr(v, batch)).join(",")}]`;
  if (typeof value === "object" && value !== null && Number.isInteger((value as { batch?: unknown }).batch)) return formatDim(value as Dim, batch);
  throw new Error(`internal: cannot print attribute value ${JSON.stringify(value)}`);
}

const formatName = (name: string): string => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : JSON.stringify(name));

export function formatAttrs(attrs: object, batch: string): string {
  const entries = Object.entries(attrs);
  if (entries.length === 0) return "";
  return `[${entries.map(([k, v]) => `${k}=${formatAttr(v, batch)}`).join(", ")}]`;
}

export function formatNode(g: Graph, n: AnyNode): string {
  const operands = n.inputs.map(formatOperand).join(", ");
  const scope = g.meta.get(n.id)?.scope;
  const text = `%${n.id}: ${formatType(n.type, g.batch)} = ${n.op}${formatAttrs(n.attrs, g.batch)}${operands ? ` ${operands}` : ""}`;
  return scope === undefined ? text : `${text}   # ${scope}`;
}

/** Prints a whole graph in the text form. */
export function printGraph(g: Graph): string {
  const lines = [`graph ${JSON.stringify(g.name)}(${g.batch}) {`];
  for (const [name, p] of g.params) lines.push(`  param ${formatOperand(name)}: ${p.dtype}${formatShape(p.shape)}`);
  for (const n of g.nodes) lines.push(`  ${formatNode(g, n)}`);
  lines.push(`  return ${g.outputs.map((o) => `${formatName(o.name)}=%${o.id}`).join(", ")}`);
  lines.push("}");
  return lines.join("\n") + "\n";
}

/** A few printed lines around node `id`, for IR-level diagnostics. */
export function irContext(g: Graph, id: number, radius = 2): string[] {
  const lo = Math.max(0, id - radius);
  const hi = Math.min(g.nodes.length - 1, id + radius);
  const out: string[] = [];
  for (let i = lo; i <= hi; i++) out.push(`${i === id ? "  >" : "   "} ${formatNode(g, g.nodes[i]!)}`);
  return out;
}

/** A user error about node `id`: at `loc` (default: the node's source location), with the IR lines around the node. */
export function nodeError(g: Graph, id: number, message: string, loc: SourceLoc | undefined = g.meta.get(id)?.loc): CompileError {
  return new CompileError(message, loc, ["  in the IR:", ...irContext(g, id)]);
}
