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
import type { Fusion, TurboMergeOptions } from "../../../runtime/kernels/turbo_merge.ts";
import { mergedCount, turboMerge } from "../../../runtime/kernels/turbo_merge.ts";

tf.env().set("PROD", true);

const BACKENDS = ["cpu", "wasm"] as const;
type Backend = (typeof BACKENDS)[number];
const FUSIONS: Fusion[] = ["S1", "S2", "S3", "S4"];

async function useBackend(name: Backend): Promise<void> {
  const ok = await tf.setBackend(name);
  assert.ok(ok, `backend "${name}" could not be set`);
  await tf.ready();
}

// ------------------------------------------------------------------ data

/** xorshift32 with a splitmix-style seed scramble: floats in [0, 1). */
function makeRandom(seed: number): () => number {
  let state = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ 0x27d4eb2f) >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 4294967296;
  };
}

/** One sample; every number is float32-exact so tfjs and the reference agree on inputs. */
interface Sample {
  x: number[][]; // [N][D]
  metric: number[][]; // [N][d]
  size: number[]; // [N]
  clsAttn: number[]; // [N]
  sources: number[][]; // [N][P]
}

interface SampleShape {
  n: number;
  width: number;
  metricWidth: number;
  unitSize?: boolean;
  patches?: number; // P of the given provenance
}

function makeSample(random: () => number, shape: SampleShape): Sample {
  const f = Math.fround;
  const uniform = () => 2 * random() - 1;
  const { n, width, metricWidth } = shape;
  // Tokens gather around a few centres, so that similarities vary as in a ViT.
  const centres = Array.from({ length: Math.max(2, n >> 2) }, () =>
    Array.from({ length: metricWidth }, uniform));
  const metric = Array.from({ length: n }, () => {
    const centre = centres[Math.floor(random() * centres.length)];
    return centre.map((c) => f(c + 0.6 * uniform()));
  });
  const logits = Array.from({ length: n }, () => 2 * uniform());
  const total = logits.reduce((s, l) => s + Math.exp(l), 0);
  const patches = shape.patches ?? n;
  return {
    x: Array.from({ length: n }, () => Array.from({ length: width }, () => f(uniform()))),
    metric,
    size: Array.from({ length: n }, () => (shape.unitSize ?? true) ? 1 : 1 + Math.floor(random() * 4)),
    clsAttn: logits.map((l) => f(Math.exp(l) / total)),
    sources: Array.from({ length: n }, () => Array.from({ length: patches }, () => (random() < 0.3 ? 1 : 0))),
  };
}

interface InputTensors {
  x: tf.Tensor3D;
  metric: tf.Tensor3D;
  size: tf.Tensor3D;
  clsAttn: tf.Tensor2D;
  /** Not named `sources`, so that spreading these into `turboMerge()` tracks nothing. */
  provenance: tf.Tensor3D;
}

function toTensors(samples: Sample[]): InputTensors {
  const b = samples.length;
  const n = samples[0].x.length;
  return {
    x: tf.tensor3d(samples.map((s) => s.x), [b, n, samples[0].x[0].length]),
    metric: tf.tensor3d(samples.map((s) => s.metric), [b, n, samples[0].metric[0].length]),
    size: tf.tensor3d(samples.map((s) => s.size.map((v) => [v])), [b, n, 1]),
    clsAttn: tf.tensor2d(samples.map((s) => s.clsAttn), [b, n]),
    provenance: tf.tensor3d(samples.map((s) => s.sources), [b, n, samples[0].sources[0].length]),
  };
}

/** A tensor's values as a plain array. */
function values(t: tf.Tensor): number[] {
  return Array.from(t.dataSync());
}

/** `n` seeded samples of one shape, seeds `seed`, `seed + 1`, … */
function samplesOf(count: number, seed: number, shape: SampleShape): Sample[] {
  return Array.from({ length: count }, (_, i) => makeSample(makeRandom(seed + i), shape));
}

function disposeAll(tensors: InputTensors): void {
  tf.dispose(Object.values(tensors));
}

// ------------------------------------------------------------- reference

