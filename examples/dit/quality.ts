/**
 * Image quality without outside models, for examples/dit: the MNIST ViT
 * trained here (examples/vit/weights/mnist_vit.safetensors, 97.1 % test
 * accuracy) scores generated digits.
 *
 * - Conditional accuracy: the share of digits generated for class k that the
 *   classifier labels k.
 * - Fréchet distance (FID-style): between Gaussians fitted to the
 *   classifier's final features of generated digits and of the test digits,
 *   ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½). The feature layer is the
 *   class token after the final layer norm, the head's input: 32 values per
 *   image. The distance depends on the sample count (its bias shrinks as
 *   1/n), so every method is scored on the same number of samples.
 *
 * The scorer is the ViT spec compiled here with the features as a second
 * output, run by the runtime on wasm with the trained weights.
 */

import * as tf from "@tensorflow/tfjs-core";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { compile } from "../../compiler/compile.ts";
import { clsToken, encoderBlock, input, layerNorm, linear, model, patchEmbed } from "../../compiler/dsl/mod.ts";
import { loadModule, type Model } from "../../runtime/mod.ts";
import { vitConfigs } from "../vit/config.ts";
import { argmaxRows } from "../vit/stats.ts";

const cfg = vitConfigs.mnist;
export const SCORER_WEIGHTS = "examples/vit/weights/mnist_vit.safetensors";
/** The feature width: the MNIST ViT's model width. */
export const FEATURES = cfg.dim;

/** examples/vit/vit.ts's MNIST ViT, also returning the head's input as `features`. */
const scorerSpec = model("mnist-vit-scorer", () => {
  const pixels = input("pixels", ["B", cfg.channels, cfg.image, cfg.image]);
  let x = patchEmbed(pixels, { patch: cfg.patch, dim: cfg.dim, name: "embeddings" });
  for (let i = 0; i < cfg.depth; i++) x = encoderBlock(x, { heads: cfg.heads, mlpRatio: cfg.mlpRatio, eps: cfg.eps, name: `layer.${i}` });
  const features = clsToken(layerNorm(x, { eps: cfg.eps, name: "norm" }));
  return { logits: linear(features, cfg.classes, { name: "head" }), features };
});

export interface Scorer {
  /** Predicted class and features of n images [n·784] with pixels in [0, 1]. */
  score(images: Float32Array, n: number, batch?: number): { predictions: number[]; features: Float64Array };
  dispose(): void;
}

/** Compiles the scorer into `dir` and loads it with the trained ViT weights. */
export async function loadScorer(dir: string, weights = SCORER_WEIGHTS): Promise<Scorer> {
  const compiled = compile(scorerSpec, { source: "examples/dit/quality.ts" });
  const file = join(dir, "scorer.mjs");
  writeFileSync(file, compiled.module.js);
  const m: Model = await loadModule(await import(pathToFileURL(file).href), { weights: { safetensors: new Uint8Array(readFileSync(weights)), source: weights }, backend: "wasm" });
  return {
    score(images, n, batch = 100) {
      const predictions: number[] = [];
      const features = new Float64Array(n * FEATURES);
      for (let start = 0; start < n; start += batch) {
        const count = Math.min(batch, n - start);
        const x = tf.tensor4d(images.subarray(start * 784, (start + count) * 784), [count, 1, 28, 28]);
        const out = m.run({ pixels: x });
        predictions.push(...argmaxRows(out.logits!.dataSync() as Float32Array, cfg.classes));
        features.set(out.features!.dataSync() as Float32Array, start * FEATURES);
        tf.dispose([x, out.logits!, out.features!]);
      }
      return { predictions, features };
    },
    dispose: () => m.dispose(),
  };
}

/** Mean and covariance (divisor n − 1) of n rows of d features. */
export function gaussian(features: Float64Array, d: number): { mean: Float64Array; cov: Float64Array } {
  const n = features.length / d;
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j]! += features[i * d + j]! / n;
  const cov = new Float64Array(d * d);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < d; a++) {
      const da = features[i * d + a]! - mean[a]!;
      for (let b = a; b < d; b++) cov[a * d + b]! += (da * (features[i * d + b]! - mean[b]!)) / (n - 1);
    }
  }
  for (let a = 0; a < d; a++) for (let b = 0; b < a; b++) cov[a * d + b] = cov[b * d + a]!;
  return { mean, cov };
}

/** Eigenvalues and eigenvectors (columns of `vectors`) of a symmetric d×d matrix, by cyclic Jacobi rotations. */
export function symmetricEigen(m: Float64Array, d: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(m);
  const v = new Float64Array(d * d);
  for (let i = 0; i < d; i++) v[i * d + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < d; p++) for (let q = p + 1; q < d; q++) off += a[p * d + q]! ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < d; p++) {
      for (let q = p + 1; q < d; q++) {
        const apq = a[p * d + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * d + q]! - a[p * d + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < d; k++) {
          const akp = a[k * d + p]!;
          const akq = a[k * d + q]!;
          a[k * d + p] = c * akp - s * akq;
          a[k * d + q] = s * akp + c * akq;
        }
        for (let k = 0; k < d; k++) {
          const apk = a[p * d + k]!;
          const aqk = a[q * d + k]!;
          a[p * d + k] = c * apk - s * aqk;
          a[q * d + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < d; k++) {
          const vkp = v[k * d + p]!;
          const vkq = v[k * d + q]!;
          v[k * d + p] = c * vkp - s * vkq;
          v[k * d + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  return { values: Float64Array.from({ length: d }, (_, i) => a[i * d + i]!), vectors: v };
}

const matmul = (x: Float64Array, y: Float64Array, d: number): Float64Array => {
  const out = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let k = 0; k < d; k++) {
    const xik = x[i * d + k]!;
    for (let j = 0; j < d; j++) out[i * d + j]! += xik * y[k * d + j]!;
  }
  return out;
};

/** The Fréchet distance between two Gaussians (see the module comment). */
export function frechetDistance(p: { mean: Float64Array; cov: Float64Array }, q: { mean: Float64Array; cov: Float64Array }, d: number): number {
  let meanTerm = 0;
  for (let j = 0; j < d; j++) meanTerm += (p.mean[j]! - q.mean[j]!) ** 2;
  // Σ₁^½ from Σ₁'s eigen-decomposition (negative rounding noise clipped to 0).
  const e = symmetricEigen(p.cov, d);
  const root = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += e.vectors[i * d + k]! * Math.sqrt(Math.max(0, e.values[k]!)) * e.vectors[j * d + k]!;
    root[i * d + j] = s;
  }
  const inner = matmul(matmul(root, q.cov, d), root, d);
  const cross = symmetricEigen(inner, d).values.reduce((a, v) => a + Math.sqrt(Math.max(0, v)), 0);
  let trace = 0;
  for (let j = 0; j < d; j++) trace += p.cov[j * d + j]! + q.cov[j * d + j]!;
  return meanTerm + trace - 2 * cross;
}
