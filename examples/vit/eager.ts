/**
 * Hand-written eager ViT in TensorFlow.js.
 *
 * This is what a user would write without the compiler: plain tf ops inside
 * one tf.tidy, batched 3-D matmuls for attention. It serves both as the
 * numerical oracle for compiled programs and as the speed baseline.
 */
import * as tf from "@tensorflow/tfjs-core";
import { turboMerge, type Fusion } from "../../runtime/kernels/turbo_merge.ts";
import type { VitConfig } from "./config.ts";
import { vitDims } from "./config.ts";

export type { VitConfig } from "./config.ts";

/**
 * Forward pass.
 * @param pixels [B, C, H, W] float32 image batch
 * @returns logits [B, classes]; every intermediate is disposed.
 */
export interface EagerTurbo {
  /** Υ: tokens to merge per block (before the floor and the threshold). */
  r: number;
  threshold?: number;
  alpha?: number;
  scale?: number;
  fusion?: Fusion;
}

/**
 * What `eagerVit` shows an observer after each encoder block (inside its
 * `tf.tidy`: every tensor the observer makes is disposed with the pass, so
 * read what you need with `dataSync()`/`arraySync()`).
 */
export interface EagerBlockState {
  /** 0-based index of the encoder block. */
  block: number;
  /** The block's output tokens [B, t', D] (after its merge, if any, and its MLP). */
  x: tf.Tensor3D;
  /** The block's attention probabilities [B, heads, t, t] (with the log-size bias), before its merge. */
  probs: tf.Tensor4D;
}

/** Kernels to use instead of plain tfjs ops (the benchmark gives eager the runtime's SIMD GELU). */
export interface EagerKernels {
  gelu?: (x: tf.Tensor) => tf.Tensor;
}

/**
 * Forward pass, optionally with Turbo merging written out by hand (the way a
 * user would add it to an eager model): after each attention residual, merge
 * with `turboMerge` using the keys averaged over heads and the class token's
 * attention row; later blocks add log(size) to their attention logits.
 * `observe`, when given, is called after every encoder block with its output
 * and attention (the redundancy analysis of examples/vit/redundancy.ts).
 */
