/**
 * Checks the hand-written eager tfjs ViT against an independent plain-JS
 * (Float64Array loops, no tfjs) forward pass of the same math.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import type { VitConfig } from "../../examples/vit/config.ts";
import { vitConfigs, vitParams } from "../../examples/vit/config.ts";
import { eagerVit } from "../../examples/vit/eager.ts";

tf.env().set("PROD", true);
await tf.setBackend("cpu");

// ---------------------------------------------------------------- helpers

/** mulberry32: small deterministic PRNG returning floats in [0, 1). */
function makeRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Weights = Map<string, Float64Array>;

/**
 * Seeded weights, stored as float32-rounded float64 so that the tfjs float32
 * tensors and the float64 reference see identical values.
 */
function makeWeights(config: VitConfig, seed: number): Weights {
  const rng = makeRng(seed);
  const uni = (a: number) => (2 * rng() - 1) * a;
  const w: Weights = new Map();
  for (const { name, shape } of vitParams(config)) {
    const size = shape.reduce((x, y) => x * y, 1);
    const arr = new Float64Array(size);
    for (let i = 0; i < size; i++) {
      let v: number;
      if (/\.(ln1|ln2)\.weight$|^norm\.weight$/.test(name)) v = 1 + uni(0.2);
      else if (name === "embeddings.cls" || name === "embeddings.pos") v = uni(0.5);
      else if (name.endsWith(".bias")) v = uni(0.1);
      else v = uni(Math.sqrt(3 / shape[0]!)); // [in, out]: variance 1/in
      arr[i] = Math.fround(v);
    }
    w.set(name, arr);
  }
  return w;
}

function makePixels(config: VitConfig, batch: number, seed: number): Float64Array {
  const rng = makeRng(seed);
  const n = batch * config.channels * config.image * config.image;
  const px = new Float64Array(n);
  for (let i = 0; i < n; i++) px[i] = Math.fround(rng() * 2 - 1);
  return px;
}

function toTensors(config: VitConfig, weights: Weights): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const { name, shape } of vitParams(config)) {
    out.set(name, tf.tensor(Float32Array.from(weights.get(name)!), shape, "float32"));
  }
  return out;
}

