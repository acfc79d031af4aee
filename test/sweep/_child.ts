/**
 * One sweep process: runs the sweep's cases from index `start` on (all, or
 * the fast subset), each in a sandbox, and prints one `SWEEP {json}` line
 * when a case starts and one with its outcome when it ends. `run.ts` starts
 * it, times each case, and restarts it after a hang or a crash.
 *
 *   node --import tsx test/sweep/_child.ts <all|fast> <start>
 */

import * as tf from "@tensorflow/tfjs-core";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { main } from "../../compiler/cli.ts";
import { compile } from "../../compiler/compile.ts";
import { CompileError } from "../../compiler/diagnostics.ts";
import { input, linear, model } from "../../compiler/dsl/mod.ts";
import { BackendError, load, LoadError, WeightsError } from "../../runtime/mod.ts";
import { smallWeights, sweepCases, type Ctx, type Seen } from "./_cases.ts";

export type Outcome = "clear error" | "accepted and works" | "hang" | "crash" | "stack trace" | "internal" | "raw library error" | "accepted but broken" | "wrote outside root";

const [which = "all", startText = "0"] = process.argv.slice(2);
const list = sweepCases.map((c, index) => ({ c, index })).filter(({ c }) => which === "all" || c.fast);
const say = (o: object) => process.stdout.write(`SWEEP ${JSON.stringify(o)}\n`);

const sandbox = mkdtempSync(join(tmpdir(), "turbograph-sweep-"));
process.on("exit", () => rmSync(sandbox, { recursive: true, force: true }));
const work = join(sandbox, "d1", "d2", "d3", "work");
mkdirSync(join(work, "in"), { recursive: true });
writeFileSync(join(sandbox, "package.json"), `{ "type": "module" }\n`);
const allowed = ["compiled", "out", "in"].map((d) => join("d1", "d2", "d3", "work", d));
const absolutes = ["/tmp/turbograph-sweep-abs", "/sys/turbograph-sweep"];

/** Every path in the sandbox outside the folders cases may write, and the absolute paths cases aim at. */
function outside(): string[] {
  const inside = readdirSync(sandbox, { recursive: true, encoding: "utf8" }).filter((p) => !allowed.some((a) => p === a || p.startsWith(`${a}/`)));
  return [...inside, ...absolutes.filter((p) => existsSync(p))].sort();
}

const small = model("small", () => ({ y: linear(input("x", ["B", 4]), 3, { name: "fc" }) }));
const compiled = compile(small);
const smallDir = join(sandbox, "small");
mkdirSync(smallDir);
writeFileSync(join(smallDir, "model.mjs"), compiled.module.js);
const weights = smallWeights(compiled.plan.params.map((p) => ({ name: p.name, shape: [...p.shape] as number[] })));

const ctx: Ctx = {
  work,
  file(name, text) {
    const path = join(work, "in", name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
    return join("in", name);
  },
  async cli(args, outDir) {
    let err = "";
    let out = "";
    const exit = await main(args, { out: (t) => (out += t), err: (t) => (err += t) });
    const wrote = /wrote (.+)\/model\.mjs/.exec(out)?.[1];
    return { kind: "cli", exit, err, outDir: outDir ?? wrote };
  },
  small: { dir: smallDir, weights },
};

const hasStack = (text: string) => /\n\s+at \S/.test(text);
const ours = (e: unknown) => e instanceof CompileError || e instanceof LoadError || e instanceof WeightsError || e instanceof BackendError;

/** Loads a folder turbo-compile wrote with random weights and runs it at batch 2. */
async function works(dir: string): Promise<string | undefined> {
  if (!existsSync(join(work, dir, "model.mjs"))) return undefined;
  try {
    const m = await load(join(work, dir), { weights: { random: 1 }, backend: "cpu" });
    const inputs = Object.fromEntries(m.info.plan.inputs.map((i) => [i.name, tf.ones(i.shape.map((d) => (typeof d === "number" ? d : 2 * d.batch)))]));
    const out = m.run(inputs);
    for (const t of [...Object.values(out), ...Object.values(inputs)]) t.dispose();
    m.dispose();
    return undefined;
  } catch (e) {
    return `compiled, but load/run failed: ${(e as Error).message}`;
  }
}

async function classify(seen: Seen): Promise<[Outcome, string]> {
  if (seen.kind === "cli") {
    const first = seen.err.split("\n")[0] ?? "";
    if (seen.exit === 0) {
      const broken = seen.outDir === undefined ? undefined : await works(seen.outDir);
      return broken === undefined ? ["accepted and works", seen.outDir ?? ""] : ["accepted but broken", broken];
    }
    if (hasStack(seen.err)) return ["stack trace", first];
    if (seen.exit === 1 || /internal:/.test(seen.err)) return ["internal", first];
    if (seen.exit === 2 && /error: /.test(first)) return ["clear error", first];
    return ["crash", `exit ${seen.exit}: ${first}`];
  }
  if (seen.kind === "ok") return ["accepted and works", seen.note ?? ""];
  const e = seen.error;
  const message = e instanceof Error ? e.message : String(e);
  const first = message.split("\n")[0]!.slice(0, 300);
  if (/^internal:/.test(message)) return ["internal", first];
  if (!ours(e)) return ["raw library error", `${e instanceof Error ? e.name : typeof e}: ${first}`];
  if (hasStack(message)) return ["stack trace", first];
  return ["clear error", first];
}

process.chdir(work);
for (const { c, index } of list.filter(({ index }) => index >= Number(startText))) {
  say({ start: index, id: c.id });
  const before = outside();
  let outcome: Outcome;
  let detail: string;
  try {
    [outcome, detail] = await classify(await c.run(ctx));
  } catch (e) {
    [outcome, detail] = ["raw library error", `the case itself threw: ${(e as Error).stack}`];
  }
  const after = outside();
  const escaped = after.filter((p) => !before.includes(p));
  if (escaped.length > 0) {
    [outcome, detail] = ["wrote outside root", escaped.slice(0, 3).join(", ")];
    for (const p of escaped) if (p.startsWith("/")) rmSync(p, { recursive: true, force: true });
  }
  say({ done: index, id: c.id, outcome, detail });
}
say({ finished: true });
process.exit(0);
