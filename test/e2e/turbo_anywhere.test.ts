/**
 * Turbo anywhere (issue 11): every family of the corpus, written in the DSL
 * as a user would, compiled with `--turbo` settings (a constant, a
 * threshold, a per-block list, ToMe's α = 0) and run on wasm and cpu, agrees
 * with the eager tfjs model that merges by hand: logits within 1e-4 and the
 * plan's token counts equal to the ones the eager model went through.
 */

import * as tf from "@tensorflow/tfjs-core";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { compile } from "../../compiler/compile.ts";
import type { TurboOptions } from "../../compiler/passes/insert_turbo.ts";
import { loadModule, selectBackend } from "../../runtime/mod.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { pixels, relativeError, tempDir, toTensors } from "../_helpers.ts";
import { corpus, eager, spec, type EagerSettings, type Family } from "./_turbo_corpus.ts";

const settings: Record<Family, (TurboOptions & EagerSettings)[]> = {
  deit: [{ r: 3 }, { r: [2, 4], threshold: 12 }],
  registers: [{ r: 4 }, { r: [6, 2] }],
  layerscale: [{ r: 3 }, { r: 5, threshold: 10 }],
  postnorm: [{ r: 3 }, { r: [0, 5] }],
  parallel: [{ r: 4 }, { r: 8, threshold: 9, alpha: 0 }],
  meanpool: [{ r: 4, alpha: 0 }, { r: [8, 4], alpha: 0 }],
  twostream: [{ r: 3 }, { r: [5, 2], threshold: 8 }],
};

for (const [family, list] of Object.entries(settings) as [Family, (TurboOptions & EagerSettings)[]][]) {
  test(`${family}: compiled with Turbo ${list.map((s) => JSON.stringify(s)).join(", ")} matches the eager model merging by hand, on wasm and cpu`, async () => {
    const c = corpus(family);
    await selectBackend("wasm");
    for (const turbo of list) {
      const compiled = compile(spec(c), { verify: true, turbo });
      const merged = compiled.plan.blocks.filter((b) => /^b\d+$/.test(b.name));
      assert.ok(merged.some((b) => b.merged > 0), `${family} ${JSON.stringify(turbo)}: something merges`);
      const dir = tempDir("turbograph-anywhere-");
      writeFileSync(join(dir, "model.mjs"), compiled.module.js);
      const weights = randomWeights(compiled.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), 7);
      await selectBackend("wasm");
      const x = pixels([2, c.channels, c.image, c.image], 31);
      const want = eager(c, toTensors(weights), x, turbo);
      const expected = want.logits.dataSync().slice();
      assert.equal(merged.map((b) => [b.tokensIn, b.merged, b.tokensOut]), want.blocks.map((b) => [b.tokensIn, b.merged, b.tokensOut]), `${family} ${JSON.stringify(turbo)}: plan token counts`);
      const module = await import(pathToFileURL(join(dir, "model.mjs")).href);
      for (const backend of ["wasm", "cpu"] as const) {
        const m = await loadModule(module, { weights, backend });
        const input = tf.tensor(x.dataSync(), x.shape);
        const got = m.run({ pixels: input }).logits!;
        assert.equal(got.shape, [2, c.classes]);
        const err = relativeError(got.dataSync(), expected);
        assert.ok(err < 1e-4, `${family} ${JSON.stringify(turbo)} on ${backend}: relative error ${err}`);
        m.dispose();
      }
    }
  });
}

test.run();
