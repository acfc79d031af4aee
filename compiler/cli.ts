#!/usr/bin/env node
/**
 * turbo-compile: arguments → compile → files. Thin on purpose: everything
 * it does is available from `compile()` in mod.ts.
 *
 * Input: a spec file (TypeScript, type-checked first) or an IR text file
 * (`.tir`, as written by `--emit ir`). Exit codes: 0 ok, 2 user error (bad
 * spec, bad graph, bad option), 1 internal error.
 */

import { realpathSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { compileGraph, type CompileOptions, type Compiled } from "./compile.ts";
import { emitOnnx } from "./lower/emit_onnx.ts";
import { checkSpec } from "./check_spec.ts";
import { CompileError, formatDiagnostic, formatError, type SourceLoc } from "./diagnostics.ts";
import { traceDefaults, type TraceOptions } from "./dsl/trace.ts";
import { traceSpecFile } from "./trace_spec.ts";
import { readGraph } from "./ir/parse.ts";
import type { GenerationOptions, SubLayer } from "./passes/insert_generation.ts";
import type { TurboOptions } from "./passes/insert_turbo.ts";
import { formatReport } from "./report.ts";
import { defaultOutputDir, statOrMissing, writeOutputs } from "./write_output.ts";

const usage = `Usage: turbo-compile <spec.ts | graph.tir> [options]

Type-checks a spec file, traces the model it exports (or reads a graph in the
IR text form), plans it statically and writes a TensorFlow.js program that
runtime's load() can run.

Options:
  --check          only type-check the spec (or parse and check the .tir) and report errors
  --no-check       skip the type check before tracing
  --model NAME     the spec's named export to compile (default: the default export)
  --batch N        batch size for the plan report's memory figures (default 1)
  --explain        list the compiler's notes: attention raised from primitives or left as written,
                   which tokens are protected, which stream merges, where the semantic value comes from
  --out DIR        output directory (default: compiled/<model name>)
  --emit LIST      comma-separated outputs: ts (model.ts + model.mjs), ir (*.tir), plan (plan.json, plan.txt),
                   onnx (model.onnx, opset 17, for load(dir, { backend: "onnxruntime" })) (default: ts,ir,plan)
  --max-nodes N    the most nodes (and parameters) tracing a spec may record (default ${traceDefaults.maxNodes})
  --trace-timeout S
                   the most seconds importing, and then tracing, a spec may take (default ${traceDefaults.timeoutMs / 1000})
  --turbo SETTINGS insert Turbo merges (spec/turbo.md), e.g. r=16,threshold=40,alpha=5,fusion=S1
                   r=N (every block) | r=N:N:…:N (one per block) | r=N,inflect=X (ToMe's schedule)
                   threshold=N  alpha=X  scale=X  fusion=S1|S2|S3|S4  beta=X  gamma=N
                   metric=keys|queries  skip=I:J  cls=true|false  distill=true|false  protect=N
                   semantic=N (the token whose attention row is the semantic value; default 0)
                   cross=N or N:…:N (dual-stream fusion layers: merge the context after each
                   cross-attention a later one follows, by the querying class token's row)
                   crossalpha=X (α of those merges; default alpha)
                   sizes=true (outputs size.<block>)  sources=true (output sources)
  --generation SETTINGS
                   Turbo's generation mode instead: merge and restore around sub-layers of a
                   diffusion transformer (spec/turbo.md), e.g. ratio=0.5,where=self+cross,alpha=0
                   ratio=X (fraction of tokens merged, default 0.5)  where=self|cross|mlp joined by +
                   (default self)  grid=RxC (default square)  window=RxC (default 2x2)  seed=N
                   alpha=X (default 5; 0 is tomesd's rule)  scale=X  skip=I:J
  -h, --help       show this help
`;

const emitKinds = ["ts", "ir", "plan", "onnx"] as const;
/** What `--emit` writes when it is not given. */
const defaultEmit: readonly EmitKind[] = ["ts", "ir", "plan"];
type EmitKind = (typeof emitKinds)[number];

export interface CliOptions {
  /** The spec file, or a .tir file when `ir` is true. */
  spec: string;
  ir: boolean;
  /** --check: stop after the type check. */
  check: boolean;
  /** --no-check: skip the type check. */
  typeCheck: boolean;
  model: string | undefined;
  batch: number;
  out: string | undefined;
  emit: Set<EmitKind>;
  turbo: TurboOptions | undefined;
  generation: GenerationOptions | undefined;
  /** --max-nodes, --trace-timeout: the trace budget. */
  budget: Required<TraceOptions>;
  /** --explain: the report lists plan.explain. */
  explain: boolean;
}

/** The settings of `option`: the raw values, and readers that name the key in their errors. */
interface Settings {
  entries: Map<string, string>;
  num(key: string, integer?: boolean): number | undefined;
  /** `I:J:…`, integers. */
  list(key: string): number[] | undefined;
}

/** `key=value,key=value` of `option`, each key once and known. */
function settings(text: string, option: string, known: readonly string[]): Settings {
  const entries = new Map<string, string>();
  for (const part of text.split(",")) {
    const m = /^\s*([a-z]+)\s*=\s*(\S+)\s*$/.exec(part);
    if (m === null) throw new CompileError(`${option}: "${part}" is not key=value`);
    if (entries.has(m[1]!)) throw new CompileError(`${option}: ${m[1]} is given twice`);
    entries.set(m[1]!, m[2]!);
  }
  for (const key of entries.keys()) if (!known.includes(key)) throw new CompileError(`${option}: unknown setting "${key}"; known: ${known.join(", ")}`);
  return {
    entries,
    num(key, integer = false) {
      const v = entries.get(key);
      if (v === undefined) return undefined;
      const x = Number(v);
      if (!Number.isFinite(x) || (integer && !Number.isInteger(x))) throw new CompileError(`${option} ${key}="${v}" must be ${integer ? "an integer" : "a number"}`);
      return x;
    },
    list: (key) => entries.get(key)?.split(":").map((x) => {
      const n = Number(x);
      if (x.trim() === "" || !Number.isInteger(n)) throw new CompileError(`${option} ${key}: "${x}" is not an integer`);
      return n;
    }),
  };
}

/** Parses `--turbo r=16,threshold=40,…` into pass options; every mistake names the key. */
export function parseTurbo(text: string): TurboOptions {
  const known = ["r", "inflect", "threshold", "alpha", "scale", "fusion", "beta", "gamma", "metric", "skip", "cls", "distill", "protect", "semantic", "cross", "crossalpha", "sizes", "sources"];
  const { entries, num, list } = settings(text, "--turbo", known);
  const bool = (key: string): boolean | undefined => {
    const v = entries.get(key);
    if (v === undefined) return undefined;
    if (v !== "true" && v !== "false") throw new CompileError(`--turbo ${key}="${v}" must be true or false`);
    return v === "true";
  };
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
  set("protect", num("protect", true));
  set("semanticToken", num("semantic", true));
  const cross = list("cross");
  if (cross !== undefined) o.cross = cross.length === 1 ? cross[0]! : cross;
  set("crossAlpha", num("crossalpha"));
  set("reportSizes", bool("sizes"));
  set("trackSources", bool("sources"));
  return o;
}

/** Parses `--generation ratio=0.5,where=self+cross,…` into pass options; every mistake names the key. */
export function parseGeneration(text: string): GenerationOptions {
  const { entries, num, list } = settings(text, "--generation", ["ratio", "where", "grid", "window", "seed", "alpha", "scale", "skip"]);
  const pair = (key: string): [number, number] | undefined => {
    const v = entries.get(key);
    if (v === undefined) return undefined;
    const m = /^(\d+)x(\d+)$/.exec(v);
    if (m === null) throw new CompileError(`--generation ${key}="${v}" must be ROWSxCOLUMNS, e.g. 2x2`);
    return [Number(m[1]), Number(m[2])];
  };
  const o: GenerationOptions = {};
  const set = <K extends keyof GenerationOptions>(k: K, v: GenerationOptions[K] | undefined) => {
    if (v !== undefined) o[k] = v;
  };
  set("ratio", num("ratio"));
  set("where", entries.get("where")?.split("+") as SubLayer[] | undefined);
  set("grid", pair("grid"));
  set("window", pair("window"));
  set("seed", num("seed", true));
  set("alpha", num("alpha"));
  set("scale", num("scale"));
  set("skip", list("skip"));
  return o;
}

/** The command line with a caret under argument `index` (past the end: after the last one), `within` characters in. */
function commandLine(argv: readonly string[], index: number, within = 0): string[] {
  const shown = argv.map((a) => (a === "" || /[\s"'$\\]/.test(a) ? JSON.stringify(a) : a));
  const line = ["turbo-compile", ...shown].join(" ");
  let col = "turbo-compile ".length;
  for (let i = 0; i < Math.min(index, shown.length); i++) col += shown[i]!.length + 1;
  if (index >= shown.length) col = line.length + 1;
  return [`  ${line}`, `  ${" ".repeat(col + within)}^`];
}

/** Where an option's value is on the command line: the argument's index and the offset of `part` inside it. */
function valuePosition(argv: readonly string[], option: string, part?: string): [number, number] | undefined {
  const at = argv.findIndex((a) => a === option || a.startsWith(`${option}=`));
  if (at < 0) return undefined;
  const [index, start] = argv[at] === option ? [at + 1 < argv.length ? at + 1 : at, 0] : [at, option.length + 1];
  const value = argv[index]!.slice(start);
  const inside = part === undefined ? -1 : value.indexOf(part);
  return [index, start + Math.max(0, inside)];
}

/**
 * Adds the command line with a caret to an error about the arguments: under
 * the option a message names (its value, or the option itself when the
 * option is the problem), else under argument `fallback`.
 */
function locateArg(argv: readonly string[], e: CompileError, fallback: number): CompileError {
  if (e.loc !== undefined || e.context.length > 0) return e;
  const named = [...e.message.matchAll(/--[a-z][a-z-]*/g)].map((m) => m[0]);
  const option = named.find((o) => argv.some((a) => a === o || a.startsWith(`${o}=`)));
  if (option === undefined) return new CompileError(e.message, undefined, commandLine(argv, fallback));
  const at = argv.findIndex((a) => a === option || a.startsWith(`${option}=`));
  if (/argument missing|does not take|Unknown option|cannot be combined/.test(e.message)) {
    return new CompileError(e.message, undefined, commandLine(argv, at));
  }
  const quoted = /"([^"]+)"/.exec(e.message.slice(e.message.indexOf(option)))?.[1];
  const [index, within] = valuePosition(argv, option, quoted)!;
  return new CompileError(e.message, undefined, commandLine(argv, index, within));
}

/** The CLI key of each Turbo pass option, for pointing at it in `--turbo`. */
const turboKeys: Readonly<Record<string, string>> = { reportSizes: "sizes", trackSources: "sources", semanticToken: "semantic" };

/** Errors from compiling that are about the arguments (a Turbo option, a missing export) get the command line and a caret. */
function locateCompileError(argv: readonly string[], o: CliOptions, e: unknown): unknown {
  if (!(e instanceof CompileError)) return e;
  const turbo = /^insertTurbo: option (\w+)/.exec(e.message);
  if (turbo !== null && e.loc === undefined) {
    const pos = valuePosition(argv, "--turbo", `${turboKeys[turbo[1]!] ?? turbo[1]}=`);
    if (pos !== undefined) return new CompileError(e.message, undefined, commandLine(argv, ...pos));
  }
  const generation = /^insertGeneration: option (\w+)/.exec(e.message);
  if (generation !== null && e.loc === undefined) {
    const pos = valuePosition(argv, "--generation", `${generation[1]}=`);
    if (pos !== undefined) return new CompileError(e.message, undefined, commandLine(argv, ...pos));
  }
  if (e.context.length > 0) return e;
  if (/^output folder "/.test(e.message) && o.out !== undefined) {
    const pos = valuePosition(argv, "--out");
    if (pos !== undefined) return new CompileError(e.message, undefined, commandLine(argv, ...pos));
  }
  if (/has no model export/.test(e.message)) {
    const pos = o.model === undefined ? undefined : valuePosition(argv, "--model");
    return new CompileError(e.message, undefined, commandLine(argv, ...(pos ?? [argv.indexOf(o.spec), 0])));
  }
  return e;
}

/** Parses argv; bad options are CompileErrors (exit 2) with the command line and a caret under the culprit. */
export function parseCli(argv: readonly string[]): CliOptions | "help" {
  try {
    return parseArgv(argv);
  } catch (e) {
    if (e instanceof CompileError) throw locateArg(argv, e, argv.length);
    throw e;
  }
}

/** Options that take a value; `--batch -1` is joined into `--batch=-1` so the value reaches the check instead of reading as an option. */
const valueOptions = ["--model", "--batch", "--out", "--emit", "--turbo", "--generation", "--max-nodes", "--trace-timeout"];
function joinNegativeValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const next = argv[i + 1];
    if (valueOptions.includes(argv[i]!) && next !== undefined && /^-\.?\d/.test(next)) out.push(`${argv[i]}=${argv[++i]}`);
    else out.push(argv[i]!);
  }
  return out;
}

