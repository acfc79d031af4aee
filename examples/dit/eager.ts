/**
 * The DiT of examples/dit written directly in tfjs, from the formulas in
 * dit.ts's comment rather than from the DSL: the reference the compiled
 * model is tested against (test/examples/dit.test.ts), and the forward pass
 * training differentiates (train.ts).
 *
 * With `merge`, generation mode placed by hand: each chosen sub-layer's
 * input h is merged with the runtime's windowMerge (metric h, semantic value
 * the block's cross-attention map at h, written out here) and its branch
 * restored before the residual add, the reference for where and how
 * compiler/passes/insert_generation.ts wraps the sub-layers.
 */

import * as tf from "@tensorflow/tfjs-core";
import { restore, windowMerge } from "../../runtime/kernels/window_merge.ts";
import { ditDims, PROMPT_LENGTH, type DitConfig } from "./config.ts";

/** Generation mode by hand (see the module comment). */
export interface EagerMerge {
  where: readonly ("self" | "cross" | "mlp")[];
  r: number;
  alpha: number;
  scale: number;
  seed: number;
  window?: readonly [number, number];
}

type Weights = ReadonlyMap<string, tf.Tensor>;

function w(weights: Weights, name: string): tf.Tensor {
  const t = weights.get(name);
  if (t === undefined) throw new Error(`eager DiT: no weight "${name}"`);
  return t;
}

/** x·W + b over the last axis, any leading shape. */
function dense(x: tf.Tensor, weights: Weights, name: string): tf.Tensor {
  const W = w(weights, `${name}.weight`);
  const flat = tf.reshape(x, [-1, x.shape[x.shape.length - 1]!]);
  return tf.reshape(tf.add(tf.matMul(flat, W), w(weights, `${name}.bias`)), [...x.shape.slice(0, -1), W.shape[1]!]);
}

function norm(x: tf.Tensor, weights: Weights, name: string, eps: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps))), w(weights, `${name}.weight`)), w(weights, `${name}.bias`));
}

const silu = (x: tf.Tensor) => tf.mul(x, tf.sigmoid(x));
const gelu = (x: tf.Tensor) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));

function heads(x: tf.Tensor, h: number): tf.Tensor {
  const [b, n, d] = x.shape as [number, number, number];
  return tf.transpose(tf.reshape(x, [b, n, h, d / h]), [0, 2, 1, 3]);
}

/** Multi-head attention of queries from x over keys and values from context. */
function attend(x: tf.Tensor, context: tf.Tensor, weights: Weights, name: string, h: number): tf.Tensor {
  const [b, n, d] = x.shape as [number, number, number];
  const q = heads(dense(x, weights, `${name}.q`), h);
  const k = heads(dense(context, weights, `${name}.k`), h);
  const v = heads(dense(context, weights, `${name}.v`), h);
  const p = tf.softmax(tf.div(tf.matMul(q, k, false, true), Math.sqrt(d / h)));
  const out = tf.reshape(tf.transpose(tf.matMul(p, v), [0, 2, 1, 3]), [b, n, d]);
  return dense(out, weights, `${name}.out`);
}

/**
 * The visual-textual map at h: softmax over the image tokens of the logits
 * between the cross-attention's queries of h and its keys of the prompt,
 * averaged over heads and prompt tokens → [B, N].
 */
function textualMap(h: tf.Tensor, context: tf.Tensor, weights: Weights, name: string, heads_: number): tf.Tensor2D {
  const d = h.shape[2]!;
  const q = heads(dense(h, weights, `${name}.q`), heads_); // [B, h, N, d']
  const k = heads(dense(context, weights, `${name}.k`), heads_); // [B, h, T, d']
  const logits = tf.div(tf.matMul(k, q, false, true), Math.sqrt(d / heads_)); // [B, h, T, N]
  return tf.mean(tf.softmax(logits), [1, 2]) as tf.Tensor2D;
}

