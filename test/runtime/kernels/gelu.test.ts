/** The GELU kernel against the exact erf form computed in float64. */

import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { erfApprox, gelu } from "../../../runtime/kernels/gelu.ts";

tf.env().set("PROD", true);

/** erf by its Maclaurin series (|x| ≤ 3) or continued fraction, in float64: the reference. */
function erf(x: number): number {
  const a = Math.abs(x);
  let r: number;
  if (a <= 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 80; n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    let f = 0;
    for (let n = 60; n >= 1; n--) f = n / 2 / (a + f);
    r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + f);
  }
  return x < 0 ? -r : r;
}
const exact = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));

test("the float64 reference erf is right at known points", () => {
  for (const [x, want] of [[0.5, 0.5204998778130465], [1, 0.8427007929497149], [2, 0.9953222650189527], [3.5, 0.9999992569016276]] as const) {
    assert.ok(Math.abs(erf(x) - want) < 1e-14, `erf(${x})`);
  }
});

test("`erfApprox()` stays within 5e-7 of erf on [−6, 6]", () => {
  let worst = 0;
  for (let x = -6; x <= 6; x += 0.0007) worst = Math.max(worst, Math.abs(erfApprox(x) - erf(x)));
  assert.ok(worst < 5e-7, `max error ${worst}`);
});

for (const backend of ["wasm", "cpu"]) {
  test(`\`gelu()\` on ${backend} matches the exact form, including sizes that are not a multiple of 4`, async () => {
    await tf.setBackend(backend);
    for (const n of [1, 3, 4, 7, 1001, 4096]) {
      const values = Float32Array.from({ length: n }, (_, i) => -9 + (18 * i) / Math.max(1, n - 1));
      const x = tf.tensor(values, [n]);
      const before = tf.memory().numTensors;
      const y = gelu(x);
      assert.is(tf.memory().numTensors, before + 1, "only the output survives");
      assert.equal(y.shape, [n]);
      const got = y.dataSync();
      for (let i = 0; i < n; i++) {
        const want = exact(values[i]!);
        assert.ok(Math.abs(got[i]! - want) <= 1e-6 * Math.max(1, Math.abs(values[i]!)), `gelu(${values[i]}) = ${got[i]}, want ${want}`);
      }
      tf.dispose([x, y]);
    }
  });
}

test("`gelu()` keeps the shape of a 2-D input and rejects int32", async () => {
  await tf.setBackend("wasm");
  const y = gelu(tf.ones([3, 5]));
  assert.equal(y.shape, [3, 5]);
  assert.throws(() => gelu(tf.ones([2], "int32")), /float32/);
});

test.run();
