/**
 * The diffusion transformer of examples/dit (timestep features with sin/cos,
 * SiLU, adaLN-Zero, cross-attention to prompt ids, unpatchify) compiled from
 * its DSL spec against the eager tfjs model, on wasm and cpu, with random
 * weights (the adaLN gates random too, so every branch counts). And what
 * understanding-mode Turbo says about it: it cannot shorten a stream that
 * must come back to every pixel, and says so at the spec's line.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { compile } from "../../compiler/compile.ts";
import { CompileError } from "../../compiler/diagnostics.ts";
import { ditTiny, promptIds } from "../../examples/dit/config.ts";
import { dit } from "../../examples/dit/dit.ts";
import { eagerDit } from "../../examples/dit/eager.ts";
import { load } from "../../runtime/mod.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { compileToDir, relativeError, toTensors } from "../_helpers.ts";

const spec = dit(ditTiny);

for (const backend of ["wasm", "cpu"] as const) {
  test(`the compiled DiT agrees with the eager model within 1e-4 on ${backend}`, async () => {
    const { dir, compiled } = compileToDir(spec);
    const weights = randomWeights(compiled.plan.params.map((p) => ({ name: p.name, shape: p.shape as number[] })), 8);
    const model = await load(dir, { weights, backend });
    const noisy = tf.randomNormal([3, 1, 8, 8], 0, 1, "float32", 4) as tf.Tensor4D;
    const t = tf.tensor2d([[3], [250], [999]]);
    const prompt = tf.tensor2d([promptIds(0), promptIds(7), promptIds(9)], [3, 2], "int32");
    const got = model.run({ noisy, t, prompt }).noise!;
    const tensors = toTensors(weights);
    const want = eagerDit(ditTiny, tensors, noisy, t, prompt);
    assert.equal(got.shape, [3, 1, 8, 8]);
    const err = relativeError(got.dataSync(), want.dataSync());
    assert.ok(err < 1e-4, `relative error ${err}`);
    // The prompt matters: another class gives another prediction.
    const other = model.run({ noisy, t, prompt: tf.tensor2d([promptIds(1), promptIds(7), promptIds(9)], [3, 2], "int32") }).noise!;
    assert.ok(relativeError(tf.slice(other, [0], [1]).dataSync(), tf.slice(got, [0], [1]).dataSync()) > 1e-3, "class 0 and class 1 give the same noise");
    tf.dispose([noisy, t, prompt, got, want, other, ...tensors.values()]);
    model.dispose();
  });
}

test("understanding-mode Turbo refuses the DiT at the unpatchify line: the stream must keep every token", () => {
  try {
    compile(spec, { turbo: { r: 4, alpha: 0 } });
    assert.unreachable("compiled");
  } catch (e) {
    assert.instance(e, CompileError);
    assert.match((e as Error).message, /folds the token axis into another/);
    assert.match((e as CompileError).loc?.file ?? "", /examples\/dit\/dit\.ts$/);
  }
});

test.run();