export function eagerVit(
  config: VitConfig,
  params: Map<string, tf.Tensor>,
  pixels: tf.Tensor4D,
  turbo?: EagerTurbo,
  observe?: (state: EagerBlockState) => void,
  kernels: EagerKernels = {},
): tf.Tensor2D {
  const { image, patch: p, channels: C, dim: D, depth, heads, classes: K, eps } = config;
  const { grid: G, patches: N, tokens: T, patchDim: P, headDim: dh, hidden: H } = vitDims(config);

  const [B, pc, ph, pw] = pixels.shape;
  if (pc !== C || ph !== image || pw !== image) {
    throw new Error(
      `eagerVit(${config.name}): expected pixels [B, ${C}, ${image}, ${image}], got [${pixels.shape.join(", ")}]`,
    );
  }

  const param = (name: string, shape: number[]): tf.Tensor => {
    const t = params.get(name);
    if (t === undefined) throw new Error(`eagerVit(${config.name}): missing parameter ${name}`);
    if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
      throw new Error(
        `eagerVit(${config.name}): parameter ${name} has shape [${t.shape.join(", ")}], expected [${shape.join(", ")}]`,
      );
    }
    return t;
  };

  // y = x·W + b over the last axis of a [B, S, in] tensor.
  const dense = (x: tf.Tensor3D, prefix: string, din: number, dout: number): tf.Tensor3D => {
    const [b, s] = x.shape;
    const w = param(`${prefix}.weight`, [din, dout]) as tf.Tensor2D;
    const bias = param(`${prefix}.bias`, [dout]);
    const y = tf.add(tf.matMul(tf.reshape(x, [b * s, din]), w), bias);
    return tf.reshape(y, [b, s, dout]);
  };

  const layerNorm = (x: tf.Tensor3D, prefix: string): tf.Tensor3D => {
    const { mean, variance } = tf.moments(x, -1, true);
    const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
    return tf.add(tf.mul(normed, param(`${prefix}.weight`, [D])), param(`${prefix}.bias`, [D]));
  };

  const gelu = (x: tf.Tensor3D): tf.Tensor3D =>
    kernels.gelu !== undefined ? (kernels.gelu(x) as tf.Tensor3D) : tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));

  // [B, t, D] -> [B*heads, t, dh]
  const splitHeads = (x: tf.Tensor3D): tf.Tensor3D => {
    const t = x.shape[1];
    return tf.reshape(tf.transpose(tf.reshape(x, [B, t, heads, dh]), [0, 2, 1, 3]), [B * heads, t, dh]);
  };

  // [B*heads, t, dh] -> [B, t, D]
  const mergeHeads = (x: tf.Tensor3D): tf.Tensor3D => {
    const t = x.shape[1];
    return tf.reshape(tf.transpose(tf.reshape(x, [B, heads, t, dh]), [0, 2, 1, 3]), [B, t, D]);
  };

  return tf.tidy(() => {
    // 1. Patch embedding: [B,C,H,W] -> [B,C,gy,i,gx,j] -> [B,gy,gx,c,i,j] -> [B, G², C·p·p].
    const patches = tf.reshape(
      tf.transpose(tf.reshape(pixels, [B, C, G, p, G, p]), [0, 2, 4, 1, 3, 5]),
      [B, N, P],
    ) as tf.Tensor3D;
    const embedded = dense(patches, "embeddings.patch", P, D);

    // 2. Class token + position embeddings.
    const cls = tf.tile(tf.reshape(param("embeddings.cls", [1, D]), [1, 1, D]), [B, 1, 1]);
    let x = tf.add(tf.concat([cls, embedded], 1), param("embeddings.pos", [T, D])) as tf.Tensor3D;

    // 3. Pre-norm transformer blocks.
    const scale = 1 / Math.sqrt(dh);
    let size: tf.Tensor3D | undefined;
    let merges = 0;
    for (let n = 0; n < depth; n++) {
      const l = `layer.${n}`;
      const t = x.shape[1];
      const h = layerNorm(x, `${l}.ln1`);
      const kFlat = dense(h, `${l}.attn.k`, D, D);
      const q = splitHeads(dense(h, `${l}.attn.q`, D, D));
      const k = splitHeads(kFlat);
      const v = splitHeads(dense(h, `${l}.attn.v`, D, D));
      let logits = tf.mul(tf.matMul(q, k, false, true), scale);
      if (size !== undefined) {
        // Proportional attention: a merged token weighs as much as the patches it stands for.
        const bias = tf.reshape(tf.log(size), [B, 1, 1, t]);
        logits = tf.reshape(tf.add(tf.reshape(logits, [B, heads, t, t]), bias), [B * heads, t, t]);
      }
      const probs = tf.softmax(logits, -1);
      const o = mergeHeads(tf.matMul(probs, v));
      x = tf.add(x, dense(o, `${l}.attn.out`, D, D));

      if (turbo !== undefined) {
        const r = Math.min(turbo.r, Math.floor((t - 1) / 2), Math.max(0, t - (turbo.threshold ?? 0)));
        if (r > 0) {
          const clsAttn = tf.mean(tf.reshape(tf.slice(tf.reshape(probs, [B, heads, t, t]), [0, 0, 0, 0], [B, heads, 1, t]), [B, heads, t]), 1) as tf.Tensor2D;
          const metric = tf.mean(tf.reshape(kFlat, [B, t, heads, dh]), 2) as tf.Tensor3D;
          const merged = turboMerge(
            { x, metric, size: size ?? (tf.ones([B, t, 1]) as tf.Tensor3D), clsAttn: (turbo.alpha ?? 5) === 0 ? null : clsAttn },
            { r, alpha: turbo.alpha ?? 5, scale: turbo.scale ?? 30, fusion: turbo.fusion ?? "S1", layer: merges },
          );
          merges++;
          x = merged.x;
          size = merged.size;
        }
      }

      const m = dense(gelu(dense(layerNorm(x, `${l}.ln2`), `${l}.mlp.fc1`, D, H)), `${l}.mlp.fc2`, H, D);
      x = tf.add(x, m);
      observe?.({ block: n, x, probs: tf.reshape(probs, [B, heads, t, t]) as tf.Tensor4D });
    }

    // 4. Final norm, class token, classifier head.
    const normed = layerNorm(x, "norm");
    const clsOut = tf.reshape(tf.slice(normed, [0, 0, 0], [B, 1, D]), [B, D]) as tf.Tensor2D;
    const w = param("head.weight", [D, K]) as tf.Tensor2D;
    return tf.add(tf.matMul(clsOut, w), param("head.bias", [K])) as tf.Tensor2D;
  });
}
