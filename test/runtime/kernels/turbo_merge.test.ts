/**
 * Checks `turboMerge()` against a plain-loop reference of the rules in
 * spec/turbo.md (Float64 arithmetic on JS arrays, no tfjs), on the cpu and
 * wasm backends, plus its bookkeeping: size totals, protected tokens, batch
 * independence, tie breaking, tensor ownership and argument errors.
 *
 * Run alone with `npx tsx test/runtime/kernels/turbo_merge.test.ts`.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";
import { mergedCount, turboMerge } from "../../../runtime/kernels/turbo_merge.ts";
import {
  checkAgainstReference,
  clearSample,
  DEFAULTS,
  disposeAll,
  firstMismatch,
  FLAGS,
  FUSIONS,
  makeRandom,
  makeSample,
  referenceCount,
  samplesOf,
  SHAPES,
  toTensors,
} from "./_turbo_merge_reference.ts";

tf.env().set("PROD", true);

const BACKENDS = ["cpu", "wasm"] as const;
type Backend = (typeof BACKENDS)[number];

async function useBackend(name: Backend): Promise<void> {
  const ok = await tf.setBackend(name);
  assert.ok(ok, `backend "${name}" could not be set`);
  await tf.ready();
}

// ----------------------------------------------------------------- tests

/** A tensor's values as a plain array. */
function values(t: tf.Tensor): number[] {
  return Array.from(t.dataSync());
}

function assertClose(actual: ArrayLike<number>, expected: number[], tol: number, what: string): void {
  const at = firstMismatch(actual, expected, tol);
  assert.ok(
    at === -1,
    `${what}: length ${actual.length} vs ${expected.length}, first difference at ${at}: ${
      actual[at]
    } vs ${expected[at]}`,
  );
}


for (const backend of BACKENDS) {
  test(`\`turboMerge()\` matches the plain-loop reference on ${backend}`, async () => {
    await useBackend(backend);
    const checked = await checkAgainstReference(false);
    assert.is(checked, SHAPES.length * FUSIONS.length * FLAGS.length);
  });

  test(`\`turboMerge()\` sums provenance like the reference on ${backend}`, async () => {
    await useBackend(backend);
    const checked = await checkAgainstReference(true);
    assert.is(checked, SHAPES.length * FUSIONS.length * FLAGS.length);
  });
}

test("`turboMerge()` puts every original token exactly once (identity provenance)", async () => {
  for (const backend of BACKENDS) {
    await useBackend(backend);
    for (const [n, r, distill] of [[197, 16, false], [17, 8, true], [8, 2, false]] as const) {
      const options = { ...DEFAULTS, r, distill };
      const pairs = [0, 1].map((i) => clearSample(900 + n + i, { n, width: 4, metricWidth: 8 }, options));
      const inputs = toTensors(pairs.map(([s]) => s));
      const out = turboMerge(inputs, { r, distill, trackSources: true });
      assert.ok(out.sources, "sources returned");
      const kept = n - referenceCount(n, r, true, distill);
      assert.equal(out.sources.shape, [2, kept, n]);
      const provenance = out.sources.arraySync();
      const sizes = out.size.arraySync();
      provenance.forEach((rows, b) => {
        const members = rows.map((row) => row.flatMap((v, p) => (v === 1 ? [p] : [])));
        assert.equal(members, pairs[b][1].members, `${backend} n=${n}: members of sample ${b}`);
        const seen = members.flat().sort((p, q) => p - q);
        assert.equal(seen, Array.from({ length: n }, (_, i) => i), `${backend} n=${n}: each token once`);
        rows.forEach((row, i) =>
          assert.is(row.reduce((s, v) => s + v, 0), sizes[b][i][0], `${backend}: row ${i} sums to its size`)
        );
      });
      tf.dispose([out.x, out.size, out.sources]);
      disposeAll(inputs);
    }
  }
});