function parseArgv(argv: readonly string[]): CliOptions | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(argv),
      allowPositionals: true,
      options: {
        model: { type: "string" },
        batch: { type: "string" },
        out: { type: "string" },
        emit: { type: "string" },
        turbo: { type: "string" },
        generation: { type: "string" },
        "max-nodes": { type: "string" },
        "trace-timeout": { type: "string" },
        check: { type: "boolean" },
        explain: { type: "boolean" },
        "no-check": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    throw new CompileError(`${(e as Error).message.replace(/\. To specify.*$/s, "")}; see --help`);
  }
  const v = parsed.values;
  if (v.help) return "help";
  if (parsed.positionals.length !== 1) {
    if (parsed.positionals.length === 0) throw new CompileError("No spec file given; see --help");
    const second = argv.indexOf(parsed.positionals[1]!);
    throw locateArg(argv, new CompileError(`Expected one spec file but got ${parsed.positionals.length}: ${parsed.positionals.join(" ")}`), second);
  }
  const spec = parsed.positionals[0]!;
  const ir = spec.endsWith(".tir");
  if (v.check && v["no-check"]) throw new CompileError("--no-check cannot be combined with --check");
  if (ir && v.model !== undefined) throw new CompileError(`--model "${v.model}" picks a spec's export, but a .tir file holds one graph`);
  const batch = v.batch === undefined ? 1 : Number(v.batch);
  if (!Number.isInteger(batch) || batch <= 0) throw new CompileError(`--batch "${v.batch}" must be a positive integer`);
  const emit = new Set<EmitKind>();
  for (const kind of (v.emit ?? defaultEmit.join(",")).split(",").map((s) => s.trim())) {
    if (!(emitKinds as readonly string[]).includes(kind)) throw new CompileError(`--emit "${kind}" is not one of ${emitKinds.join(", ")}`);
    emit.add(kind as EmitKind);
  }
  const turbo = v.turbo === undefined ? undefined : parseTurbo(v.turbo);
  const generation = v.generation === undefined ? undefined : parseGeneration(v.generation);
  if (turbo !== undefined && generation !== undefined) throw locateArg(argv, new CompileError("--turbo (understanding mode) and --generation (merge and restore) are two modes of Turbo; give one"), argv.findIndex((a) => a.startsWith("--generation")));
  const maxNodes = v["max-nodes"] === undefined ? traceDefaults.maxNodes : Number(v["max-nodes"]);
  if (!Number.isSafeInteger(maxNodes) || maxNodes <= 0) throw new CompileError(`--max-nodes "${v["max-nodes"]}" must be a positive integer`);
  const timeout = v["trace-timeout"] === undefined ? traceDefaults.timeoutMs / 1000 : Number(v["trace-timeout"]);
  if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 2_000_000) throw new CompileError(`--trace-timeout "${v["trace-timeout"]}" must be a positive number of seconds`);
  if (v.out !== undefined && v.out.trim() === "") throw new CompileError(`--out "${v.out}" must name a folder`);
  const kind = statOrMissing(spec);
  if (kind === undefined) throw locateArg(argv, new CompileError(`Cannot read ${ir ? "IR" : "spec"} file "${spec}"`), argv.indexOf(spec));
  if (!kind.isFile()) throw locateArg(argv, new CompileError(`${ir ? "IR" : "Spec"} file "${spec}" is ${kind.isDirectory() ? "a directory" : "not a regular file"}; give a .ts spec or a .tir graph`), argv.indexOf(spec));
  const budget = { maxNodes, timeoutMs: timeout * 1000 };
  return { spec, ir, check: v.check === true, typeCheck: v["no-check"] !== true, model: v.model, batch, out: v.out, emit, turbo, generation, budget, explain: v.explain === true };
}

