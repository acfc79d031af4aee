/**
 * The compiled-against-eager check both VQA architectures share: for each
 * case and backend, compile the spec (with Turbo where the case has it), run
 * it on a few MNIST pairs with random weights, and compare the answer
 * logits with the eager tfjs model (examples/vqa/eager.ts) within 1e-4.
 * Merged cases also check that merging changed the logits, so an agreement
 * cannot come from a merge that did nothing. With `mask` (the text mask
 * [B, T] for B samples, 1 keep / 0 padding) the model's input `mask` gets
 * it, and so does the eager model.
 */

import * as tf from "@tensorflow/tfjs-core";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { compile } from "../../compiler/compile.ts";
import type { ModelSpec } from "../../compiler/dsl/trace.ts";
import { loadModule } from "../../runtime/mod.ts";
import type { WeightTensor } from "../../runtime/weights/mod.ts";
import { ANSWERS, QUESTION_LENGTH } from "../../examples/vqa/config.ts";
import { loadMnist, makeBatch, PAIR_HEIGHT, PAIR_WIDTH, testItems } from "../../examples/vqa/data.ts";
import type { EagerVqaTurbo } from "../../examples/vqa/eager.ts";
import { relativeError, tempDir, toTensors } from "../_helpers.ts";

export interface AgreementCase {
  name: string;
  turbo?: EagerVqaTurbo;
}

type Eager = (tensors: Map<string, tf.Tensor>, question: tf.Tensor2D, pixels: tf.Tensor4D, turbo?: EagerVqaTurbo, mask?: tf.Tensor2D) => tf.Tensor;

export function agreementTests(spec: ModelSpec, weights: ReadonlyMap<string, WeightTensor>, eager: Eager, cases: readonly AgreementCase[], mask?: (count: number) => number[][]): void {
  const test_ = loadMnist().test;
  const batch = makeBatch(test_, testItems(test_, 3));
  for (const backend of ["wasm", "cpu"] as const) {
    for (const c of cases) {
      test(`${backend}: ${c.name}${mask === undefined ? "" : " (padded text)"}: compiled logits agree with the eager model within 1e-4`, async () => {
        const compiled = compile(spec, { verify: true, ...(c.turbo === undefined ? {} : { turbo: c.turbo }) });
        const dir = tempDir("turbograph-vqa-");
        writeFileSync(join(dir, "model.mjs"), compiled.module.js);
        const m = await loadModule(await import(pathToFileURL(join(dir, "model.mjs")).href), { weights, backend });
        const question = tf.tensor2d(batch.question, [batch.count, QUESTION_LENGTH], "int32");
        const pixels = tf.tensor4d(batch.pixels, [batch.count, 1, PAIR_HEIGHT, PAIR_WIDTH]);
        const textMask = mask === undefined ? undefined : tf.tensor2d(mask(batch.count));
        const got = m.run({ question, pixels, ...(textMask === undefined ? {} : { mask: textMask }) }).answer!;
        const tensors = toTensors(weights);
        const want = eager(tensors, question, pixels, c.turbo, textMask);
        assert.equal(got.shape, [batch.count, ANSWERS]);
        const err = relativeError(got.dataSync(), want.dataSync());
        assert.ok(err < 1e-4, `relative error ${err}`);
        if (c.turbo !== undefined) {
          const plain = eager(tensors, question, pixels, undefined, textMask);
          assert.ok(relativeError(got.dataSync(), plain.dataSync()) > 1e-3, "merged and unmerged logits differ");
          plain.dispose();
        }
        tf.dispose([...tensors.values(), question, pixels, got, want, ...(textMask === undefined ? [] : [textMask])]);
        m.dispose();
      });
    }
  }
}
