/**
 * The plan report `turbo-compile` prints and writes: per block tokens and
 * FLOPs, totals, and the predicted memory for one batch size; with
 * `explain`, the compiler's notes (plan.explain) on attention it raised or
 * left as written, else a hint when some attention was left as written.
 */

import { linearAt, predictedPeakBytes, type Plan } from "./contract/plan.ts";

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MiB`;
const gflops = (f: number) => (f / 1e9).toFixed(3);

export interface ReportOptions {
  /** List every note of plan.explain (turbo-compile --explain). */
  explain?: boolean;
}

function explainLines(plan: Plan, o: ReportOptions): string[] {
  const notes = plan.explain ?? [];
  if (o.explain === true) return notes.length === 0 ? ["explain: no attention written from primitives found"] : ["explain:", ...notes.map((n) => `  ${n}`)];
  const missed = notes.filter((n) => n.includes(": no merge — ")).length;
  return missed === 0 ? [] : [`${missed} attention-like block${missed === 1 ? " was" : "s were"} left as written; --explain says why`];
}

export function formatReport(plan: Plan, batch: number, o: ReportOptions = {}): string {
  const rows = plan.blocks.map((b) => [b.name, b.tokensIn ?? "-", b.merged, b.tokensOut ?? "-", gflops(linearAt(b.flops, 1))]);
  const header = ["block", "tokens in", "r", "tokens out", "GFLOP/sample"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (r: readonly (string | number)[]) => r.map((c, i) => String(c).padStart(widths[i]!)).join("  ");
  return [
    `model ${plan.model}: ${plan.kernels} kernel steps, ${plan.params.length} parameters (${mb(plan.memory.weightBytes)})`,
    "",
    line(header),
    ...rows.map(line),
    "",
    `total: ${gflops(linearAt(plan.flops, 1))} GFLOP per sample, ${gflops(linearAt(plan.flops, batch))} GFLOP at batch ${batch}`,
    ...(plan.turbo === null
      ? []
      : [`Turbo: ${JSON.stringify(plan.turbo.options)}; without merging ${gflops(linearAt(plan.turbo.baselineFlops, 1))} GFLOP per sample, FLOPs ratio ${plan.turbo.flopsRatio.toFixed(3)}×`]),
    `predicted peak activation memory at batch ${batch}: ${mb(predictedPeakBytes(plan, batch))} (weights ${mb(plan.memory.weightBytes)} not included)`,
    ...explainLines(plan, o),
    "",
  ].join("\n");
}