test("`turboMerge()` with alpha 0 gives exactly ToMe (clsAttn null)", async () => {
  for (const backend of BACKENDS) {
    await useBackend(backend);
    const samples = samplesOf(3, 70, { n: 33, width: 6, metricWidth: 8 });
    const inputs = toTensors(samples);
    for (const fusion of ["S1", "S3", "S4"] as const) {
      const withAttn = turboMerge(inputs, { r: 9, alpha: 0, fusion, beta: 0.5, gamma: 2 });
      const plain = turboMerge({ ...inputs, clsAttn: null }, { r: 9, fusion });
      assert.equal(values(withAttn.x), values(plain.x), `${backend} ${fusion}: x`);
      assert.equal(values(withAttn.size), values(plain.size), `${backend} ${fusion}: size`);
      // And Turbo's α = 5 really changes which tokens merge here.
      const turbo = turboMerge(inputs, { r: 9, fusion });
      assert.not.equal(values(turbo.size), values(plain.size), `${backend} ${fusion}: α matters`);
      tf.dispose([withAttn.x, withAttn.size, plain.x, plain.size, turbo.x, turbo.size]);
    }
    disposeAll(inputs);
  }
});

test("`turboMerge()` keeps the total size", async () => {
  for (const backend of BACKENDS) {
    await useBackend(backend);
    for (let seed = 0; seed < 12; seed++) {
      const n = 5 + seed * 7;
      const samples = Array.from({ length: 2 }, (_, i) =>
        makeSample(makeRandom(300 + seed * 2 + i), { n, width: 3, metricWidth: 5, unitSize: false }));
      const inputs = toTensors(samples);
      const fusion = FUSIONS[seed % 4];
      const out = turboMerge(inputs, { r: 1 + seed * 3, fusion, distill: seed % 3 === 0 });
      const before = inputs.size.arraySync().map((rows) => rows.reduce((s, [v]) => s + v, 0));
      const after = out.size.arraySync().map((rows) => rows.reduce((s, [v]) => s + v, 0));
      assert.equal(after, before, `${backend} n=${n} ${fusion}`);
      tf.dispose([out.x, out.size]);
      disposeAll(inputs);
    }
  }
});

test("`turboMerge()` keeps the class token first and never merges it", async () => {
  for (const backend of BACKENDS) {
    await useBackend(backend);
    for (const fusion of FUSIONS) {
      // The class token is a copy of a B token (R = 1, the most redundant) and
      // receives the least attention (I = 0): every rule but the protection
      // would merge it first.
      const samples = Array.from({ length: 2 }, (_, i) => {
        const s = makeSample(makeRandom(400 + i), { n: 21, width: 5, metricWidth: 6, unitSize: false });
        s.metric[0] = [...s.metric[3]];
        s.clsAttn[0] = 0;
        return s;
      });
      const inputs = toTensors(samples);
      const out = turboMerge(inputs, { r: 10, fusion });
      assert.equal(out.x.shape, [2, 11, 5]);
      const x = out.x.arraySync();
      const size = out.size.arraySync();
      samples.forEach((s, b) => {
        assert.equal(x[b][0], s.x[0], `${backend} ${fusion}: class token x unchanged`);
        assert.equal(size[b][0], [s.size[0]], `${backend} ${fusion}: class token size unchanged`);
      });
      tf.dispose([out.x, out.size]);
      disposeAll(inputs);
    }
  }
});