/** x + restore(f(merge(h))) when `kind` is merged, else x + f(h). */
function wrapped(kind: "self" | "cross" | "mlp", h: tf.Tensor, f: (h: tf.Tensor) => tf.Tensor, merge: EagerMerge | undefined, grid: number, semantic: () => tf.Tensor2D): tf.Tensor {
  if (merge === undefined || !merge.where.includes(kind) || merge.r === 0) return f(h);
  const m = windowMerge(
    { x: h as tf.Tensor3D, metric: h as tf.Tensor3D, semantic: merge.alpha === 0 ? null : semantic() },
    { grid: [grid, grid], window: merge.window ?? [2, 2], seed: merge.seed, r: merge.r, alpha: merge.alpha, scale: merge.scale },
  );
  return restore(f(m.x) as tf.Tensor3D, m.restoreRows, h.shape[1]!);
}

/** h·(1 + scale) + shift, scale and shift [B, D] for every token. */
function modulate(h: tf.Tensor, shift: tf.Tensor, scale: tf.Tensor): tf.Tensor {
  return tf.add(tf.mul(h, tf.add(1, tf.expandDims(scale, 1))), tf.expandDims(shift, 1));
}

/** The predicted noise [B, C, H, W] for noisy images [B, C, H, W], timesteps [B, 1] and prompt ids [B, 2]. */
export function eagerDit(cfg: DitConfig, weights: Weights, noisy: tf.Tensor4D, t: tf.Tensor2D, prompt: tf.Tensor2D, merge?: EagerMerge): tf.Tensor4D {
  return tf.tidy(() => {
    const { grid, tokens } = ditDims(cfg);
    const [b] = noisy.shape;
    const p = cfg.patch;
    const phase = tf.mul(t, w(weights, "t_embed.freqs"));
    const c = dense(silu(dense(tf.concat([tf.cos(phase), tf.sin(phase)], 1), weights, "t_embed.fc1")), weights, "t_embed.fc2");
    const context = tf.add(tf.gather(w(weights, "prompt.embed.weight"), prompt), w(weights, "prompt.pos"));
    if (context.shape[1] !== PROMPT_LENGTH) throw new Error("eager DiT: the prompt must have two tokens");
    // Patches in (c p q) order, row-major over the grid.
    const patches = tf.reshape(
      tf.transpose(tf.reshape(noisy, [b, cfg.channels, grid, p, grid, p]), [0, 2, 4, 1, 3, 5]),
      [b, tokens, cfg.channels * p * p],
    );
    let x = tf.add(dense(patches, weights, "x_embed.patch"), w(weights, "x_embed.pos"));
    for (let i = 0; i < cfg.depth; i++) {
      const name = `block.${i}`;
      const mod = tf.split(dense(silu(c), weights, `${name}.adaLN`), 6, 1);
      const [shift1, scale1, gate1, shift2, scale2, gate2] = mod as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      const map = (h: tf.Tensor) => () => textualMap(h, context, weights, `${name}.cross`, cfg.heads);
      const h1 = modulate(norm(x, weights, `${name}.norm1`, cfg.eps), shift1, scale1);
      x = tf.add(x, wrapped("self", h1, (h) => tf.mul(tf.expandDims(gate1, 1), attend(h, h, weights, `${name}.attn`, cfg.heads)), merge, grid, map(h1)));
      const h2 = norm(x, weights, `${name}.norm2`, cfg.eps);
      x = tf.add(x, wrapped("cross", h2, (h) => attend(h, context, weights, `${name}.cross`, cfg.heads), merge, grid, map(h2)));
      const h3 = modulate(norm(x, weights, `${name}.norm3`, cfg.eps), shift2, scale2);
      const mlp = (h: tf.Tensor) => tf.mul(tf.expandDims(gate2, 1), dense(gelu(dense(h, weights, `${name}.mlp.fc1`)), weights, `${name}.mlp.fc2`));
      x = tf.add(x, wrapped("mlp", h3, mlp, merge, grid, map(h3)));
    }
    const [shift, scale] = tf.split(dense(silu(c), weights, "final.adaLN"), 2, 1) as [tf.Tensor, tf.Tensor];
    const out = dense(modulate(norm(x, weights, "final.norm", cfg.eps), shift, scale), weights, "final.out");
    return tf.reshape(
      tf.transpose(tf.reshape(out, [b, grid, grid, p, p, cfg.channels]), [0, 5, 1, 3, 2, 4]),
      [b, cfg.channels, cfg.image, cfg.image],
    ) as tf.Tensor4D;
  });
}
