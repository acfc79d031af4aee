/** loadParallel(): worker_threads split a batch and give the same outputs as one model. */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { compile } from "../../compiler/compile.ts";
import { tiny } from "../../examples/vit/vit.ts";
import { load, loadParallel } from "../../runtime/mod.ts";
import { pixels, relativeError, tempDir } from "../_helpers.ts";

const compiled = compile(tiny, { turbo: { r: 3, reportSizes: true } });
const dir = tempDir("turbograph-parallel-");
writeFileSync(join(dir, "model.mjs"), compiled.module.js);

test("`loadParallel()` with 2 workers equals one model on odd and even batches", async () => {
  const one = await load(dir, { weights: { random: 4 }, backend: "wasm" });
  const par = await loadParallel(dir, { weights: { random: 4 }, backend: "wasm", workers: 2 });
  assert.is(par.info.workers, 2);
  assert.is(par.info.backend, "wasm");
  for (const batch of [1, 4, 5]) {
    const x = pixels([batch, 3, 32, 32], batch);
    const want = one.run({ pixels: x });
    const got = await par.run({ pixels: x });
    assert.equal(Object.keys(got).sort(), Object.keys(want).sort());
    for (const name of Object.keys(want)) {
      assert.equal(got[name]!.shape, want[name]!.shape, name);
      assert.ok(relativeError(got[name]!.dataSync(), want[name]!.dataSync()) < 1e-6, name);
    }
    tf.dispose([x, ...Object.values(want), ...Object.values(got)]);
  }
  await par.dispose();
});

test("`loadParallel()` rejects a worker count that is not a positive integer", async () => {
  for (const workers of [0, 1.5]) {
    await loadParallel(dir, { weights: { random: 1 }, workers }).then(
      () => assert.unreachable(),
      (e: Error) => assert.match(e.message, /workers .* must be a positive integer/),
    );
  }
});

test.run();
