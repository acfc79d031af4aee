#!/usr/bin/env node
/**
 * turbo-compile: arguments → compile → files. Thin on purpose: everything
 * it does is available from `compile()` in mod.ts.
 *
 * Exit codes: 0 ok, 2 user error (bad spec, bad option), 1 internal error.
 */

import { mkdirSync, realpathSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { compileGraph, type Compiled } from "./compile.ts";
import { CompileError, formatError } from "./diagnostics.ts";
import { isModelSpec, trace, type ModelSpec } from "./dsl/trace.ts";
import type { TurboOptions } from "./passes/insert_turbo.ts";
import { formatReport } from "./report.ts";

const usage = `Usage: turbo-compile <spec.ts> [options]

Traces the model exported by a spec file, plans it statically and writes a
TensorFlow.js program that runtime's load() can run.

Options:
  --model NAME     the spec's named export to compile (default: the default export)
  --batch N        batch size for the plan report's memory figures (default 1)
  --out DIR        output directory (default: compiled/<model name>)
  --emit LIST      comma-separated outputs: ts (model.ts + model.mjs), ir (*.tir), plan (plan.json, plan.txt)
                   (default: ts,ir,plan)
  --turbo SETTINGS insert Turbo merges (spec/turbo.md), e.g. r=16,threshold=40,alpha=5,fusion=S1
                   r=N (every block) | r=N:N:…:N (one per block) | r=N,inflect=X (ToMe's schedule)
                   threshold=N  alpha=X  scale=X  fusion=S1|S2|S3|S4  beta=X  gamma=N
                   metric=keys|queries  skip=I:J  cls=true|false  distill=true|false
                   sizes=true (outputs size.<block>)  sources=true (output sources)
  -h, --help       show this help
`;

const emitKinds = ["ts", "ir", "plan"] as const;
type EmitKind = (typeof emitKinds)[number];

export interface CliOptions {
  spec: string;
  model: string | undefined;
  batch: number;
  out: string | undefined;
  emit: Set<EmitKind>;
  turbo: TurboOptions | undefined;
}

/** Parses `--turbo r=16,threshold=40,…` into pass options; every mistake names the key. */
export function parseTurbo(text: string): TurboOptions {
  const entries = new Map<string, string>();
  for (const part of text.split(",")) {
    const m = /^\s*([a-z]+)\s*=\s*(\S+)\s*$/.exec(part);
    if (m === null) throw new CompileError(`--turbo: "${part}" is not key=value`);
    if (entries.has(m[1]!)) throw new CompileError(`--turbo: ${m[1]} is given twice`);
    entries.set(m[1]!, m[2]!);
  }
  const num = (key: string, integer = false): number | undefined => {
    const v = entries.get(key);
    if (v === undefined) return undefined;
    const x = Number(v);
    if (!Number.isFinite(x) || (integer && !Number.isInteger(x))) throw new CompileError(`--turbo ${key}="${v}" must be ${integer ? "an integer" : "a number"}`);
    return x;
  };
  const bool = (key: string): boolean | undefined => {
    const v = entries.get(key);
    if (v === undefined) return undefined;
    if (v !== "true" && v !== "false") throw new CompileError(`--turbo ${key}="${v}" must be true or false`);
    return v === "true";
  };
  const list = (key: string): number[] | undefined => entries.get(key)?.split(":").map((x) => {
    const n = Number(x);
    if (x.trim() === "" || !Number.isInteger(n)) throw new CompileError(`--turbo ${key}: "${x}" is not an integer`);
    return n;
  });
  const known = ["r", "inflect", "threshold", "alpha", "scale", "fusion", "beta", "gamma", "metric", "skip", "cls", "distill", "sizes", "sources"];
  for (const key of entries.keys()) if (!known.includes(key)) throw new CompileError(`--turbo: unknown setting "${key}"; known: ${known.join(", ")}`);
  const rList = list("r");
  if (rList === undefined) throw new CompileError("--turbo needs r=N (tokens merged per block)");
  const inflect = num("inflect");
  let r: TurboOptions["r"] = rList.length === 1 ? rList[0]! : rList;
  if (inflect !== undefined) {
    if (rList.length !== 1) throw new CompileError("--turbo inflect needs a single r");
    r = { r: rList[0]!, inflect };
  }
  const fusion = entries.get("fusion");
  const metric = entries.get("metric");
  const o: TurboOptions = { r };
  const set = <K extends keyof TurboOptions>(k: K, v: TurboOptions[K] | undefined) => {
    if (v !== undefined) o[k] = v;
  };
  set("threshold", num("threshold", true));
  set("alpha", num("alpha"));
  set("scale", num("scale"));
  set("fusion", fusion as TurboOptions["fusion"]);
  set("beta", num("beta"));
  set("gamma", num("gamma", true));
  set("metric", metric as TurboOptions["metric"]);
  set("skip", list("skip"));
  set("cls", bool("cls"));
  set("distill", bool("distill"));
  set("reportSizes", bool("sizes"));
  set("trackSources", bool("sources"));
  return o;
}

/** Parses argv; bad options are CompileErrors (exit 2). */
export function parseCli(argv: readonly string[]): CliOptions | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        model: { type: "string" },
        batch: { type: "string" },
        out: { type: "string" },
        emit: { type: "string" },
        turbo: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    throw new CompileError(`${(e as Error).message.replace(/\. To specify.*$/s, "")}; see --help`);
  }
  const v = parsed.values;
  if (v.help) return "help";
  if (parsed.positionals.length !== 1) {
    throw new CompileError(parsed.positionals.length === 0 ? "no spec file given; see --help" : `expected one spec file but got ${parsed.positionals.length}: ${parsed.positionals.join(" ")}`);
  }
  const batch = v.batch === undefined ? 1 : Number(v.batch);
  if (!Number.isInteger(batch) || batch <= 0) throw new CompileError(`--batch "${v.batch}" must be a positive integer`);
  const emit = new Set<EmitKind>();
  for (const kind of (v.emit ?? emitKinds.join(",")).split(",").map((s) => s.trim())) {
    if (!(emitKinds as readonly string[]).includes(kind)) throw new CompileError(`--emit "${kind}" is not one of ${emitKinds.join(", ")}`);
    emit.add(kind as EmitKind);
  }
  const turbo = v.turbo === undefined ? undefined : parseTurbo(v.turbo);
  return { spec: parsed.positionals[0]!, model: v.model, batch, out: v.out, emit, turbo };
}