/** erf in float64: Maclaurin series for |x| < 3, continued fraction for erfc beyond. */
function erf(x: number): number {
  const ax = Math.abs(x);
  let r: number;
  if (ax < 3) {
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc(x) = exp(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
    let f = ax;
    for (let k = 200; k >= 1; k--) f = ax + k / 2 / f;
    r = 1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  }
  return x < 0 ? -r : r;
}

// ------------------------------------------------- plain-JS reference ViT

function referenceVit(config: VitConfig, w: Weights, pixels: Float64Array, B: number): Float64Array {
  const { image, patch: p, channels: C, dim: D, depth, heads, mlpRatio, classes: K, eps } = config;
  const G = image / p;
  const N = G * G;
  const T = N + 1;
  const P = C * p * p;
  const Hd = D * mlpRatio;
  const dh = D / heads;
  const get = (name: string): Float64Array => {
    const a = w.get(name);
    if (!a) throw new Error(`reference: missing ${name}`);
    return a;
  };

  // rows x [R, din] -> [R, dout], W is [din, dout] row-major.
  const linear = (x: Float64Array, R: number, din: number, dout: number, prefix: string): Float64Array => {
    const W = get(`${prefix}.weight`);
    const b = get(`${prefix}.bias`);
    const y = new Float64Array(R * dout);
    for (let r = 0; r < R; r++) {
      for (let o = 0; o < dout; o++) {
        let s = b[o]!;
        for (let i = 0; i < din; i++) s += x[r * din + i]! * W[i * dout + o]!;
        y[r * dout + o] = s;
      }
    }
    return y;
  };

  const layerNorm = (x: Float64Array, R: number, prefix: string): Float64Array => {
    const g = get(`${prefix}.weight`);
    const b = get(`${prefix}.bias`);
    const y = new Float64Array(R * D);
    for (let r = 0; r < R; r++) {
      let mean = 0;
      for (let d = 0; d < D; d++) mean += x[r * D + d]!;
      mean /= D;
      let v = 0;
      for (let d = 0; d < D; d++) v += (x[r * D + d]! - mean) ** 2;
      v /= D;
      const inv = 1 / Math.sqrt(v + eps);
      for (let d = 0; d < D; d++) y[r * D + d] = (x[r * D + d]! - mean) * inv * g[d]! + b[d]!;
    }
    return y;
  };

  // 1. patches [B*N, P]
  const patches = new Float64Array(B * N * P);
  for (let b = 0; b < B; b++)
    for (let gy = 0; gy < G; gy++)
      for (let gx = 0; gx < G; gx++)
        for (let c = 0; c < C; c++)
          for (let i = 0; i < p; i++)
            for (let j = 0; j < p; j++) {
              const tok = gy * G + gx;
              const feat = c * p * p + i * p + j;
              const pix = ((b * C + c) * image + gy * p + i) * image + gx * p + j;
              patches[(b * N + tok) * P + feat] = pixels[pix]!;
            }
  const emb = linear(patches, B * N, P, D, "embeddings.patch");

  // 2. class token + positions -> x [B*T, D]
  const cls = get("embeddings.cls");
  const pos = get("embeddings.pos");
  let x = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++)
      for (let d = 0; d < D; d++) {
        const base = t === 0 ? cls[d]! : emb[(b * N + t - 1) * D + d]!;
        x[(b * T + t) * D + d] = base + pos[t * D + d]!;
      }

  // 3. blocks
  const R = B * T;
  for (let n = 0; n < depth; n++) {
    const l = `layer.${n}`;
    const h = layerNorm(x, R, `${l}.ln1`);
    const q = linear(h, R, D, D, `${l}.attn.q`);
    const k = linear(h, R, D, D, `${l}.attn.k`);
    const v = linear(h, R, D, D, `${l}.attn.v`);
    const o = new Float64Array(R * D);
    const logits = new Float64Array(T);
    for (let b = 0; b < B; b++)
      for (let hd = 0; hd < heads; hd++)
        for (let t1 = 0; t1 < T; t1++) {
          let max = -Infinity;
          for (let t2 = 0; t2 < T; t2++) {
            let s = 0;
            for (let e = 0; e < dh; e++) s += q[(b * T + t1) * D + hd * dh + e]! * k[(b * T + t2) * D + hd * dh + e]!;
            s /= Math.sqrt(dh);
            logits[t2] = s;
            if (s > max) max = s;
          }
          let z = 0;
          for (let t2 = 0; t2 < T; t2++) {
            logits[t2] = Math.exp(logits[t2]! - max);
            z += logits[t2]!;
          }
          for (let e = 0; e < dh; e++) {
            let s = 0;
            for (let t2 = 0; t2 < T; t2++) s += (logits[t2]! / z) * v[(b * T + t2) * D + hd * dh + e]!;
            o[(b * T + t1) * D + hd * dh + e] = s;
          }
        }
    const attn = linear(o, R, D, D, `${l}.attn.out`);
    const x1 = new Float64Array(R * D);
    for (let i = 0; i < R * D; i++) x1[i] = x[i]! + attn[i]!;

    const f1 = linear(layerNorm(x1, R, `${l}.ln2`), R, D, Hd, `${l}.mlp.fc1`);
    for (let i = 0; i < f1.length; i++) f1[i] = 0.5 * f1[i]! * (1 + erf(f1[i]! / Math.SQRT2));
    const f2 = linear(f1, R, Hd, D, `${l}.mlp.fc2`);
    const x2 = new Float64Array(R * D);
    for (let i = 0; i < R * D; i++) x2[i] = x1[i]! + f2[i]!;
    x = x2;
  }

  // 4. final norm, class token, head
  const normed = layerNorm(x, R, "norm");
  const clsRows = new Float64Array(B * D);
  for (let b = 0; b < B; b++) for (let d = 0; d < D; d++) clsRows[b * D + d] = normed[b * T * D + d]!;
  return linear(clsRows, B, D, K, "head");
}

/** Max over elements of |a − r| / max(|r|, 1e-3 · max|r|). */
function maxRelErr(actual: ArrayLike<number>, ref: ArrayLike<number>): number {
  assert.is(actual.length, ref.length, "length mismatch");
  let scale = 0;
  for (let i = 0; i < ref.length; i++) scale = Math.max(scale, Math.abs(ref[i]!));
  assert.ok(scale > 0, "reference output is all zeros");
  const floor = 1e-3 * scale;
  let err = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(actual[i]! - ref[i]!) / Math.max(Math.abs(ref[i]!), floor);
    if (!(e <= err)) err = e; // NaN propagates as failure
  }
  return err;
}

// ------------------------------------------------------------------ setup

const cfg = vitConfigs.tiny;
const BATCH = 2;
const weights = makeWeights(cfg, 0x5eed1);
const pixelData = makePixels(cfg, BATCH, 0xc0ffee);
const params = toTensors(cfg, weights);
const pixels = tf.tensor4d(Float32Array.from(pixelData), [BATCH, cfg.channels, cfg.image, cfg.image]);
const reference = referenceVit(cfg, weights, pixelData, BATCH);