test("`turboMerge()` keeps the distillation token at position 1 and merges nothing into it", async () => {
  for (const backend of BACKENDS) {
    await useBackend(backend);
    const samples = Array.from({ length: 2 }, (_, i) => {
      const s = makeSample(makeRandom(450 + i), { n: 15, width: 4, metricWidth: 6 });
      // Every A token is a copy of the distillation token: it is everyone's best partner.
      for (let a = 2; a < 15; a += 2) s.metric[a] = [...s.metric[1]];
      return s;
    });
    const inputs = toTensors(samples);
    let current = { x: inputs.x, size: inputs.size };
    // Two merges in a row: the second must find the distillation token at 1 again.
    for (const r of [3, 2]) {
      const metric = tf.slice(inputs.metric, [0, 0, 0], [2, current.x.shape[1], 6]);
      const out = turboMerge(
        { x: current.x, metric, size: current.size, clsAttn: null },
        { r, distill: true },
      );
      metric.dispose();
      const x = out.x.arraySync();
      const size = out.size.arraySync();
      samples.forEach((s, b) => {
        assert.equal(x[b][1], s.x[1], `${backend} r=${r}: distillation token x`);
        assert.equal(size[b][1], [1], `${backend} r=${r}: distillation token size`);
        assert.equal(x[b][0], s.x[0], `${backend} r=${r}: class token x`);
      });
      if (current.x !== inputs.x) tf.dispose([current.x, current.size]);
      current = out;
    }
    assert.equal(current.x.shape, [2, 10, 4]);
    tf.dispose([current.x, current.size]);
    disposeAll(inputs);
  }
});

test("`turboMerge()` gives a sample the same result alone and in a batch of 4", async () => {
  for (const backend of BACKENDS) {
    await useBackend(backend);
    for (const fusion of FUSIONS) {
      const samples = Array.from({ length: 4 }, (_, i) =>
        makeSample(makeRandom(500 + i), { n: 65, width: 8, metricWidth: 8, unitSize: false }));
      const batch = toTensors(samples);
      const alone = toTensors([samples[2]]);
      const options = { r: 20, fusion, distill: fusion === "S3" };
      const fromBatch = turboMerge(batch, options);
      const fromAlone = turboMerge(alone, options);
      const pick = (t: tf.Tensor3D) => tf.tidy(() => tf.slice(t, [2, 0, 0], [1, -1, -1]));
      const [bx, bs] = [pick(fromBatch.x), pick(fromBatch.size)];
      assert.equal(values(bs), values(fromAlone.size), `${backend} ${fusion}: size`);
      assertClose(bx.dataSync(), values(fromAlone.x), 1e-6, `${backend} ${fusion}: x`);
      tf.dispose([bx, bs, fromBatch.x, fromBatch.size, fromAlone.x, fromAlone.size]);
      disposeAll(batch);
      disposeAll(alone);
    }
  }
});

test("`turboMerge()` breaks ties toward the lowest index", async () => {
  for (const backend of BACKENDS) {
    await useBackend(backend);
    // Positions 2, 3, 4 and 5 share one metric: A tokens 2 and 4 tie on R
    // (and on E, with equal attention), and both tie between B tokens 3 and 5.
    const sample = makeSample(makeRandom(600), { n: 9, width: 3, metricWidth: 5 });
    for (const i of [3, 4, 5]) sample.metric[i] = [...sample.metric[2]];
    sample.clsAttn[2] = sample.clsAttn[4] = 0;
    const inputs = toTensors([sample]);
    const one = turboMerge(inputs, { r: 1, trackSources: true });
    // A = 0 2 4 6 8, B = 1 3 5 7: token 2 (lower of 2, 4) merges into 3 (lower of 3, 5).
    const members = (t: tf.Tensor3D) => t.arraySync()[0].map((row) => row.flatMap((v, p) => (v ? [p] : [])));
    assert.equal(members(one.sources!), [[0], [4], [6], [8], [1], [2, 3], [5], [7]], `${backend}: r = 1`);
    const two = turboMerge(inputs, { r: 2, trackSources: true });
    assert.equal(members(two.sources!), [[0], [6], [8], [1], [2, 3, 4], [5], [7]], `${backend}: r = 2`);
    tf.dispose([one.x, one.size, one.sources!, two.x, two.size, two.sources!]);
    disposeAll(inputs);
  }
});