/** Imports a spec file (TypeScript through tsx) and picks the model export. */
export async function loadSpec(path: string, exportName: string | undefined): Promise<ModelSpec> {
  const abs = resolve(path);
  let mod: Record<string, unknown>;
  try {
    // Register tsx's loader globally (a no-op when already running under tsx)
    // so the spec and this compiler share one copy of each module.
    const { register } = await import("tsx/esm/api");
    register();
    mod = (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof CompileError) throw e;
    const msg = (e as Error).message ?? String(e);
    if (/Cannot find module|ERR_MODULE_NOT_FOUND|ENOENT/.test(msg) && msg.includes(abs)) throw new CompileError(`cannot read spec file "${path}"`);
    throw new CompileError(`spec file "${path}" failed to load: ${msg.split("\n")[0]}`, { file: abs, line: 1, col: 1 });
  }
  const name = exportName ?? "default";
  const spec = mod[name];
  if (!isModelSpec(spec)) {
    const models = Object.entries(mod).filter(([, v]) => isModelSpec(v)).map(([k]) => k);
    throw new CompileError(
      `spec file "${path}" has no model export "${name}"${models.length > 0 ? `; model exports: ${models.join(", ")}` : "; export a model(...) value"}`,
      { file: abs, line: 1, col: 1 },
    );
  }
  return spec;
}

function write(dir: string, c: Compiled, o: CliOptions): string[] {
  mkdirSync(dir, { recursive: true });
  const files: [string, string][] = [];
  if (o.emit.has("ts")) files.push(["model.ts", c.module.ts], ["model.mjs", c.module.js]);
  if (o.emit.has("ir")) files.push(["model.traced.tir", c.ir.traced], ["model.tir", c.ir.final]);
  if (o.emit.has("plan")) files.push(["plan.json", JSON.stringify(c.plan, null, 2) + "\n"], ["plan.txt", formatReport(c.plan, o.batch)]);
  for (const [name, text] of files) writeFileSync(join(dir, name), text);
  return files.map(([name]) => join(dir, name));
}

export async function main(argv: readonly string[]): Promise<number> {
  try {
    const o = parseCli(argv);
    if (o === "help") {
      process.stdout.write(usage);
      return 0;
    }
    const spec = await loadSpec(o.spec, o.model);
    const compiled = compileGraph(trace(spec), o.turbo === undefined ? { source: o.spec } : { source: o.spec, turbo: o.turbo });
    const dir = o.out ?? join("compiled", spec.name);
    const files = write(dir, compiled, o);
    process.stdout.write(formatReport(compiled.plan, o.batch));
    process.stdout.write(`wrote ${files.join(", ")}\n`);
    return 0;
  } catch (e) {
    const { text, exitCode } = formatError(e);
    process.stderr.write(text.startsWith("error:") || text.startsWith("internal:") ? `turbo-compile: ${text}\n` : `${text}\n`);
    if (exitCode === 1 && process.env.TURBOGRAPH_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return exitCode;
  }
}

// Run when executed (also through npm's bin symlink), not when imported by tests.
const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(resolve(process.argv[1]))).href;
if (invokedDirectly) process.exitCode = await main(process.argv.slice(2));