// ------------------------------------------------------------------ tests

test("reference erf matches known values", () => {
  const cases: Array<[number, number]> = [
    [0, 0],
    [0.5, 0.5204998778130465],
    [1, 0.8427007929497149],
    [-2, -0.9953222650189527],
    [2.9, 0.9999589021219005],
    [3, 0.9999779095030014],
    [4.5, 0.9999999998033839],
  ];
  for (const [x, want] of cases) {
    assert.ok(Math.abs(erf(x) - want) < 1e-13, `erf(${x}) = ${erf(x)}, want ${want}`);
  }
});

test("vitParams lists the contract", () => {
  const list = vitParams(cfg);
  assert.is(list.length, 4 + 16 * cfg.depth + 4);
  assert.is(new Set(list.map((p) => p.name)).size, list.length, "duplicate parameter names");
  const byName = new Map(list.map((p) => [p.name, p.shape]));
  assert.equal(byName.get("embeddings.patch.weight"), [3 * 8 * 8, 64]);
  assert.equal(byName.get("embeddings.pos"), [17, 64]);
  assert.equal(byName.get("layer.1.attn.out.weight"), [64, 64]);
  assert.equal(byName.get("layer.0.mlp.fc1.weight"), [64, 256]);
  assert.equal(byName.get("layer.0.mlp.fc2.weight"), [256, 64]);
  assert.equal(byName.get("head.weight"), [64, 10]);
  assert.is(list[0]!.name, "embeddings.patch.weight");
  assert.is(list[list.length - 1]!.name, "head.bias");
  // ViT-B/16 with a 1000-way head has 86,567,656 parameters.
  const count = vitParams(vitConfigs.b16).reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
  assert.is(count, 86_567_656);
});

test("eager ViT matches the plain-JS reference (tiny, batch 2)", async () => {
  const out = eagerVit(cfg, params, pixels);
  try {
    assert.equal(out.shape, [BATCH, cfg.classes]);
    assert.is(out.dtype, "float32");
    const got = await out.data();
    const err = maxRelErr(got, reference);
    assert.ok(err < 1e-4, `max relative error ${err.toExponential(3)} >= 1e-4`);
    // Non-degenerate: the two images give different logits.
    let diff = 0;
    for (let k = 0; k < cfg.classes; k++) diff = Math.max(diff, Math.abs(reference[k]! - reference[cfg.classes + k]!));
    assert.ok(diff > 1e-2, `batch rows nearly identical (max diff ${diff})`);
  } finally {
    out.dispose();
  }
});

test("the comparison detects a small parameter change", async () => {
  // Perturb one patch-embedding weight in the tfjs copy only; the reference must disagree.
  const name = "embeddings.patch.weight";
  const data = Float32Array.from(weights.get(name)!);
  data[5 * cfg.dim + 7] = data[5 * cfg.dim + 7]! + 0.05;
  const perturbed = new Map(params);
  const changed = tf.tensor(data, params.get(name)!.shape, "float32");
  perturbed.set(name, changed);
  const out = eagerVit(cfg, perturbed, pixels);
  try {
    const err = maxRelErr(await out.data(), reference);
    assert.ok(err > 1e-3, `perturbed model still within tolerance (err ${err})`);
  } finally {
    out.dispose();
    changed.dispose();
  }
});

test("only the output tensor survives a call", () => {
  tf.dispose(eagerVit(cfg, params, pixels)); // warm-up
  const before = tf.memory().numTensors;
  const a = eagerVit(cfg, params, pixels);
  assert.is(tf.memory().numTensors, before + 1, "first call leaked tensors");
  const b = eagerVit(cfg, params, pixels);
  assert.is(tf.memory().numTensors, before + 2, "second call leaked tensors");
  a.dispose();
  b.dispose();
  assert.is(tf.memory().numTensors, before);
});

test("bad inputs are rejected without leaking", () => {
  const before = tf.memory().numTensors;
  const missing = new Map(params);
  missing.delete("layer.1.mlp.fc2.bias");
  assert.throws(() => eagerVit(cfg, missing, pixels), /layer\.1\.mlp\.fc2\.bias/);
  const wrong = tf.zeros([BATCH, cfg.channels, cfg.image, cfg.image + 8]) as tf.Tensor4D;
  assert.throws(() => eagerVit(cfg, params, wrong), /expected pixels/);
  wrong.dispose();
  assert.is(tf.memory().numTensors, before);
});

test.run();
