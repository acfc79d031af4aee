/**
 * The VQA model written by hand in tfjs: the training forward pass
 * (train.ts) and the independent reference the compiled program is tested
 * against, with Turbo's merge written out the way a user would add it
 * (test/examples/vqa.test.ts).
 *
 * The embedding is a one-hot matrix product here (tfjs-core registers no
 * gradient for gather, and the product gives the same rows exactly), so the
 * compiled `gather` is checked against other arithmetic.
 */

import * as tf from "@tensorflow/tfjs-core";
import { turboMerge, type Fusion } from "../../runtime/kernels/turbo_merge.ts";
import { ANSWERS, QUESTION_LENGTH, vocabulary, vqaDims, type VqaConfig } from "./config.ts";

export interface EagerVqaTurbo {
  r: number;
  alpha?: number;
  scale?: number;
  fusion?: Fusion;
  /** The position whose attention row (over heads) is the semantic value (default 0, the text class token). */
  semanticToken?: number;
}

/** What the observer sees after each block (inside the pass's tidy). */
export interface EagerVqaBlock {
  block: number;
  /** The attention probabilities of the block [B, heads, t, t], before its merge. */
  probs: tf.Tensor4D;
  /** The block's keys averaged over heads [B, t, d_h] (the merge metric), before its merge. */
  metric: tf.Tensor3D;
  /** Tokens after the block. */
  tokens: number;
}

/**
 * Answer logits [B, 19] for question ids [B, 5] (int32) and pixels
 * [B, 1, 28, 56]; every intermediate is disposed.
 */
export function eagerVqa(c: VqaConfig, params: ReadonlyMap<string, tf.Tensor>, question: tf.Tensor2D, pixels: tf.Tensor4D, turbo?: EagerVqaTurbo, observe?: (s: EagerVqaBlock) => void): tf.Tensor2D {
  const { gridH, gridW, patches: P, textTokens, patchDim, headDim: dh, hidden: H } = vqaDims(c);
  const { dim: D, heads, patch: p } = c;
  const B = pixels.shape[0];
  if (question.shape[0] !== B || question.shape[1] !== QUESTION_LENGTH) throw new Error(`eagerVqa: question [${question.shape}] does not match ${B} images of ${QUESTION_LENGTH} words`);
  const get = (name: string): tf.Tensor => {
    const t = params.get(name);
    if (t === undefined) throw new Error(`eagerVqa: missing parameter ${name}`);
    return t;
  };
  const dense = (x: tf.Tensor3D, prefix: string, dout: number): tf.Tensor3D => {
    const [b, s, din] = x.shape;
    return tf.reshape(tf.add(tf.matMul(tf.reshape(x, [b * s, din]), get(`${prefix}.weight`) as tf.Tensor2D), get(`${prefix}.bias`)), [b, s, dout]);
  };
  const layerNorm = (x: tf.Tensor3D, prefix: string): tf.Tensor3D => {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, c.eps))), get(`${prefix}.weight`)), get(`${prefix}.bias`));
  };
  const gelu = (x: tf.Tensor3D): tf.Tensor3D => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
  const split = (x: tf.Tensor3D): tf.Tensor3D => {
    const t = x.shape[1];
    return tf.reshape(tf.transpose(tf.reshape(x, [B, t, heads, dh]), [0, 2, 1, 3]), [B * heads, t, dh]);
  };
  const join = (x: tf.Tensor3D): tf.Tensor3D => {
    const t = x.shape[1];
    return tf.reshape(tf.transpose(tf.reshape(x, [B, heads, t, dh]), [0, 2, 1, 3]), [B, t, D]);
  };
  const token = (name: string) => tf.tile(tf.reshape(get(name), [1, 1, D]), [B, 1, 1]);

  return tf.tidy(() => {
    const onehot = tf.reshape(tf.oneHot(tf.reshape(question, [-1]) as tf.Tensor1D, vocabulary.length), [B * QUESTION_LENGTH, vocabulary.length]);
    const words = tf.reshape(tf.matMul(onehot, get("text.embeddings.words.weight") as tf.Tensor2D), [B, QUESTION_LENGTH, D]);
    const text = tf.add(tf.concat([token("text.embeddings.cls"), words], 1), get("text.embeddings.pos"));
    const grid = tf.reshape(tf.transpose(tf.reshape(pixels, [B, 1, gridH, p, gridW, p]), [0, 2, 4, 1, 3, 5]), [B, P, patchDim]) as tf.Tensor3D;
    const image = tf.add(tf.concat([token("image.embeddings.cls"), dense(grid, "image.embeddings.patch", D)], 1), get("image.embeddings.pos"));
    let x = tf.concat([text, image], 1) as tf.Tensor3D;
    let size: tf.Tensor3D | undefined;
    let merges = 0;
    for (let n = 0; n < c.depth; n++) {
      const l = `layer.${n}`;
      const t = x.shape[1];
      const h = layerNorm(x, `${l}.ln1`);
      const kFlat = dense(h, `${l}.attn.k`, D);
      let logits = tf.mul(tf.matMul(split(dense(h, `${l}.attn.q`, D)), split(kFlat), false, true), 1 / Math.sqrt(dh));
      if (size !== undefined) logits = tf.reshape(tf.add(tf.reshape(logits, [B, heads, t, t]), tf.reshape(tf.log(size), [B, 1, 1, t])), [B * heads, t, t]);
      const probs = tf.softmax(logits, -1);
      x = tf.add(x, dense(join(tf.matMul(probs, split(dense(h, `${l}.attn.v`, D)))), `${l}.attn.out`, D));
      const probs4 = tf.reshape(probs, [B, heads, t, t]) as tf.Tensor4D;
      if (turbo !== undefined) {
        const protect = textTokens + 1;
        const r = Math.min(turbo.r, Math.floor((t - protect) / 2));
        if (r > 0) {
          const alpha = turbo.alpha ?? 5;
          const row = turbo.semanticToken ?? 0;
          const clsAttn = tf.mean(tf.reshape(tf.slice(probs4, [0, 0, row, 0], [B, heads, 1, t]), [B, heads, t]), 1) as tf.Tensor2D;
          const metric = tf.mean(tf.reshape(kFlat, [B, t, heads, dh]), 2) as tf.Tensor3D;
          const merged = turboMerge(
            { x, metric, size: size ?? (tf.ones([B, t, 1]) as tf.Tensor3D), clsAttn: alpha === 0 ? null : clsAttn },
            { r, alpha, scale: turbo.scale ?? 30, fusion: turbo.fusion ?? "S1", layer: merges, cls: true, protect },
          );
          merges++;
          x = merged.x;
          size = merged.size;
        }
      }
      x = tf.add(x, dense(gelu(dense(layerNorm(x, `${l}.ln2`), `${l}.mlp.fc1`, H)), `${l}.mlp.fc2`, D));
      if (observe !== undefined) observe({ block: n, probs: probs4, metric: tf.mean(tf.reshape(kFlat, [B, t, heads, dh]), 2) as tf.Tensor3D, tokens: x.shape[1] });
    }
    const cls = tf.reshape(tf.slice(layerNorm(x, "norm"), [0, 0, 0], [B, 1, D]), [B, D]);
    return tf.add(tf.matMul(cls, get("head.weight") as tf.Tensor2D), get("head.bias")) as tf.Tensor2D;
  });
}

export { ANSWERS };
