/**
 * The pieces of a training loop the examples share: the seeded generator
 * and permutation that order the data, the learning-rate schedule, and
 * AdamW with global-norm clipping over a map of tf.Variables.
 */

import * as tf from "@tensorflow/tfjs-core";

export { mulberry32 } from "../../runtime/weights/random.ts";

/** A Fisher–Yates permutation of 0..n-1. */
export function permutation(n: number, random: () => number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

/** Learning rate at a step: linear warmup, then cosine decay from `lr` to `minLr`. */
export function learningRate(step: number, total: number, warmup: number, lr: number, minLr: number): number {
  if (step < warmup) return (lr * (step + 1)) / warmup;
  const progress = (step - warmup) / Math.max(1, total - warmup);
  return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * Math.min(1, progress)));
}

/** AdamW on a map of variables; weight decay only where `decay(name)` holds. */
export class AdamW {
  readonly #m = new Map<string, tf.Variable>();
  readonly #v = new Map<string, tf.Variable>();
  #t = 0;
  constructor(
    private readonly params: Map<string, tf.Variable>,
    private readonly decay: (name: string) => boolean,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly eps = 1e-8,
  ) {
    for (const [name, p] of params) {
      this.#m.set(name, tf.variable(tf.zerosLike(p), false));
      this.#v.set(name, tf.variable(tf.zerosLike(p), false));
    }
  }

  /** The first and second moments by parameter name (`m.<name>`, `v.<name>`), for a checkpoint. */
  moments(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [name, m] of this.#m) out.set(`m.${name}`, m);
    for (const [name, v] of this.#v) out.set(`v.${name}`, v);
    return out;
  }

  /** Continues from a checkpoint: `moments` as `moments()` names them (with any prefix), after `steps` steps. */
  restore(moments: ReadonlyMap<string, { data: Float32Array; shape: readonly number[] }>, steps: number): void {
    for (const [key, t] of moments) {
      const m = /(?:^|\.)(m|v)\.(.+)$/.exec(key.replace(/^adam\./, ""));
      const target = m === null ? undefined : (m[1] === "m" ? this.#m : this.#v).get(m[2]!);
      if (target === undefined) throw new Error(`checkpoint: ${key} names no optimiser moment`);
      target.assign(tf.tensor(t.data, [...t.shape], "float32"));
    }
    this.#t = steps;
  }

  /** One step; returns the global gradient norm before clipping. */
  step(grads: Record<string, tf.Tensor>, lr: number, weightDecay: number, clipNorm: number): number {
    this.#t++;
    const { beta1: b1, beta2: b2, eps } = this;
    const names = [...this.params.keys()];
    const norm = tf.tidy(() => Math.sqrt(tf.addN(names.map((n) => tf.sum(tf.square(grads[n]!)))).dataSync()[0]!));
    const scale = norm > clipNorm ? clipNorm / norm : 1;
    const c1 = 1 - b1 ** this.#t;
    const c2 = 1 - b2 ** this.#t;
    tf.tidy(() => {
      for (const name of names) {
        const p = this.params.get(name)!;
        const g = scale === 1 ? grads[name]! : tf.mul(grads[name]!, scale);
        const m = this.#m.get(name)!;
        const v = this.#v.get(name)!;
        m.assign(tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1)));
        v.assign(tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2)));
        let update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), eps));
        if (weightDecay > 0 && this.decay(name)) update = tf.add(update, tf.mul(p, weightDecay));
        p.assign(tf.sub(p, tf.mul(update, lr)));
      }
    });
    return norm;
  }
}

