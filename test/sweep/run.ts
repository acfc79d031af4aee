/**
 * The reliability sweep (issue 16): runs every case of `_cases.ts` in a
 * child process (`_child.ts`), gives each case a time limit, restarts the
 * child after a hang or a crash, and prints the count of each outcome and
 * every case whose outcome is not "clear error" or "accepted and works".
 *
 *   npx tsx test/sweep/run.ts          all cases
 *   npx tsx test/sweep/run.ts --fast   the subset the test suite runs
 *   npx tsx test/sweep/run.ts --list   every case with its outcome
 *
 * Exits non-zero when any case hangs, crashes, prints a stack trace or an
 * internal error, throws a raw library error, compiles to something that
 * does not run, or writes outside the output root.
 */

import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Outcome } from "./_child.ts";

export interface CaseResult {
  readonly index: number;
  readonly id: string;
  readonly outcome: Outcome;
  readonly detail: string;
}

export const goodOutcomes: readonly Outcome[] = ["clear error", "accepted and works"];

const child = fileURLToPath(new URL("./_child.ts", import.meta.url));
const root = fileURLToPath(new URL("../..", import.meta.url));

/** Runs the sweep (or its fast subset); a case taking over `caseLimitMs` is a hang. */
export async function runSweep(options: { fast: boolean; caseLimitMs?: number } = { fast: false }): Promise<CaseResult[]> {
  const limit = options.caseLimitMs ?? 45_000;
  const results: CaseResult[] = [];
  let start = 0;
  for (;;) {
    const r = await new Promise<{ finished: boolean; current?: { index: number; id: string }; reason?: string }>((done) => {
      const p = spawn(process.execPath, ["--import", "tsx", child, options.fast ? "fast" : "all", String(start)], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
      let current: { index: number; id: string } | undefined;
      let finished = false;
      let timer: NodeJS.Timeout | undefined;
      let buffered = "";
      let stderr = "";
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          p.kill("SIGKILL");
          done({ finished: false, current, reason: `no result within ${limit / 1000} s` });
        }, limit);
      };
      arm();
      p.stderr.on("data", (d) => (stderr = (stderr + d).slice(-2000)));
      p.stdout.on("data", (d) => {
        buffered += d;
        const lines = buffered.split("\n");
        buffered = lines.pop()!;
        for (const line of lines) {
          if (!line.startsWith("SWEEP ")) continue;
          const m = JSON.parse(line.slice(6));
          if (m.start !== undefined) {
            current = { index: m.start, id: m.id };
            arm();
          } else if (m.done !== undefined) {
            results.push({ index: m.done, id: m.id, outcome: m.outcome, detail: m.detail });
            start = m.done + 1;
            current = undefined;
          } else if (m.finished) finished = true;
        }
      });
      p.on("exit", (code, signal) => {
        clearTimeout(timer);
        done({ finished, current, reason: `the process ended (${signal ?? `exit ${code}`}): ${stderr.trim().split("\n").slice(-3).join(" | ")}` });
      });
    });
    if (r.finished) break;
    if (r.current === undefined) break;
    results.push({ index: r.current.index, id: r.current.id, outcome: r.reason?.startsWith("no result") ? "hang" : "crash", detail: r.reason ?? "" });
    start = r.current.index + 1;
  }
  return results;
}

/** Counts by outcome, in a fixed order. */
export function countOutcomes(results: readonly CaseResult[]): Map<Outcome, number> {
  const order: Outcome[] = ["clear error", "accepted and works", "hang", "crash", "stack trace", "internal", "raw library error", "accepted but broken", "wrote outside root"];
  return new Map(order.map((o) => [o, results.filter((r) => r.outcome === o).length]));
}

const invoked = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (invoked) {
  const fast = process.argv.includes("--fast");
  const started = performance.now();
  const results = await runSweep({ fast });
  const bySurface = new Map<string, number>();
  for (const r of results) bySurface.set(r.id.split("/")[0]!, (bySurface.get(r.id.split("/")[0]!) ?? 0) + 1);
  console.log(`${results.length} cases${fast ? " (fast subset)" : ""} in ${((performance.now() - started) / 1000).toFixed(0)} s: ${[...bySurface].map(([s, n]) => `${s} ${n}`).join(", ")}`);
  for (const [o, n] of countOutcomes(results)) console.log(`  ${o.padEnd(20)} ${n}`);
  const shown = process.argv.includes("--list") ? results : results.filter((r) => !goodOutcomes.includes(r.outcome));
  for (const r of shown) console.log(`${r.outcome.padEnd(20)} ${r.id}: ${r.detail}`);
  process.exitCode = results.some((r) => !goodOutcomes.includes(r.outcome)) ? 1 : 0;
}
