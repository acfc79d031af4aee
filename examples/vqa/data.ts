/**
 * Two-digit MNIST VQA data: images of two digits side by side (28×56) and a
 * question about them, drawn from the fixed MNIST split of examples/vit
 * (train pairs only from train digits, test pairs only from test digits).
 *
 * - Test: `TEST_PAIRS` pairs drawn once with seed `TEST_SEED`, each asked
 *   every question type, so each type has the same images.
 * - Train: pairs and question types drawn per step from a seeded stream
 *   (`trainBatch`), so an epoch is a number of samples, not a fixed list.
 */

import { loadMnist, MNIST_PIXELS, MNIST_SIZE, type MnistSplit } from "../vit/mnist_data.ts";
import { mulberry32 } from "../vit/training.ts";
import { QUESTION_LENGTH, questionIds, questions, questionTypes, type Question } from "./config.ts";

export const PAIR_HEIGHT = MNIST_SIZE;
export const PAIR_WIDTH = 2 * MNIST_SIZE;
export const PAIR_PIXELS = PAIR_HEIGHT * PAIR_WIDTH;
export const TEST_PAIRS = 2000;
export const TEST_SEED = 2026;

/** A batch: pixels [n, 1, 28, 56], question ids [n, 5], answers, and what they were made of. */
export interface VqaBatch {
  count: number;
  pixels: Float32Array;
  question: Int32Array;
  answers: Int32Array;
  types: Question[];
  left: Uint8Array;
  right: Uint8Array;
}

/** Writes digit `l` and digit `r` of `split` side by side into `out` at image `at`. */
function composePair(split: MnistSplit, l: number, r: number, out: Float32Array, at: number): void {
  const base = at * PAIR_PIXELS;
  for (let y = 0; y < MNIST_SIZE; y++) {
    out.set(split.images.subarray(l * MNIST_PIXELS + y * MNIST_SIZE, l * MNIST_PIXELS + (y + 1) * MNIST_SIZE), base + y * PAIR_WIDTH);
    out.set(split.images.subarray(r * MNIST_PIXELS + y * MNIST_SIZE, r * MNIST_PIXELS + (y + 1) * MNIST_SIZE), base + y * PAIR_WIDTH + MNIST_SIZE);
  }
}

/** Builds a batch from (left image, right image, question) triples of `split`. */
export function makeBatch(split: MnistSplit, items: ReadonlyArray<readonly [number, number, Question]>): VqaBatch {
  const n = items.length;
  const b: VqaBatch = { count: n, pixels: new Float32Array(n * PAIR_PIXELS), question: new Int32Array(n * QUESTION_LENGTH), answers: new Int32Array(n), types: [], left: new Uint8Array(n), right: new Uint8Array(n) };
  items.forEach(([l, r, q], i) => {
    composePair(split, l, r, b.pixels, i);
    b.question.set(questionIds(q), i * QUESTION_LENGTH);
    b.left[i] = split.labels[l]!;
    b.right[i] = split.labels[r]!;
    b.answers[i] = questions[q].answer(b.left[i]!, b.right[i]!);
    b.types.push(q);
  });
  return b;
}

/** The fixed test pairs: indices into the test split. */
export function testPairs(split: MnistSplit, count = TEST_PAIRS, seed = TEST_SEED): Array<[number, number]> {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => [Math.floor(random() * split.count), Math.floor(random() * split.count)] as [number, number]);
}

/** The test set: every pair asked every question type, grouped by pair. */
export function testItems(split: MnistSplit, count = TEST_PAIRS): Array<[number, number, Question]> {
  return testPairs(split, count).flatMap(([l, r]) => questionTypes.map((q) => [l, r, q] as [number, number, Question]));
}

/** A random training batch of `n` samples drawn with `random`. */
export function trainBatch(split: MnistSplit, n: number, random: () => number): VqaBatch {
  const pick = () => Math.floor(random() * split.count);
  return makeBatch(split, Array.from({ length: n }, () => [pick(), pick(), questionTypes[Math.floor(random() * questionTypes.length)]!] as const));
}

export { loadMnist };
