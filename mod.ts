/**
 * turbograph: describe attention models in a TypeScript DSL, compile them to
 * statically planned TensorFlow.js programs, run them with `load()`.
 *
 *   spec ─trace─▶ IR ─passes─▶ program ─emit─▶ module + plan ─load()─▶ run()
 *
 * @module
 */
export * from "./compiler/mod.ts";
export * from "./runtime/mod.ts";
export { mergedCount, turboMerge } from "./runtime/kernels/turbo_merge.ts";
export type { Fusion, TurboMergeInputs, TurboMergeOptions, TurboMergeResult } from "./runtime/kernels/turbo_merge.ts";