function write(dir: string, c: Compiled, o: CliOptions): string[] {
  const files: [string, string | Uint8Array][] = [];
  if (o.emit.has("ts")) files.push(["model.ts", c.module.ts], ["model.mjs", c.module.js]);
  if (o.emit.has("ir")) files.push(["model.traced.tir", c.ir.traced], ["model.tir", c.ir.final]);
  if (o.emit.has("plan")) files.push(["plan.json", JSON.stringify(c.plan, null, 2) + "\n"], ["plan.txt", formatReport(c.plan, o.batch)]);
  if (o.emit.has("onnx")) files.push(["model.onnx", emitOnnx(c.program, c.plan, o.spec)]);
  return writeOutputs(dir, files);
}

/** Where main() writes: the process's stdout and stderr unless a test passes its own. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

const stdio: CliIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

/** Type-checks a spec; prints the errors and returns false when there are any. */
function typeCheck(o: CliOptions, io: CliIo): boolean {
  const errors = checkSpec(o.spec);
  for (const e of errors) io.err(`${formatDiagnostic(e)}\n`);
  if (errors.length > 0) {
    const what = `${errors.length} type error${errors.length === 1 ? "" : "s"} in ${o.spec}`;
    io.err(`turbo-compile: ${what}${o.check ? "" : "; nothing was compiled (--no-check skips the check)"}\n`);
  }
  return errors.length === 0;
}

