/**
 * The shape of a plan, checked before the runtime trusts it: a compiled
 * module edited by hand, truncated, or written by another version must fail
 * at load with the field that is wrong, not later inside a loop with a
 * TypeError. Checks only what load() and run() read.
 */

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const show = (v: unknown): string => (v === undefined ? "missing" : `${JSON.stringify(v)?.slice(0, 40) ?? String(v)}`);

function tensorProblem(t: unknown, at: string, batchAllowed: boolean, idsAllowed = false): string | undefined {
  if (!isObject(t)) return `${at} is ${show(t)}, not an object`;
  if (typeof t.name !== "string") return `${at}.name is ${show(t.name)}, not a string`;
  if (!Array.isArray(t.shape)) return `${at}.shape is ${show(t.shape)}, not an array`;
  for (const [i, d] of t.shape.entries()) {
    const ok = isCount(d) || (batchAllowed && isObject(d) && isCount(d.batch) && d.batch > 0);
    if (!ok) return `${at}.shape[${i}] is ${show(d)}, not ${batchAllowed ? "a dimension (a count or { batch: k })" : "a count"}`;
  }
  if (idsAllowed && t.dtype === "int32") {
    if (!isCount(t.vocab) || t.vocab === 0) return `${at}.vocab is ${show(t.vocab)}, not the count of token ids`;
    return undefined;
  }
  if (t.dtype !== "float32") return `${at}.dtype is ${show(t.dtype)}, not ${idsAllowed ? '"float32" or "int32"' : '"float32"'}`;
  return undefined;
}

/** The first thing wrong with `plan` as read by the runtime, as `plan.field is …`; undefined when it is usable. */
export function planProblem(plan: unknown): string | undefined {
  if (!isObject(plan)) return `plan is ${show(plan)}, not an object`;
  if (plan.format !== "turbograph.plan/1") return `plan.format is ${show(plan.format)}, not "turbograph.plan/1"`;
  if (typeof plan.model !== "string") return `plan.model is ${show(plan.model)}, not a string`;
  if (typeof plan.batchName !== "string") return `plan.batchName is ${show(plan.batchName)}, not a string`;
  for (const [field, batchAllowed] of [["inputs", true], ["outputs", true], ["params", false]] as const) {
    const list = plan[field];
    if (!Array.isArray(list)) return `plan.${field} is ${show(list)}, not an array`;
    for (const [i, t] of list.entries()) {
      const problem = tensorProblem(t, `plan.${field}[${i}]`, batchAllowed, field === "inputs");
      if (problem !== undefined) return problem;
    }
  }
  const memory = plan.memory;
  if (!isObject(memory) || !Array.isArray(memory.liveBytes)) return `plan.memory.liveBytes is ${show(isObject(memory) ? memory.liveBytes : undefined)}, not an array`;
  for (const [i, e] of memory.liveBytes.entries()) {
    if (!isObject(e) || typeof e.perBatch !== "number" || typeof e.fixed !== "number") return `plan.memory.liveBytes[${i}] is ${show(e)}, not { perBatch, fixed }`;
  }
  return undefined;
}
