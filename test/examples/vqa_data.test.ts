/**
 * The two-digit VQA data (examples/vqa/data.ts): the pictures are the two
 * digits side by side, the answers follow from the digits' labels, the test
 * pairs are fixed by their seed, and question ids are the vocabulary's.
 */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { questionIds, questions, vocabulary } from "../../examples/vqa/config.ts";
import { loadMnist, makeBatch, PAIR_PIXELS, PAIR_WIDTH, testItems, testPairs, trainBatch } from "../../examples/vqa/data.ts";
import { mulberry32 } from "../../examples/vit/training.ts";
import { MNIST_PIXELS, MNIST_SIZE } from "../../examples/vit/mnist_data.ts";

const { train, test: testSplit } = loadMnist();

test("a pair is the left digit in columns 0–27 and the right digit in 28–55", () => {
  const b = makeBatch(testSplit, [[5, 1234, "sum"]]);
  for (let y = 0; y < MNIST_SIZE; y++) {
    for (let x = 0; x < MNIST_SIZE; x++) {
      assert.is(b.pixels[y * PAIR_WIDTH + x], testSplit.images[5 * MNIST_PIXELS + y * MNIST_SIZE + x]);
      assert.is(b.pixels[y * PAIR_WIDTH + MNIST_SIZE + x], testSplit.images[1234 * MNIST_PIXELS + y * MNIST_SIZE + x]);
    }
  }
  assert.is(b.pixels.length, PAIR_PIXELS);
});

test("answers follow from the labels: left, right, the larger, the sum", () => {
  const [l, r] = [3, 1900]; // test images of different digits (the split is ordered by digit)
  const [dl, dr] = [testSplit.labels[l]!, testSplit.labels[r]!];
  assert.ok(dl !== dr);
  const b = makeBatch(testSplit, [[l, r, "left"], [l, r, "right"], [l, r, "larger"], [l, r, "sum"]]);
  assert.equal(Array.from(b.answers), [dl, dr, Math.max(dl, dr), dl + dr]);
  assert.equal(Array.from(b.question.subarray(0, 5)), questions.left.words.map((w) => vocabulary.indexOf(w as never)));
  assert.equal(questionIds("sum"), [7, 8, 2, 9, 10]);
});

test("the test pairs are fixed by their seed, and every pair is asked every question", () => {
  assert.equal(testPairs(testSplit, 50), testPairs(testSplit, 50));
  assert.not.equal(testPairs(testSplit, 50, 1), testPairs(testSplit, 50));
  const items = testItems(testSplit, 10);
  assert.is(items.length, 40);
  assert.equal(items.slice(0, 4).map((i) => i[2]), ["left", "right", "larger", "sum"]);
  for (const [l, r] of testPairs(testSplit, 2000)) assert.ok(l >= 0 && l < testSplit.count && r >= 0 && r < testSplit.count);
});

test("training batches come from the stream: the same seed gives the same batch", () => {
  const [a, b] = [trainBatch(train, 16, mulberry32(9)), trainBatch(train, 16, mulberry32(9))];
  assert.equal(Array.from(a.answers), Array.from(b.answers));
  assert.equal(a.types, b.types);
  assert.ok(a.pixels.every((v, i) => v === b.pixels[i]));
});

test.run();
