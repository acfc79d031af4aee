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
import { formatReport } from "./report.ts";

const usage = `Usage: turbo-compile <spec.ts> [options]

Traces the model exported by a spec file, plans it statically and writes a
TensorFlow.js program that runtime's load() can run.

Options:
  --model NAME     the spec's named export to compile (default: the default export)
  --batch N        batch size for the plan report's memory figures (default 1)
  --out DIR        output directory (default: compiled/<model name>)
  --emit LIST      comma-separated outputs: ts (model.ts + model.js), ir (*.tir), plan (plan.json, plan.txt)
                   (default: ts,ir,plan)
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
  return { spec: parsed.positionals[0]!, model: v.model, batch, out: v.out, emit };
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
  if (o.emit.has("ts")) files.push(["model.ts", c.module.ts], ["model.js", c.module.js]);
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
    const compiled = compileGraph(trace(spec), { source: o.spec });
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
