/**
 * Weight files and name maps: safetensors reading and writing, the Hugging
 * Face ViT name map, and deterministic random weights.
 *
 * @module
 */

export { WeightsError } from "./errors.ts";
export { encodeSafetensors, parseSafetensors } from "./safetensors.ts";
export type {
  SafetensorsDtype,
  SafetensorsTensor,
  WeightTensor,
  WeightTensors,
} from "./safetensors.ts";
export { fromHfVit, isHfVit, toHfVit } from "./hf_vit.ts";
export type { ToHfVitOptions } from "./hf_vit.ts";
export { randomWeights } from "./random.ts";
export type { ParamSpec } from "./random.ts";
