/**
 * Deterministic random initial weights, for tests, benchmarks and as the
 * starting point of training.
 *
 * @module
 */

import { mulberry32 } from "../../compiler/contract/random.ts";
import { WeightsError } from "./errors.ts";

export { mulberry32 };
import type { WeightTensor } from "./safetensors.ts";

/** A parameter to initialise: its name and shape. */
export interface ParamSpec {
  name: string;
  shape: readonly number[];
}

const GAMMA = /(^|\.)(ln\d*|norm)\.weight$/;
const EMBEDDING = /(^|\.)embeddings\.(cls|pos)$/;
const BIAS = /(^|\.)bias$/;

/**
 * Makes deterministic random weights for the given parameters.
 *
 * - layer-norm gammas (names matching `/(^|\.)(ln\d*|norm)\.weight$/`): 1
 * - biases (names ending in `bias`, layer-norm betas included): 0.02·N(0, 1)
 * - `embeddings.cls` and `embeddings.pos`: 0.02·N(0, 1)
 * - other weights: N(0, 1)/√fan_in, where fan_in is the product of all
 *   dimensions but the last (shape[0] for a 2-D [in, out] weight), or 1 for
 *   rank 0 and 1
 *
 * Each tensor draws from its own stream, seeded with hash(name) ^ seed, so a
 * name gets the same values whatever the order or the other parameters.
 *
 * @param params The parameters; names must be unique.
 * @param seed A 32-bit integer; different seeds give different weights.
 * @throws {WeightsError} For a repeated name, an invalid shape or a seed
 *   that is not an integer.
 */
export function randomWeights(
  params: Iterable<ParamSpec>,
  seed = 0,
): Map<string, WeightTensor> {
  if (!Number.isInteger(seed)) {
    throw new WeightsError(`Seed must be an integer, got ${seed}`);
  }
  const out = new Map<string, WeightTensor>();
  for (const { name, shape } of params) {
    if (out.has(name)) {
      throw new WeightsError(`Parameter ${JSON.stringify(name)} is listed twice`);
    }
    let size = 1;
    for (const dim of shape) {
      if (!Number.isSafeInteger(dim) || dim < 0) {
        throw new WeightsError(
          `Parameter ${JSON.stringify(name)} has invalid dimension ${dim} in shape [${shape.join(", ")}]`,
        );
      }
      size *= dim;
    }
    out.set(name, { shape: [...shape], data: initialise(name, shape, size, seed) });
  }
  return out;
}

function initialise(
  name: string,
  shape: readonly number[],
  size: number,
  seed: number,
): Float32Array {
  const data = new Float32Array(size);
  if (GAMMA.test(name)) return data.fill(1);
  let scale: number;
  if (BIAS.test(name) || EMBEDDING.test(name)) {
    scale = 0.02;
  } else {
    let fanIn = 1;
    for (let i = 0; i < shape.length - 1; i++) fanIn *= shape[i]!;
    scale = 1 / Math.sqrt(Math.max(fanIn, 1));
  }
  const normal = gaussian(mulberry32((hash(name) ^ seed) >>> 0));
  for (let i = 0; i < size; i++) data[i] = scale * normal();
  return data;
}

/** 32-bit FNV-1a over the UTF-8 bytes of a string. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    h = Math.imul(h ^ byte, 0x01000193);
  }
  return h >>> 0;
}


/** Standard normal numbers by the Box-Muller transform, two per pair of uniforms. */
function gaussian(uniform: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const value = spare;
      spare = undefined;
      return value;
    }
    const radius = Math.sqrt(-2 * Math.log(1 - uniform())); // 1 - u is in (0, 1]
    const angle = 2 * Math.PI * uniform();
    spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  };
}
