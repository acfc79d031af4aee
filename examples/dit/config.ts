/**
 * The class-conditional diffusion transformer of examples/dit: MNIST digits
 * (28×28, patch 2 → 196 image tokens on a 14×14 grid), the class given as a
 * two-token prompt ("digit", k) through cross-attention, the timestep through
 * sinusoidal features, an MLP and adaLN-Zero modulation (DiT, Peebles & Xie).
 */

export interface DitConfig {
  name: string;
  image: number;
  channels: number;
  patch: number;
  dim: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  /** Sinusoidal timestep features: `frequencies` cosines then as many sines. */
  frequencies: number;
  eps: number;
}

export const ditConfig: DitConfig = {
  name: "mnist",
  image: 28,
  channels: 1,
  patch: 2,
  dim: 48,
  depth: 4,
  heads: 3,
  mlpRatio: 2,
  frequencies: 32,
  eps: 1e-6,
};

/** A small one for tests. */
export const ditTiny: DitConfig = { ...ditConfig, name: "tiny", image: 8, dim: 32, depth: 2, heads: 4, frequencies: 8 };

/** The prompt vocabulary: "digit" then the ten classes. */
export const PROMPT_VOCAB = 11;
export const PROMPT_LENGTH = 2;

/** The prompt ids of class k: ["digit", k]. */
export function promptIds(k: number): [number, number] {
  return [0, 1 + k];
}

export function ditDims(c: DitConfig): { grid: number; tokens: number; patchDim: number; hidden: number } {
  const grid = c.image / c.patch;
  return { grid, tokens: grid * grid, patchDim: c.patch * c.patch * c.channels, hidden: c.dim * c.mlpRatio };
}

/**
 * The timestep frequencies, 10000^(−i/F) for i < F: a fixed buffer, stored with
 * the weights as `t_embed.freqs` (as PyTorch models keep such buffers), so
 * that the compiled graph needs no constant tensors.
 */
export function timestepFrequencies(c: DitConfig): Float32Array {
  return Float32Array.from({ length: c.frequencies }, (_, i) => Math.exp((-Math.log(10000) * i) / c.frequencies));
}
