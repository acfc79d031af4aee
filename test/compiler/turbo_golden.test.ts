/**
 * Golden IR after `insert_turbo` for each family of the Turbo corpus and the
 * library's ViT (issue 11, item 7): where the merges are, what they protect,
 * which attentions get sizes, which ops were re-typed (the copies traced with
 * the old count stay until the next `dce`). Reviewed by eye once; UPDATE_GOLDEN=1 rewrites
 * them (review the diff before committing).
 */

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { pipeline, runPasses } from "../../compiler/compile.ts";
import { trace, type ModelSpec } from "../../compiler/dsl/mod.ts";
import { parseGraph } from "../../compiler/ir/parse.ts";
import { printGraph } from "../../compiler/ir/print.ts";
import type { TurboOptions } from "../../compiler/passes/insert_turbo.ts";
import { tiny } from "../../examples/vit/vit.ts";
import { corpus, spec, type Family } from "../e2e/_turbo_corpus.ts";

/** The graph right after insert_turbo, as text. */
function afterTurbo(s: ModelSpec, turbo: TurboOptions): string {
  const passes = pipeline({ turbo });
  const upTo = passes.findIndex(([name]) => name === "insert_turbo");
  return printGraph(runPasses(trace(s), passes.slice(0, upTo + 1), { verify: true }));
}

const cases: [string, ModelSpec, TurboOptions][] = [
  ["vit_tiny", tiny, { r: 3 }],
  ...(["deit", "registers", "layerscale", "postnorm", "parallel", "twostream"] as Family[]).map((f): [string, ModelSpec, TurboOptions] => [f, spec(corpus(f)), { r: 3 }]),
  ["meanpool", spec(corpus("meanpool")), { r: 3, alpha: 0 }],
];

for (const [name, s, turbo] of cases) {
  test(`the IR of ${name} after insert_turbo ${JSON.stringify(turbo)} matches test/golden/turbo/${name}.tir and parses back`, () => {
    const text = afterTurbo(s, turbo);
    const path = fileURLToPath(new URL(`../golden/turbo/${name}.tir`, import.meta.url));
    if (process.env.UPDATE_GOLDEN === "1") writeFileSync(path, text);
    assert.ok(existsSync(path), `golden file ${path} is missing; run with UPDATE_GOLDEN=1 to create it`);
    assert.fixture(text, readFileSync(path, "utf8"));
    assert.is(printGraph(parseGraph(text, path)), text, "the text form round-trips");
  });
}

test.run();
