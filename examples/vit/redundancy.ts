/**
 * The redundancy analysis of the Turbo paper (§3.3, its Figure 3) for the
 * eager ViT: per encoder block, averaged over images,
 *
 * - token redundancy S = mean over pairs i < j of cos(x_i, x_j), over all n
 *   tokens of the block's output (class token included);
 * - attention concentration C = the share of the class token's attention
 *   (its row of the attention probabilities, averaged over heads) held by
 *   its top ⌊n/4⌋ keys.
 *
 * Both come from `eagerVit`'s per-block observer, so the forward pass is the
 * eager oracle's own math.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { VitConfig } from "./config.ts";
import { eagerVit, type EagerTurbo } from "./eager.ts";

/**
 * S per sample for tokens [B, n, D]. With unit vectors u_i, Σ_{i<j} u_i·u_j =
 * (‖Σ u_i‖² − n) / 2, so no n×n matrix is needed. An all-zero token counts as
 * cosine 0 with every other.
 */
export function tokenRedundancy(x: tf.Tensor3D): tf.Tensor1D {
  return tf.tidy(() => {
    const n = x.shape[1];
    if (n < 2) throw new Error(`tokenRedundancy: need at least 2 tokens, got ${n}`);
    const norm = tf.maximum(tf.norm(x, "euclidean", -1, true), 1e-12);
    const u = tf.div(x, norm);
    const sum = tf.sum(u, 1); // [B, D]
    const self = tf.sum(tf.square(u), [1, 2]); // n, or fewer for zero tokens
    return tf.div(tf.sub(tf.sum(tf.square(sum), -1), self), n * (n - 1)) as tf.Tensor1D;
  });
}

/** C per sample for attention probabilities [B, heads, n, n]: top ⌊n/4⌋ share of the class row. */
export function attentionConcentration(probs: tf.Tensor4D): tf.Tensor1D {
  return tf.tidy(() => {
    const [B, heads, n] = probs.shape;
    const k = Math.floor(n / 4);
    if (k < 1) throw new Error(`attentionConcentration: need at least 4 tokens, got ${n}`);
    const row = tf.mean(tf.reshape(tf.slice(probs, [0, 0, 0, 0], [B, heads, 1, n]), [B, heads, n]), 1) as tf.Tensor2D;
    const top = tf.topk(row, k, false).values;
    return tf.div(tf.sum(top, -1), tf.sum(row, -1)) as tf.Tensor1D;
  });
}

export interface RedundancyProfile {
  /** Per block (0-based index), the mean of S and of C over the images. */
  blocks: Array<{ block: number; tokens: number; S: number; C: number }>;
  images: number;
}

/**
 * Runs `images` ([count, C, H, W] flat) through `eagerVit` in batches and
 * averages S and C per block. `onBatch` reports progress (images done).
 */
export function redundancyProfile(
  config: VitConfig,
  params: Map<string, tf.Tensor>,
  images: Float32Array,
  count: number,
  options: { batch?: number; turbo?: EagerTurbo; onBatch?: (done: number) => void } = {},
): RedundancyProfile {
  const batch = options.batch ?? 64;
  const per = config.channels * config.image * config.image;
  const sums = Array.from({ length: config.depth }, () => ({ S: 0, C: 0, tokens: 0 }));
  for (let start = 0; start < count; start += batch) {
    const b = Math.min(batch, count - start);
    const pixels = tf.tensor4d(images.subarray(start * per, (start + b) * per), [b, config.channels, config.image, config.image]);
    const logits = eagerVit(config, params, pixels, options.turbo, ({ block, x, probs }) => {
      const s = tokenRedundancy(x).dataSync();
      const c = attentionConcentration(probs).dataSync();
      for (let i = 0; i < b; i++) {
        sums[block]!.S += s[i]!;
        sums[block]!.C += c[i]!;
      }
      sums[block]!.tokens = x.shape[1];
    });
    tf.dispose([pixels, logits]);
    options.onBatch?.(start + b);
  }
  return {
    blocks: sums.map((s, block) => ({ block, tokens: s.tokens, S: s.S / count, C: s.C / count })),
    images: count,
  };
}
