/** The DSL: builders users call inside `model()`, and `trace()`. */
export { block, input, isModelSpec, model, trace, Tensor } from "./trace.ts";
export type { ModelOptions, ModelSpec, TraceOptions } from "./trace.ts";
export { add, broadcast, clsToken, concat, gelu, log, matmul, mean, mul, param, reshape, scale, slice, softmax, transpose } from "./primitives.ts";
export type { SliceOptions } from "./primitives.ts";
export { attention, encoderBlock, layerNorm, linear, mlp, patchEmbed } from "./layers.ts";
export { einsum, rearrange, reduce } from "./einops.ts";
export type { AxisSizes, Reduction } from "./einops.ts";
export type { AttentionOptions, EncoderBlockOptions, LayerNormOptions, LinearOptions, MlpOptions, PatchEmbedOptions } from "./layers.ts";
