/** The DSL: builders users call inside `model()`, and `trace()`. */
export { block, input, isModelSpec, model, trace, Tensor } from "./trace.ts";
export type { InputOptions, ModelOptions, ModelSpec, TraceOptions } from "./trace.ts";
export { add, broadcast, clsToken, concat, cos, exp, full, gather, gelu, log, matmul, mean, mul, param, reshape, scale, sigmoid, silu, sin, slice, softmax, transpose } from "./primitives.ts";
export type { SliceOptions } from "./primitives.ts";
export { attention, ditBlock, embedding, encoderBlock, keyPadding, layerNorm, linear, mlp, modulate, patchEmbed, timestepEmbedding } from "./layers.ts";
export { einsum, rearrange, reduce } from "./einops.ts";
export type { AxisSizes, Reduction } from "./einops.ts";
export type { AttentionOptions, DitBlockOptions, EmbeddingOptions, EncoderBlockOptions, LayerNormOptions, LinearOptions, MlpOptions, PatchEmbedOptions, TimestepEmbeddingOptions } from "./layers.ts";
