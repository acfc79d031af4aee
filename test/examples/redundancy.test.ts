/**
 * The redundancy measures of examples/vit/redundancy.ts on hand-computed
 * cases, and `eagerVit`'s per-block observer: called once per block with the
 * block's output and attention, without changing the logits.
 */

import * as tf from "@tensorflow/tfjs-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { vitConfigs, vitDims, vitParams } from "../../examples/vit/config.ts";
import { eagerVit, type EagerBlockState } from "../../examples/vit/eager.ts";
import { attentionConcentration, redundancyProfile, tokenRedundancy } from "../../examples/vit/redundancy.ts";
import { selectBackend } from "../../runtime/mod.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { pixels, relativeError, toTensors } from "../_helpers.ts";

await selectBackend("cpu");

const close = (a: number, b: number, tol = 1e-5) => assert.ok(Math.abs(a - b) < tol, `${a} vs ${b}`);

test("S: the mean pairwise cosine, zero tokens counting as cosine 0", () => {
  // Pairs: (e1, e2) 0, (e1, e1+e2) 1/√2, (e2, e1+e2) 1/√2.
  const x = tf.tensor3d([[[1, 0], [0, 1], [2, 2]], [[1, 1], [3, 3], [-1, -1]]]);
  const s = tokenRedundancy(x).arraySync();
  close(s[0]!, Math.SQRT2 / 3);
  close(s[1]!, (1 - 1 - 1) / 3);
  const z = tf.tensor3d([[[1, 0], [0, 0], [1, 0]]]);
  close(tokenRedundancy(z).arraySync()[0]!, 1 / 3);
  tf.dispose([x, z]);
});

test("C: the top ⌊n/4⌋ share of the class row, averaged over heads", () => {
  // n = 8 → top 2. Head 0 row 0: [.4,.2,.1,.1,.1,.05,.05,0]; head 1 row 0: [0,.1,.1,.1,.1,.1,.1,.4].
  const row0 = [0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0];
  const row1 = [0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.4];
  const other = Array.from({ length: 8 }, () => Array(8).fill(1 / 8) as number[]);
  const probs = tf.tensor4d([[[row0, ...other.slice(1)], [row1, ...other.slice(1)]]]);
  // Mean row: [.2,.15,.1,.1,.1,.075,.075,.2] → top 2 = .2 + .2.
  close(attentionConcentration(probs).arraySync()[0]!, 0.4);
  probs.dispose();
});

test("eagerVit's observer sees every block's output and attention and leaves the logits alone", () => {
  const config = vitConfigs.tiny;
  const { tokens } = vitDims(config);
  const params = toTensors(randomWeights(vitParams(config), 3));
  const x = pixels([2, config.channels, config.image, config.image], 4);
  const plain = eagerVit(config, params, x).dataSync();
  const seen: Array<{ block: number; x: number[]; probs: number[] }> = [];
  const observed = eagerVit(config, params, x, { r: 4 }, (s: EagerBlockState) => seen.push({ block: s.block, x: s.x.shape, probs: s.probs.shape }));
  const merged = eagerVit(config, params, x, { r: 4 }).dataSync();
  assert.ok(relativeError(observed.dataSync(), merged) === 0);
  assert.equal(seen, [
    { block: 0, x: [2, tokens - 4, config.dim], probs: [2, config.heads, tokens, tokens] },
    { block: 1, x: [2, tokens - 8, config.dim], probs: [2, config.heads, tokens - 4, tokens - 4] },
  ]);
  assert.ok(plain.length === 2 * config.classes);
  const profile = redundancyProfile(config, params, x.dataSync() as Float32Array, 2, { batch: 1 });
  assert.is(profile.blocks.length, config.depth);
  for (const b of profile.blocks) {
    assert.ok(b.S >= -1 && b.S <= 1 && b.C > 0 && b.C <= 1 + 1e-6, JSON.stringify(b));
    assert.is(b.tokens, tokens);
  }
  tf.dispose([x, observed, ...params.values()]);
});

test.run();
