/**
 * The VQA models written by hand in tfjs, single-stream (`eagerVqa`) and
 * dual-stream (`eagerVqaDual`): the training forward pass (train.ts) and the
 * independent reference the compiled program is tested against, with
 * Turbo's merge written out the way a user would add it
 * (test/examples/vqa.test.ts, vqa_dual.test.ts).
 *
 * The embedding is a one-hot matrix product here (tfjs-core registers no
 * gradient for gather, and the product gives the same rows exactly), so the
 * compiled `gather` is checked against other arithmetic.
 */

import * as tf from "@tensorflow/tfjs-core";
import { turboMerge, type Fusion } from "../../runtime/kernels/turbo_merge.ts";
import { ANSWERS, QUESTION_LENGTH, vocabulary, vqaDims, type VqaConfig, type VqaDualConfig } from "./config.ts";

export interface EagerVqaTurbo {
  r: number;
  alpha?: number;
  scale?: number;
  fusion?: Fusion;
  /** The position whose attention row (over heads) is the semantic value (default 0, the text class token). */
  semanticToken?: number;
  /**
   * Dual-stream only: Υ of the context merge after every text block's
   * cross-attention but the last (fusion-layer merging), with the text
   * class token's cross-attention row as semantic value.
   */
  cross?: number;
  /** α of the context merges (default `alpha`). */
  crossAlpha?: number;
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
 * The model's arithmetic over `params` for a batch of B: projections, norms,
 * multi-head attention with the log-size bias on the keys, the embeddings,
 * the merge and the head. Call inside a tidy.
 */
function pieces(c: VqaConfig, params: ReadonlyMap<string, tf.Tensor>, B: number) {
  const { gridH, gridW, patches: P, textTokens, patchDim, headDim: dh, hidden: H } = vqaDims(c);
  const { dim: D, heads, patch: p } = c;
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
  /**
   * Attention of h's queries over ctx's keys (+ log size of ctx's tokens; a
   * text mask [B, T], 1 keep / 0 padding, drops the padded keys among the
   * first T): the projected output, the probabilities [B, heads, t, m] and the keys.
   */
  const attend = (h: tf.Tensor3D, ctx: tf.Tensor3D, prefix: string, size?: tf.Tensor3D, textMask?: tf.Tensor2D) => {
    const [t, m] = [h.shape[1], ctx.shape[1]];
    const keys = dense(ctx, `${prefix}.k`, D);
    let logits = tf.mul(tf.matMul(split(dense(h, `${prefix}.q`, D)), split(keys), false, true), 1 / Math.sqrt(dh));
    if (textMask !== undefined) {
      const dropped = tf.where(tf.equal(textMask, 0), tf.fill(textMask.shape, -1e9), tf.zerosLike(textMask));
      const bias = tf.reshape(tf.pad(dropped, [[0, 0], [0, m - textMask.shape[1]]]), [B, 1, 1, m]);
      logits = tf.reshape(tf.add(tf.reshape(logits, [B, heads, t, m]), bias), [B * heads, t, m]);
    }
    if (size !== undefined) logits = tf.reshape(tf.add(tf.reshape(logits, [B, heads, t, m]), tf.reshape(tf.log(size), [B, 1, 1, m])), [B * heads, t, m]);
    const probs = tf.softmax(logits, -1);
    const out = dense(join(tf.matMul(probs, split(dense(ctx, `${prefix}.v`, D)))), `${prefix}.out`, D);
    return { out, probs: tf.reshape(probs, [B, heads, t, m]) as tf.Tensor4D, keys };
  };
  const mlp = (x: tf.Tensor3D, l: string) => dense(gelu(dense(layerNorm(x, `${l}.ln2`), `${l}.mlp.fc1`, H)), `${l}.mlp.fc2`, D);
  const text = (question: tf.Tensor2D) => {
    const onehot = tf.reshape(tf.oneHot(tf.reshape(question, [-1]) as tf.Tensor1D, vocabulary.length), [B * QUESTION_LENGTH, vocabulary.length]);
    const words = tf.reshape(tf.matMul(onehot, get("text.embeddings.words.weight") as tf.Tensor2D), [B, QUESTION_LENGTH, D]);
    return tf.add(tf.concat([token("text.embeddings.cls"), words], 1), get("text.embeddings.pos")) as tf.Tensor3D;
  };
  const image = (pixels: tf.Tensor4D) => {
    const grid = tf.reshape(tf.transpose(tf.reshape(pixels, [B, 1, gridH, p, gridW, p]), [0, 2, 4, 1, 3, 5]), [B, P, patchDim]) as tf.Tensor3D;
    return tf.add(tf.concat([token("image.embeddings.cls"), dense(grid, "image.embeddings.patch", D)], 1), get("image.embeddings.pos")) as tf.Tensor3D;
  };
  /**
   * Turbo's merge after a block's attention residual, keeping the first
   * `protect` tokens; undefined when the block merges nothing.
   */
  const merge = (x: tf.Tensor3D, probs: tf.Tensor4D, keys: tf.Tensor3D, size: tf.Tensor3D | undefined, turbo: EagerVqaTurbo, protect: number, layer: number) => {
    const t = x.shape[1];
    const r = Math.min(turbo.r, Math.floor((t - protect) / 2));
    if (r <= 0) return undefined;
    const alpha = turbo.alpha ?? 5;
    const row = turbo.semanticToken ?? 0;
    const clsAttn = tf.mean(tf.reshape(tf.slice(probs, [0, 0, row, 0], [B, heads, 1, t]), [B, heads, t]), 1) as tf.Tensor2D;
    const metric = tf.mean(tf.reshape(keys, [B, t, heads, dh]), 2) as tf.Tensor3D;
    return turboMerge(
      { x, metric, size: size ?? (tf.ones([B, t, 1]) as tf.Tensor3D), clsAttn: alpha === 0 ? null : clsAttn },
      { r, alpha, scale: turbo.scale ?? 30, fusion: turbo.fusion ?? "S1", layer, cls: true, protect },
    );
  };
  const head = (x: tf.Tensor3D) => {
    const cls = tf.reshape(tf.slice(layerNorm(x, "norm"), [0, 0, 0], [B, 1, D]), [B, D]);
    return tf.add(tf.matMul(cls, get("head.weight") as tf.Tensor2D), get("head.bias")) as tf.Tensor2D;
  };
  return { layerNorm, attend, mlp, text, image, merge, head, textTokens, dh };
}

function checkBatch(question: tf.Tensor2D, pixels: tf.Tensor4D): number {
  const B = pixels.shape[0];
  if (question.shape[0] !== B || question.shape[1] !== QUESTION_LENGTH) throw new Error(`eagerVqa: question [${question.shape}] does not match ${B} images of ${QUESTION_LENGTH} words`);
  return B;
}

/**
 * Answer logits [B, 19] of the single-stream model for question ids [B, 5]
 * (int32) and pixels [B, 1, 28, 56] (and, for `vqa(c, { mask: true })`, the
 * text mask [B, 6], 1 keep / 0 padding); every intermediate is disposed.
 */
export function eagerVqa(c: VqaConfig, params: ReadonlyMap<string, tf.Tensor>, question: tf.Tensor2D, pixels: tf.Tensor4D, turbo?: EagerVqaTurbo, observe?: (s: EagerVqaBlock) => void, textMask?: tf.Tensor2D): tf.Tensor2D {
  const B = checkBatch(question, pixels);
  return tf.tidy(() => {
    const m = pieces(c, params, B);
    let x = tf.concat([m.text(question), m.image(pixels)], 1) as tf.Tensor3D;
    let size: tf.Tensor3D | undefined;
    let merges = 0;
    for (let n = 0; n < c.depth; n++) {
      const l = `layer.${n}`;
      const h = m.layerNorm(x, `${l}.ln1`);
      const a = m.attend(h, h, `${l}.attn`, size, textMask);
      x = tf.add(x, a.out);
      const merged = turbo === undefined ? undefined : m.merge(x, a.probs, a.keys, size, turbo, m.textTokens + 1, merges);
      if (merged !== undefined) {
        merges++;
        x = merged.x;
        size = merged.size;
      }
      x = tf.add(x, m.mlp(x, l));
      const t = a.probs.shape[2];
      if (observe !== undefined) observe({ block: n, probs: a.probs, metric: tf.mean(tf.reshape(a.keys, [B, t, c.heads, m.dh]), 2) as tf.Tensor3D, tokens: x.shape[1] });
    }
    return m.head(x);
  });
}

/**
 * Answer logits [B, 19] of the dual-stream model: the image encoder merges
 * (Turbo with the image class token, position 0, protected), its final
 * tokens are normed, and every text block cross-attends to them with their
 * sizes; every intermediate is disposed.
 */
export function eagerVqaDual(c: VqaDualConfig, params: ReadonlyMap<string, tf.Tensor>, question: tf.Tensor2D, pixels: tf.Tensor4D, turbo?: EagerVqaTurbo): tf.Tensor2D {
  const B = checkBatch(question, pixels);
  return tf.tidy(() => {
    const m = pieces(c, params, B);
    let x = m.image(pixels);
    let size: tf.Tensor3D | undefined;
    let merges = 0;
    for (let n = 0; n < c.depth; n++) {
      const l = `image.layer.${n}`;
      const h = m.layerNorm(x, `${l}.ln1`);
      const a = m.attend(h, h, `${l}.attn`, size);
      x = tf.add(x, a.out);
      const merged = turbo === undefined ? undefined : m.merge(x, a.probs, a.keys, size, turbo, 1, merges);
      if (merged !== undefined) {
        merges++;
        x = merged.x;
        size = merged.size;
      }
      x = tf.add(x, m.mlp(x, l));
    }
    let image = m.layerNorm(x, "image.norm");
    let y = m.text(question);
    for (let n = 0; n < c.fusion; n++) {
      const l = `text.layer.${n}`;
      const h = m.layerNorm(y, `${l}.ln1`);
      y = tf.add(y, m.attend(h, h, `${l}.attn`).out);
      const a = m.attend(m.layerNorm(y, `${l}.ln_cross`), image, `${l}.cross`, size);
      y = tf.add(y, a.out);
      if (turbo?.cross !== undefined && n < c.fusion - 1) {
        const merged = m.merge(image, a.probs, a.keys, size, { ...turbo, r: turbo.cross, alpha: turbo.crossAlpha ?? turbo.alpha }, 1, merges);
        if (merged !== undefined) {
          merges++;
          image = merged.x;
          size = merged.size;
        }
      }
      y = tf.add(y, m.mlp(y, l));
    }
    return m.head(y);
  });
}

export { ANSWERS };