interface ReferenceOptions {
  r: number;
  alpha: number;
  scale: number;
  fusion: Fusion;
  beta: number;
  gamma: number;
  layer: number;
  cls: boolean;
  distill: boolean;
  /** Positions below this are protected (class, distillation, register tokens). */
  protect: number;
  useAttention: boolean;
}

const DEFAULTS: ReferenceOptions = {
  r: 0,
  alpha: 5,
  scale: 30,
  fusion: "S1",
  beta: 1,
  gamma: 0,
  layer: 0,
  cls: true,
  distill: false,
  protect: 0,
  useAttention: true,
};

interface ReferenceResult {
  x: number[][];
  size: number[];
  sources: number[][];
  /** The original positions each output token stands for, ascending. */
  members: number[][];
  /** Smallest gap behind any decision (dst choice of a source, the cut in E). */
  margin: number;
}

/** Whether position i is protected: the class token, the distillation token, or below `protect`. */
function isProtected(i: number, cls: boolean, distill: boolean, protect = 0): boolean {
  return i < protect || (cls && i === 0) || (distill && i === 1);
}

function referenceCount(n: number, r: number, cls: boolean, distill: boolean, protect = 0): number {
  let sources = 0;
  let destinations = 0;
  for (let i = 0; i < n; i++) {
    if (isProtected(i, cls, distill, protect)) continue;
    if (i % 2 === 0) sources++;
    else destinations++;
  }
  if (destinations === 0) return 0;
  return Math.max(0, Math.min(r, Math.floor((sources + destinations) / 2), sources));
}

/** The rules of spec/turbo.md for one sample, in plain loops and Float64. */
function referenceMerge(sample: Sample, o: ReferenceOptions): ReferenceResult {
  const n = sample.x.length;
  const merged = referenceCount(n, o.r, o.cls, o.distill, o.protect);
  const guarded = (i: number) => isProtected(i, o.cls, o.distill, o.protect);
  if (merged === 0) {
    return {
      x: sample.x.map((row) => [...row]),
      size: [...sample.size],
      sources: sample.sources.map((row) => [...row]),
      members: sample.x.map((_, i) => [i]),
      margin: Infinity,
    };
  }
  const unit = sample.metric.map((row) => {
    const norm = Math.max(Math.sqrt(row.reduce((s, v) => s + v * v, 0)), 1e-12);
    return row.map((v) => v / norm);
  });
  const setA: number[] = [];
  const setB: number[] = [];
  for (let i = 0; i < n; i++) (i % 2 === 0 ? setA : setB).push(i);

  const redundancy: number[] = [];
  const destination: number[] = [];
  const destinationGap: number[] = [];
  for (const a of setA) {
    let best = -Infinity;
    let second = -Infinity;
    let bestIndex = -1;
    setB.forEach((b, j) => {
      if (guarded(b)) return;
      let dot = 0;
      for (let k = 0; k < unit[a].length; k++) dot += unit[a][k] * unit[b][k];
      if (dot > best) {
        second = best;
        best = dot;
        bestIndex = j;
      } else if (dot > second) {
        second = dot;
      }
    });
    redundancy.push(best);
    destination.push(bestIndex);
    destinationGap.push(best - second);
  }

  const degree = setA.map((a, i) => {
    const R = redundancy[i];
    if (!o.useAttention) return R;
    const I = sample.clsAttn[a];
    const c = o.scale;
    switch (o.fusion) {
      case "S1":
        return o.alpha === 0 ? R : R - o.alpha * c * I;
      case "S2":
        return R / (c * I + 1e-6);
      case "S3":
        return o.alpha === 0 ? R : R * (1 - o.alpha * c * I);
      case "S4":
        return o.alpha === 0 ? R : R - Math.pow(o.beta, Math.abs(o.gamma - o.layer)) * o.alpha * c * I;
    }
  });

  const candidates = setA.map((_, i) => i).filter((i) => !guarded(setA[i]));
  candidates.sort((p, q) => degree[q] - degree[p] || p - q);
  const sourceSet = new Set(candidates.slice(0, merged));

  let margin = Infinity;
  for (const i of sourceSet) margin = Math.min(margin, destinationGap[i]);
  if (merged < candidates.length) {
    const above = degree[candidates[merged - 1]];
    const below = degree[candidates[merged]];
    margin = Math.min(margin, (above - below) / Math.max(1, Math.abs(above), Math.abs(below)));
  }

  // Size-weighted average over each destination and its sources.
  const bSide = setB.map((b) => ({
    weighted: sample.x[b].map((v) => v * sample.size[b]),
    size: sample.size[b],
    sources: [...sample.sources[b]],
    members: [b],
  }));
  for (const i of sourceSet) {
    const a = setA[i];
    const target = bSide[destination[i]];
    target.weighted = target.weighted.map((v, k) => v + sample.x[a][k] * sample.size[a]);
    target.size += sample.size[a];
    target.sources = target.sources.map((v, k) => v + sample.sources[a][k]);
    target.members.push(a);
  }
  const keptSide = setA.filter((_, i) => !sourceSet.has(i)).map((a) => ({
    x: [...sample.x[a]],
    size: sample.size[a],
    sources: [...sample.sources[a]],
    members: [a],
  }));
  const mergedSide = bSide.map((t) => ({
    x: t.weighted.map((v) => v / t.size),
    size: t.size,
    sources: t.sources,
    members: t.members.sort((p, q) => p - q),
  }));
  // Kept A then B, with every protected token put back at its own position.
  const fixed = [...keptSide, ...mergedSide].filter((t) => guarded(t.members[0]!) && t.members.length === 1);
  const rest = [...keptSide, ...mergedSide].filter((t) => !fixed.includes(t));
  const ordered: typeof rest = [];
  for (const t of fixed.sort((p, q) => p.members[0]! - q.members[0]!)) {
    while (ordered.length < t.members[0]!) ordered.push(rest.shift()!);
    ordered.push(t);
  }
  ordered.push(...rest);
  return {
    x: ordered.map((t) => t.x),
    size: ordered.map((t) => t.size),
    sources: ordered.map((t) => t.sources),
    members: ordered.map((t) => t.members),
    margin,
  };
}

