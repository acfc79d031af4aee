/**
 * The "Turbo anywhere" corpus (issue 11): small vision transformers of
 * several families written with the public DSL as a user would (their own
 * parameters, the attention builder, primitives, sizes read from `x.shape`),
 * and for each the same model in eager tfjs with the merging written out by
 * hand: `turboMerge` after the attention residual, the keys averaged over
 * heads as metric, the class token's attention row as semantic value,
 * + log(size) on the logits of every later attention over the merged tokens.
 */

import * as tf from "@tensorflow/tfjs-core";
import { add, attention, block, broadcast, concat, input, layerNorm, linear, mean, mlp, model, mul, param, rearrange, reshape, scale, slice, type ModelSpec, type Tensor } from "../../compiler/dsl/mod.ts";
import { turboMerge } from "../../runtime/kernels/turbo_merge.ts";

export type Family = "deit" | "registers" | "layerscale" | "postnorm" | "parallel" | "meanpool" | "twostream";

export interface Corpus {
  family: Family;
  image: number;
  patch: number;
  channels: number;
  dim: number;
  heads: number;
  depth: number;
  classes: number;
  /** Text-like query tokens of the two-stream model. */
  queries: number;
}

export const corpus = (family: Family): Corpus => ({ family, image: 16, patch: 4, channels: 3, dim: 16, heads: 2, depth: 2, classes: 5, queries: 3 });

/** Parameter tokens at the front of the stream, in order. */
export function frontOf(family: Family): { name: string; count: number }[] {
  if (family === "deit") return [{ name: "embeddings.cls", count: 1 }, { name: "embeddings.dist", count: 1 }];
  if (family === "registers") return [{ name: "embeddings.cls", count: 1 }, { name: "embeddings.reg", count: 4 }];
  if (family === "meanpool") return [];
  return [{ name: "embeddings.cls", count: 1 }];
}

const eps = 1e-6;

// ───────────────────────────────────────────────────────────── the DSL models

export function spec(c: Corpus): ModelSpec {
  const D = c.dim;
  const hidden = 2 * D;
  return model(`corpus-${c.family}`, () => {
    const pixels = input("pixels", ["B", c.channels, c.image, c.image]);
    let x = block("embeddings", () => {
      const patches = rearrange(pixels, "b c (gh p) (gw q) -> b (gh gw) (c p q)", { p: c.patch, q: c.patch });
      const tokens = linear(patches, D, { name: "embeddings.patch" });
      const front = frontOf(c.family).map(({ name, count }) => broadcast(reshape(param(name, [count, D]), [1, count, D]), ["B", count, D]));
      const all = front.length === 0 ? tokens : concat([...front, tokens], 1);
      return add(all, param("embeddings.pos", [all.shape[1] as number, D]));
    });
    let text = c.family === "twostream" ? broadcast(reshape(param("text.queries", [c.queries, D]), [1, c.queries, D]), ["B", c.queries, D]) : undefined;
    for (let i = 0; i < c.depth; i++) {
      const n = `b${i}`;
      x = block(n, () => {
        const ln = (t: Tensor, k: string) => layerNorm(t, { name: `${n}.${k}`, eps });
        const attn = (t: Tensor) => attention(t, { heads: c.heads, name: `${n}.attn` });
        const ffn = (t: Tensor) => mlp(t, { hidden, name: `${n}.mlp` });
        switch (c.family) {
          case "postnorm": {
            const h = ln(add(x, attn(x)), "ln1");
            return ln(add(h, ffn(h)), "ln2");
          }
          case "parallel":
            return add(add(x, attn(ln(x, "ln1"))), ffn(ln(x, "ln2")));
          case "layerscale": {
            // γ broadcast to the traced token count, as a user reading x.shape would write it.
            const scaled = (t: Tensor, g: string) => mul(t, broadcast(reshape(param(`${n}.${g}`, [D]), [1, 1, D]), ["B", t.shape[1] as number, D]));
            const h = add(x, scaled(attn(ln(x, "ln1")), "g1"));
            return add(h, scaled(ffn(ln(h, "ln2")), "g2"));
          }
          default: {
            const h = add(x, attn(ln(x, "ln1")));
            return add(h, ffn(ln(h, "ln2")));
          }
        }
      });
      if (text !== undefined) {
        const img = x;
        text = block(`t${i}`, () => {
          const ln = (t: Tensor, k: string) => layerNorm(t, { name: `${n}.t.${k}`, eps });
          let t = add(text!, attention(ln(text!, "ln1"), { heads: c.heads, name: `${n}.t.self` }));
          t = add(t, attention(ln(t, "ln2"), { heads: c.heads, name: `${n}.t.cross`, context: img }));
          return add(t, mlp(ln(t, "ln3"), { hidden, name: `${n}.t.mlp` }));
        });
      }
    }
    const normed = layerNorm(text ?? x, { name: "norm", eps });
    const token = (k: number) => rearrange(slice(normed, { axis: 1, start: k, end: k + 1 }), "b 1 d -> b d");
    switch (c.family) {
      case "deit":
        // DeiT at inference: the mean of the class head and the distillation head.
        return { logits: scale(add(linear(token(0), c.classes, { name: "head" }), linear(token(1), c.classes, { name: "head_dist" })), 0.5) };
      case "registers": {
        // DINOv2-style head: the class token next to the mean of the patch tokens (the tail past the registers).
        const patches = mean(slice(normed, { axis: 1, start: 5, end: normed.shape[1] as number }), [1]);
        return { logits: linear(concat([token(0), patches], 1), c.classes, { name: "head" }) };
      }
      case "meanpool":
      case "twostream":
        return { logits: linear(mean(normed, [1]), c.classes, { name: "head" }) };
      default:
        return { logits: linear(token(0), c.classes, { name: "head" }) };
    }
  });
}

