/**
 * The two layering rules of the design: the compiler never imports the
 * runtime, and the runtime imports from the compiler only its contract
 * (`compiler/contract/`: the plan format and the merged-count schedule), so
 * `turbograph/runtime` never drags in ts-morph, TypeScript or chevrotain.
 */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (name.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** Every relative module a file imports or re-exports, resolved to a path under the root. */
function imports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const found: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)[^"';]*?from\s*["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    found.push(relative(root, resolve(dirname(file), m[1] ?? m[2]!)));
  }
  return found;
}

test("the compiler imports nothing from runtime/", () => {
  const bad: string[] = [];
  for (const file of sources(join(root, "compiler"))) {
    for (const target of imports(file)) if (target.startsWith("runtime/")) bad.push(`${relative(root, file)} → ${target}`);
  }
  assert.equal(bad, []);
});

test("the runtime imports from compiler/ only its contract", () => {
  const bad: string[] = [];
  let contractImports = 0;
  for (const file of sources(join(root, "runtime"))) {
    for (const target of imports(file)) {
      if (target.startsWith("compiler/contract/")) contractImports++;
      else if (target.startsWith("compiler/")) bad.push(`${relative(root, file)} → ${target}`);
    }
  }
  assert.equal(bad, []);
  assert.ok(contractImports > 0, "the import scan found no contract import at all: the scan itself is broken");
});

test("the contract imports nothing but itself", () => {
  for (const file of sources(join(root, "compiler/contract"))) {
    for (const target of imports(file)) assert.ok(target.startsWith("compiler/contract/"), `${relative(root, file)} → ${target}`);
  }
});

/** Every bare (package or `node:`) specifier a file imports, statically or with import(). */
function packageImports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const found: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)[^"';]*?from\s*["']([^."'][^"']*)["']|import\(\s*["']([^."'][^"']*)["']\s*\)/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) found.push(m[1] ?? m[2]!);
  return found;
}

test("runtime/web.ts and all it imports use no node: module (it must load in a browser)", () => {
  const seen = new Set<string>();
  const queue = ["runtime/web.ts"];
  const bad: string[] = [];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const pkg of packageImports(join(root, file))) {
      if (pkg.startsWith("node:") || !pkg.startsWith("@tensorflow/")) bad.push(`${file} → ${pkg}`);
    }
    for (const target of imports(join(root, file))) queue.push(target);
  }
  assert.equal(bad, []);
  assert.ok(seen.has("runtime/load.ts") && seen.has("runtime/backend.ts") && seen.has("compiler/contract/plan.ts"), `the walk missed the loader: ${[...seen].join(", ")}`);
  assert.not.ok(seen.has("runtime/node_io.ts"), "web.ts reaches node_io.ts");
});

test.run();
