/**
 * Type-checks a spec file before anything in it runs: the spec and the
 * user's own modules it imports are checked with TypeScript (the copy
 * ts-morph bundles), and every error becomes a located `CompileError`
 * (`file:line:col: error: message (TSnnnn)`), so a spec that does not
 * type-check never reaches tracing.
 *
 * Compiler options come from the nearest tsconfig.json above the spec (its
 * files and includes are ignored: only the spec and what it imports are
 * checked); without one, the options turbograph itself uses. The library's
 * own files and node_modules are not reported.
 *
 * Node-style module settings (`module: Node16/NodeNext`) are checked as
 * `module: ESNext, moduleResolution: Bundler`: a ts-morph Project treats
 * every .ts file as CommonJS under NodeNext whatever package.json's "type"
 * says (ts-morph issue #1446), which would report `import.meta` in an ES
 * module spec as an error; and Bundler resolution is what tsx, which runs
 * the spec, does (it also accepts extensionless relative imports).
 */

import { existsSync } from "node:fs";
import { basename, dirname, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { Project, ts } from "ts-morph";
import { CompileError } from "./diagnostics.ts";

/**
 * turbograph's own sources (compiler/, runtime/, mod.ts), checked by its own
 * build, not reported here; when running from dist/, the sources beside it too.
 */
const here = fileURLToPath(new URL("..", import.meta.url));
const roots = basename(here) === "dist" ? [here, `${dirname(here)}${sep}`] : [here];
const libraryPaths = roots.flatMap((r) => [`${r}compiler${sep}`, `${r}runtime${sep}`, `${r}mod.ts`, `${r}mod.js`]);

const defaultOptions: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  strict: true,
  noEmit: true,
  allowImportingTsExtensions: true,
  verbatimModuleSyntax: true,
  skipLibCheck: true,
};

const isLibrary = (file: string) => libraryPaths.some((p) => file.startsWith(p));

function toError(d: ts.Diagnostic): CompileError {
  const text = ts.flattenDiagnosticMessageText(d.messageText, "\n").split("\n")[0]!.replace(/\.$/, "");
  const message = `${text} (TS${d.code})`;
  if (d.file === undefined || d.start === undefined) return new CompileError(message);
  const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
  return new CompileError(message, { file: resolve(d.file.fileName), line: line + 1, col: character + 1 });
}

/**
 * The TypeScript errors of a spec file and the user modules it imports, in
 * file order; empty when it type-checks.
 */
export function checkSpec(path: string): CompileError[] {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new CompileError(`Cannot read spec file "${path}"`);
  const config = ts.findConfigFile(dirname(abs), ts.sys.fileExists);
  const nodeStyle = (o: ts.CompilerOptions) => o.module !== undefined && o.module >= ts.ModuleKind.Node16 && o.module <= ts.ModuleKind.NodeNext;
  const asBundler: ts.CompilerOptions = { module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler, noEmit: true };
  let project: Project;
  if (config === undefined) {
    project = new Project({ compilerOptions: defaultOptions });
  } else {
    project = new Project({ tsConfigFilePath: config, skipAddingFilesFromTsConfig: true });
    const options = project.compilerOptions.get();
    project.compilerOptions.set(nodeStyle(options) ? asBundler : { noEmit: true });
  }
  project.addSourceFileAtPath(abs);
  project.resolveSourceFileDependencies();
  const program = project.getProgram().compilerObject;
  const errors: ts.Diagnostic[] = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()];
  for (const file of program.getSourceFiles()) {
    const name = resolve(file.fileName);
    if (file.isDeclarationFile || name.includes(`${sep}node_modules${sep}`) || isLibrary(name)) continue;
    errors.push(...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file));
  }
  return errors.filter((d) => d.category === ts.DiagnosticCategory.Error).map(toError);
}