/** A sample whose reference decisions are clear of float32 rounding (margin ≥ 1e-4). */
function clearSample(seed: number, shape: SampleShape, o: ReferenceOptions): [Sample, ReferenceResult] {
  for (let attempt = 0; attempt < 200; attempt++) {
    const sample = makeSample(makeRandom(seed * 1009 + attempt), shape);
    const result = referenceMerge(sample, o);
    if (result.margin >= 1e-4) return [sample, result];
  }
  throw new Error(`No clear sample found for seed "${seed}"`);
}

function toOptions(o: ReferenceOptions): TurboMergeOptions {
  const { useAttention: _, ...options } = o;
  return options;
}

// --------------------------------------------------------------- compare

/** First index where `actual` and `expected` differ by more than tol·max(1, |expected|), or −1. */
function firstMismatch(actual: ArrayLike<number>, expected: number[], tol: number): number {
  if (actual.length !== expected.length) return 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i];
    if (!(Math.abs(actual[i] - e) <= tol * Math.max(1, Math.abs(e)))) return i;
  }
  return -1;
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

interface Case {
  b: number;
  n: number;
  width: number;
  metricWidth: number;
  r: number;
}

const SHAPES: Case[] = [
  { b: 1, n: 5, width: 3, metricWidth: 4, r: 2 },
  { b: 2, n: 8, width: 6, metricWidth: 5, r: 3 },
  { b: 3, n: 17, width: 7, metricWidth: 8, r: 5 },
  { b: 2, n: 17, width: 4, metricWidth: 6, r: 1 },
  { b: 3, n: 9, width: 5, metricWidth: 4, r: 100 }, // clamped
  { b: 2, n: 6, width: 3, metricWidth: 3, r: 0 },
  { b: 2, n: 197, width: 12, metricWidth: 16, r: 16 },
  { b: 1, n: 198, width: 8, metricWidth: 12, r: 40 },
  { b: 2, n: 8, width: 4, metricWidth: 4, r: 4 }, // nothing protected, even N, r = N/2: no A token is kept
];

