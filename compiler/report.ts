/**
 * The plan report `turbo-compile` prints and writes: per block tokens and
 * FLOPs, totals, and the predicted memory for one batch size.
 */

import { linearAt, predictedPeakBytes, type Plan } from "./contract/plan.ts";

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MiB`;
const gflops = (f: number) => (f / 1e9).toFixed(3);

export function formatReport(plan: Plan, batch: number): string {
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
    "",
  ].join("\n");
}
