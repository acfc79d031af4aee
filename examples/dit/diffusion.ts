/**
 * The diffusion process of examples/dit: DDPM's forward noising (Ho et al.,
 * linear β from 10⁻⁴ to 0.02 over T = 1000 steps) for training, and DDIM's
 * deterministic sampler (Song et al., η = 0) over an evenly spaced subset of
 * the steps for generation. Pixels live in [−1, 1].
 *
 * The sampler takes the denoiser as a function, so the same loop drives the
 * eager tfjs model and a compiled one, merged or not.
 */

export interface NoiseSchedule {
  /** Training steps T. */
  readonly steps: number;
  /** ᾱ_t = Π_{s ≤ t} (1 − β_s), t = 0..T−1. */
  readonly alphaBar: Float64Array;
}

export function linearSchedule(steps = 1000, betaStart = 1e-4, betaEnd = 0.02): NoiseSchedule {
  const alphaBar = new Float64Array(steps);
  let product = 1;
  for (let t = 0; t < steps; t++) {
    const beta = betaStart + ((betaEnd - betaStart) * t) / Math.max(1, steps - 1);
    product *= 1 - beta;
    alphaBar[t] = product;
  }
  return { steps, alphaBar };
}

/** x_t = √ᾱ_t · x₀ + √(1 − ᾱ_t) · ε, per sample (x₀, ε flat, `t` one step per sample). */
export function noisedImages(s: NoiseSchedule, x0: Float32Array, noise: Float32Array, t: ArrayLike<number>): Float32Array {
  const per = x0.length / t.length;
  const out = new Float32Array(x0.length);
  for (let b = 0; b < t.length; b++) {
    const a = s.alphaBar[t[b]!]!;
    const [ca, cn] = [Math.sqrt(a), Math.sqrt(1 - a)];
    for (let i = b * per; i < (b + 1) * per; i++) out[i] = ca * x0[i]! + cn * noise[i]!;
  }
  return out;
}

/** The DDIM timesteps, descending: `count` steps evenly spaced over 0..T−1, ending at 0. */
export function ddimTimesteps(s: NoiseSchedule, count: number): number[] {
  if (!Number.isInteger(count) || count < 1 || count > s.steps) throw new RangeError(`DDIM steps ${count} must be an integer in [1, ${s.steps}]`);
  const stride = s.steps / count;
  return Array.from({ length: count }, (_, i) => Math.floor((count - 1 - i) * stride));
}

/**
 * One DDIM step (η = 0) from t to `prev` (−1: the end) for every sample:
 * x̂₀ = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t, clipped to [−1, 1], then
 * x_prev = √ᾱ_prev · x̂₀ + √(1 − ᾱ_prev) · ε̂', where ε̂' is the noise
 * consistent with the clipped x̂₀. At the end it returns x̂₀.
 */
export function ddimStep(s: NoiseSchedule, x: Float32Array, eps: Float32Array, t: number, prev: number): Float32Array {
  const a = s.alphaBar[t]!;
  const aPrev = prev < 0 ? 1 : s.alphaBar[prev]!;
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = Math.min(1, Math.max(-1, (x[i]! - Math.sqrt(1 - a) * eps[i]!) / Math.sqrt(a)));
    const e = (x[i]! - Math.sqrt(a) * x0) / Math.sqrt(1 - a);
    out[i] = Math.sqrt(aPrev) * x0 + Math.sqrt(1 - aPrev) * e;
  }
  return out;
}

/** The denoiser: predicted noise (flat, like `noisy`) for a batch at one timestep. */
export type Denoiser = (noisy: Float32Array, t: number, count: number) => Float32Array | Promise<Float32Array>;

/** DDIM from x_T = `start` (flat, `count` images) in `steps` steps; `onStep` sees each step's wall time. */
export async function ddimSample(
  s: NoiseSchedule,
  denoise: Denoiser,
  start: Float32Array,
  count: number,
  steps: number,
  onStep?: (index: number, ms: number) => void,
): Promise<Float32Array> {
  const ts = ddimTimesteps(s, steps);
  let x = start;
  for (let i = 0; i < ts.length; i++) {
    const t0 = performance.now();
    const eps = await denoise(x, ts[i]!, count);
    onStep?.(i, performance.now() - t0);
    x = ddimStep(s, x, eps, ts[i]!, i + 1 < ts.length ? ts[i + 1]! : -1);
  }
  return x;
}

/** Standard normal numbers from a uniform generator (Box–Muller). */
export function normals(count: number, uniform: () => number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - uniform()));
    const angle = 2 * Math.PI * uniform();
    out[i] = radius * Math.cos(angle);
    if (i + 1 < count) out[i + 1] = radius * Math.sin(angle);
  }
  return out;
}
