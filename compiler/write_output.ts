/**
 * Where turbo-compile writes, and the writing itself. Without `--out` the
 * folder is `compiled/<model name>`, resolved and kept strictly inside
 * `compiled/` (a model named "../x" or "" is refused, not followed). Folders
 * are created one level at a time, because Node's recursive mkdir never
 * returns under some pseudo file systems (/proc). Every file-system failure
 * is a `CompileError` naming the path.
 */

import { mkdirSync, statSync, writeFileSync, type Stats } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { CompileError, type SourceLoc } from "./diagnostics.ts";

/** The default output root, relative to the working directory. */
export const outputRoot = "compiled";

/** `compiled/<name>`, or a located error when the name would leave (or be) `compiled/` itself. */
export function defaultOutputDir(name: string, loc?: SourceLoc): string {
  const root = resolve(outputRoot);
  const rel = relative(root, resolve(root, name));
  const bad = name.trim() === "" || rel === "" || rel === ".." || rel.startsWith(`..${"/"}`) || rel.startsWith("..\\") || isAbsolute(rel) || /[\u0000-\u001f]/.test(name);
  if (bad) {
    const why = name.trim() === "" || rel === "" ? "is empty" : /[\u0000-\u001f]/.test(name) ? "holds control characters" : `would write outside ${outputRoot}/`;
    throw new CompileError(`model name ${JSON.stringify(name)} ${why}, so it cannot name the output folder ${outputRoot}/<model name>; rename the model or pass --out DIR`, loc);
  }
  return join(outputRoot, rel);
}

const reason = (e: unknown): string => {
  const x = e as NodeJS.ErrnoException;
  const why: Record<string, string> = { EACCES: "permission denied", EPERM: "not permitted", EROFS: "read-only file system", ENOSPC: "no space left on the device", ENOENT: "the file system does not allow it", ENAMETOOLONG: "the name is too long", EISDIR: "it is a directory" };
  return x.code !== undefined ? `${why[x.code] ?? x.code}` : x.message;
};

/** The file's stat, or undefined when it is missing (or a parent is a file: ENOTDIR). */
export function statOrMissing(path: string): Stats | undefined {
  try {
    return statSync(path, { throwIfNoEntry: false });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
    throw new CompileError(`cannot read "${path}": ${reason(e)}`);
  }
}

/** A path as the user reads it: relative to the working directory when inside it. */
function shown(abs: string): string {
  const rel = relative(process.cwd(), abs);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel) ? rel : abs;
}

/** Creates `dir` and its missing parents one at a time. */
function makeDirs(dir: string): void {
  const abs = resolve(dir);
  const missing: string[] = [];
  for (let d = abs; ; d = dirname(d)) {
    const s = statOrMissing(d);
    if (s !== undefined) {
      if (!s.isDirectory()) throw new CompileError(`output folder "${dir}" ${d === abs ? "is a file, not a folder" : `cannot be made: "${shown(d)}" is a file, not a folder`}`);
      break;
    }
    missing.unshift(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing) {
    try {
      mkdirSync(d);
    } catch (e) {
      throw new CompileError(`output folder "${dir}" cannot be made: creating "${shown(d)}" failed: ${reason(e)}`);
    }
  }
}

/** Writes `files` (name → text, or bytes for model.onnx) into `dir`; returns the written paths. */
export function writeOutputs(dir: string, files: readonly (readonly [string, string | Uint8Array])[]): string[] {
  makeDirs(dir);
  return files.map(([name, text]) => {
    const path = join(dir, name);
    try {
      writeFileSync(path, text);
    } catch (e) {
      throw new CompileError(`output folder "${dir}": cannot write "${path}": ${reason(e)}`);
    }
    return path;
  });
}