test("`turboMerge()` leaves only its outputs behind", async () => {
  for (const backend of BACKENDS) {
    await useBackend(backend);
    const samples = samplesOf(2, 700, { n: 31, width: 6, metricWidth: 4 });
    const inputs = toTensors(samples);
    for (const [r, trackSources] of [[5, false], [5, true], [0, false], [0, true]] as const) {
      const before = tf.memory().numTensors;
      const out = turboMerge(inputs, { r, trackSources, distill: true });
      const outputs = [out.x, out.size, ...(out.sources ? [out.sources] : [])];
      assert.is(outputs.length, trackSources ? 3 : 2);
      const label = `${backend} r=${r} trackSources=${trackSources}`;
      assert.is(tf.memory().numTensors, before + outputs.length, label);
      tf.dispose(outputs);
      assert.is(tf.memory().numTensors, before, `${backend}: outputs were the only new tensors`);
    }
    for (const t of Object.values(inputs)) assert.not.ok(t.isDisposed, `${backend}: inputs stay alive`);
    disposeAll(inputs);
  }
});

test("`turboMerge()` with r' = 0 returns new tensors equal to its inputs", async () => {
  for (const backend of BACKENDS) {
    await useBackend(backend);
    const samples = Array.from({ length: 2 }, (_, i) =>
      makeSample(makeRandom(800 + i), { n: 3, width: 4, metricWidth: 4, unitSize: false }));
    const inputs = toTensors(samples);
    // N = 3 with a class token and a distillation token: ⌊(3 − 2)/2⌋ = 0.
    for (const options of [{ r: 0 }, { r: 5, distill: true }, { r: 4, cls: false, distill: true }]) {
      const out = turboMerge(inputs, { ...options, trackSources: true });
      assert.ok(out.x !== inputs.x && out.size !== inputs.size, "new tensors");
      assert.equal(out.x.arraySync(), inputs.x.arraySync());
      assert.equal(out.size.arraySync(), inputs.size.arraySync());
      const identity = [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
      assert.equal(out.sources!.arraySync(), [identity, identity]);
      tf.dispose([out.x, out.size, out.sources!]);
      assert.not.ok(inputs.x.isDisposed, "input survives disposing the copy");
    }
    disposeAll(inputs);
  }
});

test("`turboMerge()` clamps r to what can merge", async () => {
  await useBackend("cpu");
  for (const [n, cls, distill, expected] of [
    [2, true, false, 2],
    [1, true, false, 1],
    [4, true, false, 3],
    [5, false, false, 3],
    [10, true, true, 6],
    [11, true, false, 6],
  ] as const) {
    const inputs = toTensors([makeSample(makeRandom(n), { n, width: 2, metricWidth: 3 })]);
    const out = turboMerge(inputs, { r: 1000, cls, distill });
    assert.equal(out.x.shape, [1, expected, 2], `n=${n} cls=${cls} distill=${distill}`);
    tf.dispose([out.x, out.size]);
    disposeAll(inputs);
  }
});

test("`turboMerge()` accepts an empty batch", async () => {
  for (const backend of BACKENDS) {
    await useBackend(backend);
    const inputs = {
      x: tf.zeros([0, 9, 4]) as tf.Tensor3D,
      metric: tf.zeros([0, 9, 3]) as tf.Tensor3D,
      size: tf.zeros([0, 9, 1]) as tf.Tensor3D,
      clsAttn: tf.zeros([0, 9]) as tf.Tensor2D,
    };
    const out = turboMerge(inputs, { r: 2, trackSources: true });
    assert.equal([out.x.shape, out.size.shape, out.sources!.shape], [[0, 7, 4], [0, 7, 1], [0, 7, 9]], backend);
    tf.dispose([out.x, out.size, out.sources!, ...Object.values(inputs)]);
  }
});

test("`turboMerge()` is deterministic", async () => {
  for (const backend of BACKENDS) {
    await useBackend(backend);
    const samples = samplesOf(3, 1000, { n: 50, width: 8, metricWidth: 8 });
    const inputs = toTensors(samples);
    const first = turboMerge(inputs, { r: 12, fusion: "S2" });
    const second = turboMerge(inputs, { r: 12, fusion: "S2" });
    assert.equal(values(first.x), values(second.x), backend);
    assert.equal(values(first.size), values(second.size), backend);
    tf.dispose([first.x, first.size, second.x, second.size]);
    disposeAll(inputs);
  }
});

test("`turboMerge()` names the argument in errors", async () => {
  await useBackend("cpu");
  const inputs = toTensors(samplesOf(2, 1100, { n: 6, width: 4, metricWidth: 3 }));
  const other = toTensors([makeSample(makeRandom(1200), { n: 5, width: 4, metricWidth: 3 })]);
  const flat = tf.zeros([2, 6]);
  const intSize = tf.ones([2, 6, 1], "int32");
  const before = tf.memory().numTensors;
  const call = (patch: Record<string, unknown>, options: Record<string, unknown> = {}) => () =>
    turboMerge({ ...inputs, ...patch } as never, { r: 2, ...options } as never);

  assert.throws(call({}, { r: -1 }), /Invalid argument "r": expected a non-negative integer, got "-1"/);
  assert.throws(call({}, { r: 1.5 }), /"r".*"1.5"/);
  assert.throws(call({}, { r: Number.NaN }), /"r"/);
  assert.throws(call({ metric: other.metric }), /"metric".*\[2, 6, d\].*\[2, 6, 4\].*\[1, 5, 3\]/);
  assert.throws(call({ size: inputs.x }), /"size".*\[2, 6, 1\].*\[2, 6, 4\]/);
  assert.throws(call({ clsAttn: other.clsAttn }), /"clsAttn".*\[2, 6\].*\[1, 5\]/);
  assert.throws(call({ sources: other.provenance }), /"sources".*\[2, 6, P\].*\[1, 5, \d+\]/);
  assert.throws(call({ x: flat }), /"x": expected shape \[B, N, D\], got \[2, 6\]/);
  assert.throws(call({ size: intSize }), /"size": expected dtype float32, got "int32"/);
  assert.throws(call({ clsAttn: undefined }), /"clsAttn"/);
  assert.throws(call({}, { fusion: "S5" }), /"fusion".*"S5"/);
  assert.throws(call({}, { alpha: Infinity }), /"alpha"/);
  assert.throws(call({}, { fusion: "S4", beta: -0.5, gamma: 0.5 }), /"beta"/);
  assert.throws(() => mergedCount(-3, 1), /"n"/);
  assert.throws(() => mergedCount(10, -1), /"r"/);
  // Messages are sentence case with no trailing period.
  try {
    call({}, { r: -1 })();
    assert.unreachable("should have thrown");
  } catch (error) {
    assert.instance(error, RangeError);
    assert.not.match((error as Error).message, /\.$/);
  }
  assert.is(tf.memory().numTensors, before, "a rejected call allocates nothing");
  tf.dispose([flat, intSize]);
  disposeAll(inputs);
  disposeAll(other);
});

test("`mergedCount()` is min(r, ⌊(N − p)/2⌋), never below 0", () => {
  const table: [number, number, { cls?: boolean; distill?: boolean; protect?: number }, number][] = [
    [197, 16, {}, 16],
    [197, 200, {}, 98],
    [197, 200, { distill: true }, 97],
    [198, 200, { cls: false }, 99],
    [5, 16, {}, 2],
    [2, 1, {}, 0],
    [1, 1, { cls: false }, 0],
    [0, 3, {}, 0],
    [4, 3, { cls: true, distill: true }, 1],
    [3, 3, { cls: false, distill: true }, 0], // the one B token is protected
    [21, 16, { protect: 5 }, 8], // class token and 4 registers
    [6, 3, { cls: false, protect: 5 }, 0], // only position 5 may move, and it has no partner
    [40, 0, {}, 0],
  ];
  for (const [n, r, options, expected] of table) {
    assert.is(mergedCount(n, r, options), expected, `n=${n} r=${r} ${JSON.stringify(options)}`);
  }
  // Agrees with the reference rule everywhere it is defined.
  for (let n = 0; n < 40; n++) {
    for (const { cls, distill, protect } of FLAGS) {
      assert.is(mergedCount(n, 7, { cls, distill, protect }), referenceCount(n, 7, cls, distill, protect));
    }
  }
});

test.run();
