/**
 * Node module hooks that let the published `turbo-compile` (plain JavaScript,
 * no tsx) import a user's TypeScript spec: every `.ts`/`.mts` file is
 * transpiled on load with TypeScript's `transpileModule` (types erased, no
 * type check — `--check` does that), with an inline source map so stack
 * traces, and so every located error, point at the user's own lines.
 *
 * Registered by `compiler/load_spec.ts` with `module.register()` only when the CLI
 * itself runs as JavaScript; under tsx (development, tests) tsx's loader is
 * already active. Specs import with explicit extensions (`./blocks.ts`),
 * Deno-style; extension-less relative imports are not resolved.
 */

import { readFile } from "node:fs/promises";
import type { LoadHook } from "node:module";
import { fileURLToPath } from "node:url";
import { ts } from "ts-morph";

const typescriptFile = /\.m?ts$/;

/** `load` hook: transpiles TypeScript files to ES modules; everything else goes on unchanged. */
export const load: LoadHook = async (url, context, next) => {
  if (!url.startsWith("file:") || !typescriptFile.test(new URL(url).pathname)) return next(url, context);
  const path = fileURLToPath(url);
  const source = await readFile(path, "utf8");
  const out = ts.transpileModule(source, {
    fileName: path,
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      verbatimModuleSyntax: false,
      rewriteRelativeImportExtensions: false,
      inlineSourceMap: true,
      inlineSources: true,
      sourceMap: false,
    },
  });
  return { format: "module", source: out.outputText, shortCircuit: true };
};
