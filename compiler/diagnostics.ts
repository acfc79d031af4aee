/**
 * Located diagnostics: every user-facing compiler error carries a source
 * location and prints as `file:line:col: error: message`, followed by the
 * offending source line and a caret under the column when the file can be read.
 *
 * `CompileError` is a user error (exit code 2). Anything else escaping the
 * compiler is a bug and is reported with the `internal:` prefix (exit code 1).
 */

import { readFileSync } from "node:fs";
import { relative, isAbsolute } from "node:path";
import { fileURLToPath } from "node:url";

/** A position in a source file; line and column are 1-based. */
export interface SourceLoc {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

const compileErrorBrand = Symbol.for("turbograph.CompileError");

/**
 * A user error with a location. `context` holds extra lines (e.g. IR around a
 * node). `instanceof` works across copies of this module (a spec loaded through
 * another loader gets its own copy), by brand rather than by prototype.
 */
export class CompileError extends Error {
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[compileErrorBrand] === true;
  }
  readonly [compileErrorBrand] = true;
  readonly loc: SourceLoc | undefined;
  readonly context: readonly string[];
  constructor(message: string, loc?: SourceLoc, context: readonly string[] = []) {
    super(message);
    this.name = "CompileError";
    this.loc = loc;
    this.context = context;
  }
}

/** Formats a location as `file:line:col`, with the file relative to the working directory. */
export function formatLoc(loc: SourceLoc): string {
  let file = loc.file;
  if (isAbsolute(file)) {
    const rel = relative(process.cwd(), file);
    if (!rel.startsWith("..")) file = rel;
  }
  return `${file}:${loc.line}:${loc.col}`;
}

/** Renders a diagnostic: header line, source line with a caret, then any context lines. */
export function formatDiagnostic(err: CompileError): string {
  const lines: string[] = [];
  if (err.loc === undefined) {
    lines.push(`error: ${err.message}`);
  } else {
    lines.push(`${formatLoc(err.loc)}: error: ${err.message}`);
    const source = sourceLine(err.loc);
    if (source !== undefined) {
      lines.push(`  ${source}`);
      lines.push(`  ${" ".repeat(Math.max(0, err.loc.col - 1))}^`);
    }
  }
  for (const c of err.context) lines.push(c);
  return lines.join("\n");
}

/** Formats any thrown value: located user errors as diagnostics, the rest as internal errors. */
export function formatError(err: unknown): { text: string; exitCode: 1 | 2 } {
  if (err instanceof CompileError) return { text: formatDiagnostic(err), exitCode: 2 };
  const message = err instanceof Error ? err.message : String(err);
  return { text: `internal: ${message.replace(/^internal: /, "")}`, exitCode: 1 };
}

/** Texts parsed from memory (or read once), by file name, so diagnostics can show their lines. */
const sources = new Map<string, string>();

/** Makes `text` the contents shown for `file` in diagnostics (for sources that are not on disk). */
export function rememberSource(file: string, text: string): void {
  sources.set(file, text);
}

function sourceLine(loc: SourceLoc): string | undefined {
  try {
    const text = sources.get(loc.file) ?? readFileSync(loc.file, "utf8");
    const line = text.split(/\r?\n/)[loc.line - 1];
    return line === undefined ? undefined : line.replace(/\t/g, " ");
  } catch {
    return undefined;
  }
}

/**
 * The location of the first stack frame outside the library, so that a
 * builder called from a spec reports the spec's line (JAX's source_info idea).
 * `libraryDirs` are absolute directory paths whose frames are skipped.
 */
export function callerLoc(libraryDirs: readonly string[]): SourceLoc | undefined {
  return stackLoc(new Error().stack ?? "", libraryDirs);
}

/** The first frame of a stack trace that lies outside `libraryDirs` (and node internals). */
export function stackLoc(stack: string, libraryDirs: readonly string[]): SourceLoc | undefined {
  for (const raw of stack.split("\n").slice(1)) {
    const m = /\(?((?:file:\/\/)?[^\s()]+):(\d+):(\d+)\)?\s*$/.exec(raw.trim());
    if (m === null) continue;
    let file = m[1]!;
    if (file.startsWith("node:") || file.includes("/node_modules/")) continue;
    if (file.startsWith("file://")) file = fileURLToPath(file);
    if (libraryDirs.some((dir) => file.startsWith(dir))) continue;
    return { file, line: Number(m[2]), col: Number(m[3]) };
  }
  return undefined;
}
