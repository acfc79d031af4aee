/**
 * The e2e check shared by the ViT tests: the compiled graph, loaded with
 * random weights through `load()`, against the hand-written eager ViT.
 */

import * as tf from "@tensorflow/tfjs-core";
import * as assert from "uvu/assert";
import type { ModelSpec } from "../../compiler/dsl/trace.ts";
import { eagerVit } from "../../examples/vit/eager.ts";
import type { VitConfig } from "../../examples/vit/config.ts";
import { load, selectBackend, type BackendName } from "../../runtime/mod.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { compileToDir, pixels, relativeError, toTensors } from "../_helpers.ts";

export async function checkAgainstEager(spec: ModelSpec, config: VitConfig, backends: BackendName[], batches: number[]): Promise<void> {
  const { dir, compiled } = compileToDir(spec);
  const weights = randomWeights(compiled.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), 11);
  // The oracle runs on wasm (the eager ViT is slow on cpu); it is the same f32 math on any backend.
  await selectBackend("wasm");
  const params = toTensors(weights);
  const cases = batches.map((b) => {
    const x = pixels([b, config.channels, config.image, config.image], 100 + b);
    const expected = eagerVit(config, params, x).dataSync().slice();
    return { b, x: x.dataSync().slice(), shape: x.shape, expected };
  });
  for (const backend of backends) {
    const model = await load(dir, { weights, backend });
    assert.is(model.info.backend.name, backend);
    for (const c of cases) {
      const x = tf.tensor(c.x, c.shape);
      const out = model.run({ pixels: x });
      const got = out.logits!.dataSync();
      assert.equal(out.logits!.shape, [c.b, config.classes]);
      const err = relativeError(got, c.expected);
      assert.ok(err < 1e-4, `${spec.name} on ${backend}, batch ${c.b}: relative error ${err} ≥ 1e-4`);
      out.logits!.dispose();
      x.dispose();
    }
    model.dispose();
  }
}