// ─────────────────────────────────────────────────────────── the eager oracle

export interface EagerSettings {
  r: number | readonly number[];
  threshold?: number;
  alpha?: number;
  skip?: readonly number[];
}

export interface EagerResult {
  logits: tf.Tensor2D;
  /** Per image block: tokens in, merged, tokens out. */
  blocks: { tokensIn: number; merged: number; tokensOut: number }[];
}

/** The same model as `spec(c)`, eager, with Turbo merging by hand (or none when `turbo` is undefined). */
export function eager(c: Corpus, params: Map<string, tf.Tensor>, pixels: tf.Tensor4D, turbo?: EagerSettings): EagerResult {
  const D = c.dim;
  const H = c.heads;
  const dh = D / H;
  const [B] = pixels.shape;
  const w = (name: string): tf.Tensor => {
    const t = params.get(name);
    if (t === undefined) throw new Error(`eager(${c.family}): missing parameter ${name}`);
    return t;
  };
  const dense = (x: tf.Tensor3D, name: string): tf.Tensor3D => {
    const [b, s, din] = x.shape;
    const weight = w(`${name}.weight`) as tf.Tensor2D;
    return tf.reshape(tf.add(tf.matMul(tf.reshape(x, [b * s, din]), weight), w(`${name}.bias`)), [b, s, weight.shape[1]]);
  };
  const norm = (x: tf.Tensor3D, name: string): tf.Tensor3D => {
    const { mean: mu, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mu), tf.rsqrt(tf.add(variance, eps))), w(`${name}.weight`)), w(`${name}.bias`));
  };
  const gelu = (x: tf.Tensor3D): tf.Tensor3D => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
  const ffn = (x: tf.Tensor3D, name: string) => dense(gelu(dense(x, `${name}.fc1`)), `${name}.fc2`);
  const heads = (x: tf.Tensor3D): tf.Tensor4D => tf.transpose(tf.reshape(x, [B, x.shape[1], H, dh]), [0, 2, 1, 3]);
  /** Multi-head attention of queries from `xq` over keys/values from `xkv` with key sizes `size`. */
  const mha = (xq: tf.Tensor3D, xkv: tf.Tensor3D, name: string, size: tf.Tensor3D | undefined) => {
    const kFlat = dense(xkv, `${name}.k`);
    const q = heads(dense(xq, `${name}.q`));
    let logits = tf.mul(tf.matMul(q, heads(kFlat), false, true), 1 / Math.sqrt(dh));
    if (size !== undefined) logits = tf.add(logits, tf.reshape(tf.log(size), [B, 1, 1, xkv.shape[1]]));
    const probs = tf.softmax(logits, -1) as tf.Tensor4D;
    const o = tf.reshape(tf.transpose(tf.matMul(probs, heads(dense(xkv, `${name}.v`))), [0, 2, 1, 3]), [B, xq.shape[1], D]) as tf.Tensor3D;
    return { out: dense(o, `${name}.out`), probs, kFlat };
  };

  return tf.tidy(() => {
    const G = c.image / c.patch;
    const p = c.patch;
    const patches = tf.reshape(tf.transpose(tf.reshape(pixels, [B, c.channels, G, p, G, p]), [0, 2, 4, 1, 3, 5]), [B, G * G, c.channels * p * p]) as tf.Tensor3D;
    const front = frontOf(c.family).map(({ name, count }) => tf.tile(tf.reshape(w(name), [1, count, D]), [B, 1, 1]));
    let x = tf.add(tf.concat([...front, dense(patches, "embeddings.patch")], 1), w("embeddings.pos")) as tf.Tensor3D;
    const protect = frontOf(c.family).reduce((s, f) => s + f.count, 0);
    let text = c.family === "twostream" ? (tf.tile(tf.reshape(w("text.queries"), [1, c.queries, D]), [B, 1, 1]) as tf.Tensor3D) : undefined;
    let size: tf.Tensor3D | undefined;
    let merges = 0;
    const blocks: EagerResult["blocks"] = [];

    /** Merges `x` after block i's attention residual; `probs`/`kFlat` from that attention. */
    const merge = (i: number, probs: tf.Tensor4D, kFlat: tf.Tensor3D): void => {
      const t = x.shape[1];
      const upsilon = turbo === undefined || turbo.skip?.includes(i) ? 0 : typeof turbo.r === "number" ? turbo.r : turbo.r[i]!;
      let r = Math.min(upsilon, Math.floor((t - protect) / 2), Math.max(0, t - (turbo?.threshold ?? 0)));
      if (Math.floor(t / 2) - Math.floor(protect / 2) <= 0) r = 0;
      blocks.push({ tokensIn: t, merged: Math.max(0, r), tokensOut: t - Math.max(0, r) });
      if (turbo === undefined || r <= 0) return;
      const alpha = turbo.alpha ?? 5;
      const clsAttn = tf.mean(tf.reshape(tf.slice(probs, [0, 0, 0, 0], [B, H, 1, t]), [B, H, t]), 1) as tf.Tensor2D;
      const metric = tf.mean(tf.reshape(kFlat, [B, t, H, dh]), 2) as tf.Tensor3D;
      const m = turboMerge(
        { x, metric, size: size ?? (tf.ones([B, t, 1]) as tf.Tensor3D), clsAttn: alpha === 0 ? null : clsAttn },
        { r, alpha, layer: merges, cls: false, protect },
      );
      merges++;
      x = m.x;
      size = m.size;
    };

    for (let i = 0; i < c.depth; i++) {
      const n = `b${i}`;
      switch (c.family) {
        case "postnorm": {
          const a = mha(x, x, `${n}.attn`, size);
          x = norm(tf.add(x, a.out), `${n}.ln1`);
          merge(i, a.probs, a.kFlat);
          x = norm(tf.add(x, ffn(x, `${n}.mlp`)), `${n}.ln2`);
          break;
        }
        case "parallel": {
          const a = mha(norm(x, `${n}.ln1`), norm(x, `${n}.ln1`), `${n}.attn`, size);
          x = tf.add(tf.add(x, a.out), ffn(norm(x, `${n}.ln2`), `${n}.mlp`));
          merge(i, a.probs, a.kFlat);
          break;
        }
        case "layerscale": {
          const h = norm(x, `${n}.ln1`);
          const a = mha(h, h, `${n}.attn`, size);
          x = tf.add(x, tf.mul(a.out, w(`${n}.g1`)));
          merge(i, a.probs, a.kFlat);
          x = tf.add(x, tf.mul(ffn(norm(x, `${n}.ln2`), `${n}.mlp`), w(`${n}.g2`)));
          break;
        }
        default: {
          const h = norm(x, `${n}.ln1`);
          const a = mha(h, h, `${n}.attn`, size);
          x = tf.add(x, a.out);
          merge(i, a.probs, a.kFlat);
          x = tf.add(x, ffn(norm(x, `${n}.ln2`), `${n}.mlp`));
        }
      }
      if (text !== undefined) {
        // Text-like queries: their own self-attention (never merged), then
        // cross-attention over the merged image tokens with their sizes.
        let t: tf.Tensor3D = text;
        const t1 = norm(t, `${n}.t.ln1`);
        t = tf.add(t, mha(t1, t1, `${n}.t.self`, undefined).out);
        t = tf.add(t, mha(norm(t, `${n}.t.ln2`), x, `${n}.t.cross`, size).out);
        text = tf.add(t, ffn(norm(t, `${n}.t.ln3`), `${n}.t.mlp`)) as tf.Tensor3D;
      }
    }
    const normed = norm(text ?? x, "norm");
    const token = (k: number) => tf.reshape(tf.slice(normed, [0, k, 0], [B, 1, D]), [B, D]) as tf.Tensor2D;
    const head = (v: tf.Tensor2D, name: string) => tf.add(tf.matMul(v, w(`${name}.weight`) as tf.Tensor2D), w(`${name}.bias`)) as tf.Tensor2D;
    let logits: tf.Tensor2D;
    switch (c.family) {
      case "deit":
        logits = tf.mul(tf.add(head(token(0), "head"), head(token(1), "head_dist")), 0.5);
        break;
      case "registers": {
        const rest = tf.mean(tf.slice(normed, [0, 5, 0], [B, normed.shape[1] - 5, D]), 1) as tf.Tensor2D;
        logits = head(tf.concat([token(0), rest], 1), "head");
        break;
      }
      case "meanpool":
      case "twostream":
        logits = head(tf.mean(normed, 1) as tf.Tensor2D, "head");
        break;
      default:
        logits = head(token(0), "head");
    }
    return { logits, blocks };
  });
}