export async function main(argv: readonly string[], io: CliIo = stdio): Promise<number> {
  try {
    const o = parseCli(argv);
    if (o === "help") {
      io.out(usage);
      return 0;
    }
    try {
      return await run(o, io);
    } catch (e) {
      throw locateCompileError(argv, o, e);
    }
  } catch (e) {
    const { text, exitCode } = formatError(e);
    io.err(text.startsWith("error:") || text.startsWith("internal:") ? `turbo-compile: ${text}\n` : `${text}\n`);
    if (exitCode === 1 && process.env.TURBOGRAPH_DEBUG && e instanceof Error) io.err(`${e.stack}\n`);
    return exitCode;
  }
}

/** Type-check, trace (or read the .tir), compile, write. */
async function run(o: CliOptions, io: CliIo): Promise<number> {
  const options: CompileOptions = { source: o.spec, ...(o.turbo === undefined ? {} : { turbo: o.turbo }), ...(o.generation === undefined ? {} : { generation: o.generation }) };
  let compiled: Compiled;
  let loc: SourceLoc | undefined;
  if (o.ir) {
    const graph = readGraph(o.spec);
    if (o.check) {
      io.out(`${o.spec}: graph "${graph.name}" parses and type-checks (${graph.nodes.length} nodes)\n`);
      return 0;
    }
    compiled = compileGraph(graph, options);
  } else {
    if (o.typeCheck && !typeCheck(o, io)) return 2;
    if (o.check) {
      io.out(`${o.spec}: no type errors\n`);
      return 0;
    }
    const traced = await traceSpecFile(o.spec, o.model, o.budget);
    loc = traced.loc;
    compiled = compileGraph(traced.graph, options);
  }
  const dir = o.out ?? defaultOutputDir(compiled.graph.name, loc);
  const files = write(dir, compiled, o);
  io.out(formatReport(compiled.plan, o.batch, { explain: o.explain }));
  io.out(`wrote ${files.join(", ")}\n`);
  return 0;
}

// Run when executed (also through npm's bin symlink), not when imported by tests.
const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(resolve(process.argv[1]))).href;
if (invokedDirectly) process.exitCode = await main(process.argv.slice(2));