const FLAGS = [
  { cls: true, distill: false, protect: 0 },
  { cls: false, distill: false, protect: 0 },
  { cls: true, distill: true, protect: 0 },
  { cls: false, distill: true, protect: 0 },
  { cls: false, distill: false, protect: 5 }, // class token and 4 register tokens
  { cls: true, distill: false, protect: 2 }, // class and distillation token, by count
];

function referenceCases(): { name: string; shape: Case; options: ReferenceOptions; unitSize: boolean }[] {
  const cases = [];
  let index = 0;
  for (const shape of SHAPES) {
    for (const fusion of FUSIONS) {
      for (const flags of FLAGS) {
        index++;
        const options: ReferenceOptions = {
          ...DEFAULTS,
          ...flags,
          r: shape.r,
          fusion,
          useAttention: index % 5 !== 0, // every fifth case: clsAttn null
          alpha: index % 7 === 0 ? 2 : 5,
          scale: index % 3 === 0 ? 100 : 30,
          ...(fusion === "S4" ? { beta: 0.5, gamma: 3, layer: 1 + (index % 2) } : {}),
        };
        const unitSize = index % 2 === 0;
        const name = `B=${shape.b} N=${shape.n} r=${shape.r} ${fusion} ` +
          `cls=${flags.cls} distill=${flags.distill} protect=${flags.protect} attn=${options.useAttention} ` +
          `alpha=${options.alpha} scale=${options.scale} unitSize=${unitSize}`;
        cases.push({ name, shape, options, unitSize });
      }
    }
  }
  return cases;
}

async function checkAgainstReference(backend: Backend, trackSources: boolean): Promise<number> {
  await useBackend(backend);
  let checked = 0;
  let seed = trackSources ? 5000 : 1;
  for (const { name, shape, options, unitSize } of referenceCases()) {
    const patches = trackSources ? 3 + (seed % 5) : undefined;
    const pairs = Array.from({ length: shape.b }, () =>
      clearSample(seed++, {
        n: shape.n,
        width: shape.width,
        metricWidth: shape.metricWidth,
        unitSize,
        patches,
      }, options));
    const samples = pairs.map(([s]) => s);
    const expected = pairs.map(([, e]) => e);
    const inputs = toTensors(samples);
    const out = turboMerge({
      x: inputs.x,
      metric: inputs.metric,
      size: inputs.size,
      clsAttn: options.useAttention ? inputs.clsAttn : null,
      ...(trackSources ? { sources: inputs.provenance } : {}),
    }, toOptions(options));
    const kept = shape.n - referenceCount(shape.n, shape.r, options.cls, options.distill, options.protect);
    assert.equal(out.x.shape, [shape.b, kept, shape.width], `${name}: x shape`);
    assert.equal(out.size.shape, [shape.b, kept, 1], `${name}: size shape`);
    assertClose(out.x.dataSync(), expected.flatMap((e) => e.x.flat()), 1e-5, `${name}: x`);
    assert.equal(Array.from(out.size.dataSync()), expected.flatMap((e) => e.size), `${name}: size`);
    if (trackSources) {
      assert.ok(out.sources, `${name}: sources returned`);
      const provenance = expected.flatMap((e) => e.sources.flat());
      assert.equal(values(out.sources), provenance, `${name}: sources`);
    } else {
      assert.is(out.sources, undefined, `${name}: no sources unless asked`);
    }
    tf.dispose([out.x, out.size, ...(out.sources ? [out.sources] : [])]);
    disposeAll(inputs);
    checked++;
  }
  return checked;
}

// ----------------------------------------------------------------- tests

for (const backend of BACKENDS) {
  test(`\`turboMerge()\` matches the plain-loop reference on ${backend}`, async () => {
    const checked = await checkAgainstReference(backend, false);
    assert.is(checked, SHAPES.length * FUSIONS.length * FLAGS.length);
  });

  test(`\`turboMerge()\` sums provenance like the reference on ${backend}`, async () => {
    const checked = await checkAgainstReference(backend, true);
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
