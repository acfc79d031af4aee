/**
 * The plain-loop reference of `turboMerge()` (spec/turbo.md's rules in
 * Float64 on JS arrays, no tfjs arithmetic), the seeded samples it is checked
 * on, and the conformance cases. Shared by the uvu test on cpu and wasm
 * (turbo_merge.test.ts) and by the Deno check on webgpu (test/deno/), so it
 * imports no test framework and nothing from `node:`, reads tensors only
 * asynchronously (WebGPU has no synchronous read) and reports a mismatch by
 * throwing.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Fusion, TurboMergeOptions } from "../../../runtime/kernels/turbo_merge.ts";
import { turboMerge } from "../../../runtime/kernels/turbo_merge.ts";

export const FUSIONS: Fusion[] = ["S1", "S2", "S3", "S4"];

// ------------------------------------------------------------------ data

/** xorshift32 with a splitmix-style seed scramble: floats in [0, 1). */
export function makeRandom(seed: number): () => number {
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
export interface Sample {
  x: number[][]; // [N][D]
  metric: number[][]; // [N][d]
  size: number[]; // [N]
  clsAttn: number[]; // [N]
  sources: number[][]; // [N][P]
}

export interface SampleShape {
  n: number;
  width: number;
  metricWidth: number;
  unitSize?: boolean;
  patches?: number; // P of the given provenance
}

export function makeSample(random: () => number, shape: SampleShape): Sample {
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

export interface InputTensors {
  x: tf.Tensor3D;
  metric: tf.Tensor3D;
  size: tf.Tensor3D;
  clsAttn: tf.Tensor2D;
  /** Not named `sources`, so that spreading these into `turboMerge()` tracks nothing. */
  provenance: tf.Tensor3D;
}

export function toTensors(samples: Sample[]): InputTensors {
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


/** `n` seeded samples of one shape, seeds `seed`, `seed + 1`, … */
export function samplesOf(count: number, seed: number, shape: SampleShape): Sample[] {
  return Array.from({ length: count }, (_, i) => makeSample(makeRandom(seed + i), shape));
}

export function disposeAll(tensors: InputTensors): void {
  tf.dispose(Object.values(tensors));
}

// ------------------------------------------------------------- reference

export interface ReferenceOptions {
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

export const DEFAULTS: ReferenceOptions = {
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

export interface ReferenceResult {
  x: number[][];
  size: number[];
  sources: number[][];
  /** The original positions each output token stands for, ascending. */
  members: number[][];
  /** Smallest gap behind any decision (dst choice of a source, the cut in E). */
  margin: number;
}

/** Whether position i is protected: the class token, the distillation token, or below `protect`. */
export function isProtected(i: number, cls: boolean, distill: boolean, protect = 0): boolean {
  return i < protect || (cls && i === 0) || (distill && i === 1);
}

export function referenceCount(n: number, r: number, cls: boolean, distill: boolean, protect = 0): number {
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
export function referenceMerge(sample: Sample, o: ReferenceOptions): ReferenceResult {
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
export function clearSample(seed: number, shape: SampleShape, o: ReferenceOptions): [Sample, ReferenceResult] {
  for (let attempt = 0; attempt < 200; attempt++) {
    const sample = makeSample(makeRandom(seed * 1009 + attempt), shape);
    const result = referenceMerge(sample, o);
    if (result.margin >= 1e-4) return [sample, result];
  }
  throw new Error(`No clear sample found for seed "${seed}"`);
}

export function toOptions(o: ReferenceOptions): TurboMergeOptions {
  const { useAttention: _, ...options } = o;
  return options;
}

// --------------------------------------------------------------- compare

/** First index where `actual` and `expected` differ by more than tol·max(1, |expected|), or −1. */
export function firstMismatch(actual: ArrayLike<number>, expected: number[], tol: number): number {
  if (actual.length !== expected.length) return 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i];
    if (!(Math.abs(actual[i] - e) <= tol * Math.max(1, Math.abs(e)))) return i;
  }
  return -1;
}


export interface Case {
  b: number;
  n: number;
  width: number;
  metricWidth: number;
  r: number;
}

export const SHAPES: Case[] = [
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

export const FLAGS = [
  { cls: true, distill: false, protect: 0 },
  { cls: false, distill: false, protect: 0 },
  { cls: true, distill: true, protect: 0 },
  { cls: false, distill: true, protect: 0 },
  { cls: false, distill: false, protect: 5 }, // class token and 4 register tokens
  { cls: true, distill: false, protect: 2 }, // class and distillation token, by count
];

export function referenceCases(): { name: string; shape: Case; options: ReferenceOptions; unitSize: boolean }[] {
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

function same(actual: ArrayLike<number>, expected: number[], what: string): void {
  const at = firstMismatch(actual, expected, 0);
  if (at !== -1) throw new Error(`${what}: length ${actual.length} vs ${expected.length}, first difference at ${at}: ${actual[at]} vs ${expected[at]}`);
}

function close(actual: ArrayLike<number>, expected: number[], tol: number, what: string): void {
  const at = firstMismatch(actual, expected, tol);
  if (at !== -1) throw new Error(`${what}: length ${actual.length} vs ${expected.length}, first difference at ${at}: ${actual[at]} vs ${expected[at]}`);
}

function sameShape(actual: readonly number[], expected: number[], what: string): void {
  if (actual.join(",") !== expected.join(",")) throw new Error(`${what}: shape [${actual}] but the reference has [${expected}]`);
}

/**
 * Runs every reference case through `turboMerge()` on the current backend and
 * compares x (within 1e-5), sizes and (with `trackSources`) provenance exactly.
 * Throws at the first mismatch; returns the number of cases checked. No tensor
 * outlives a case.
 */
export async function checkAgainstReference(trackSources: boolean): Promise<number> {
  let checked = 0;
  let seed = trackSources ? 5000 : 1;
  for (const { name, shape, options, unitSize } of referenceCases()) {
    const patches = trackSources ? 3 + (seed % 5) : undefined;
    const pairs = Array.from({ length: shape.b }, () =>
      clearSample(seed++, { n: shape.n, width: shape.width, metricWidth: shape.metricWidth, unitSize, patches }, options));
    const expected = pairs.map(([, e]) => e);
    const inputs = toTensors(pairs.map(([s]) => s));
    const out = turboMerge({
      x: inputs.x,
      metric: inputs.metric,
      size: inputs.size,
      clsAttn: options.useAttention ? inputs.clsAttn : null,
      ...(trackSources ? { sources: inputs.provenance } : {}),
    }, toOptions(options));
    try {
      const kept = shape.n - referenceCount(shape.n, shape.r, options.cls, options.distill, options.protect);
      sameShape(out.x.shape, [shape.b, kept, shape.width], `${name}: x`);
      sameShape(out.size.shape, [shape.b, kept, 1], `${name}: size`);
      close(await out.x.data(), expected.flatMap((e) => e.x.flat()), 1e-5, `${name}: x`);
      same(await out.size.data(), expected.flatMap((e) => e.size), `${name}: size`);
      if (trackSources) {
        if (out.sources === undefined) throw new Error(`${name}: no sources returned`);
        same(await out.sources.data(), expected.flatMap((e) => e.sources.flat()), `${name}: sources`);
      } else if (out.sources !== undefined) {
        throw new Error(`${name}: sources returned though none were asked for`);
      }
    } finally {
      tf.dispose([out.x, out.size, ...(out.sources ? [out.sources] : [])]);
      disposeAll(inputs);
    }
    checked++;
  }
  return checked;
}
