/**
 * The test command: type-checks the project (tsc --noEmit, and `deno check`
 * for the scripts that run only under Deno), then runs every
 * `test/**\/*.test.ts` file as its own uvu process (each file gets a fresh
 * tfjs with its own backend), two at a time, and ends with the line
 * `N passed, N failed` that CI reads. Exits non-zero on any failure.
 *
 *   npm test                 everything
 *   npm test -- weights      only files whose path contains "weights" (tsc still runs)
 */

import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const filters = process.argv.slice(2);

function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name !== "fixtures" && name !== "golden") out.push(...findTests(path));
    } else if (name.endsWith(".test.ts")) out.push(path);
  }
  return out;
}

interface Result {
  name: string;
  passed: number;
  failed: number;
  skipped: number;
  output: string;
  seconds: number;
}

function run(name: string, cmd: string, args: string[]): Promise<Result> {
  const start = performance.now();
  return new Promise((done) => {
    const child = spawn(cmd, args, { cwd: root, env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0" } });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("close", (code) => {
      const seconds = (performance.now() - start) / 1000;
      const clean = output.replace(/\x1b\[[0-9;]*m/g, "");
      const total = /Total:\s+(\d+)/.exec(clean);
      const passed = /Passed:\s+(\d+)/.exec(clean);
      const skipped = /Skipped:\s+(\d+)/.exec(clean);
      if (total === null || passed === null) {
        // A process that crashed or a check that is not an uvu suite: one test, judged by exit code.
        done({ name, passed: code === 0 ? 1 : 0, failed: code === 0 ? 0 : 1, skipped: 0, output: clean, seconds });
        return;
      }
      const t = Number(total[1]);
      const p = Number(passed[1]);
      const s = skipped === null ? 0 : Number(skipped[1]);
      const failed = Math.max(t - p - s, code === 0 ? 0 : 1);
      done({ name, passed: p, failed, skipped: s, output: clean, seconds });
    });
  });
}

const files = findTests(join(root, "test")).filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
/** Scripts that run only under Deno (they use its namespace); tsconfig.json leaves them to `deno check`. */
const denoScripts = ["bench/webgpu.ts", "test/deno/webgpu_check.ts"];
const jobs: (() => Promise<Result>)[] = [
  () => run("tsc --noEmit", process.execPath, [tsc, "--noEmit", "-p", join(root, "tsconfig.json")]),
  () => run("deno check (Deno-only scripts)", join(root, "node_modules", ".bin", "deno"), ["check", ...denoScripts]),
  ...files.map((f) => () => run(relative(root, f), process.execPath, ["--import", "tsx", f])),
];

const results: Result[] = [];
let next = 0;
const workers = Math.max(1, Math.min(2, cpus().length));
await Promise.all(
  Array.from({ length: workers }, async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      const r = await job();
      results.push(r);
      const status = r.failed > 0 ? "FAIL" : "ok  ";
      process.stdout.write(`${status} ${r.name}  (${r.passed} passed, ${r.failed} failed, ${r.seconds.toFixed(1)} s)\n`);
      if (r.failed > 0) process.stdout.write(r.output.split("\n").map((l) => `     | ${l}`).join("\n") + "\n");
    }
  }),
);

const passed = results.reduce((a, r) => a + r.passed, 0);
const failed = results.reduce((a, r) => a + r.failed, 0);
const skipped = results.reduce((a, r) => a + r.skipped, 0);
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}\n`);
process.exitCode = failed > 0 ? 1 : 0;
