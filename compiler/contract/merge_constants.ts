/**
 * The numeric constants of Turbo's merge, shared by the tfjs kernel
 * (runtime/kernels/turbo_merge.ts) and the ONNX rendering of the same step
 * (compiler/lower/onnx_turbo_merge.ts), so both rank tokens identically.
 *
 * @module
 */

/**
 * Added to c·I in the denominator of S2 so that a token the class token does
 * not attend to at all (I = 0) gives a large finite E instead of ±∞ or NaN.
 */
export const S2_EPSILON = 1e-6;

/**
 * Lower bound on ‖metric‖ when normalising: a zero metric row gets cosine 0
 * with every token instead of NaN.
 */
export const NORM_EPSILON = 1e-12;

/** E is clipped to ±DEGREE_LIMIT (NaN to −DEGREE_LIMIT) so that it sorts totally. */
export const DEGREE_LIMIT = 1e38;

/** The class token's E: below every clipped E, so it always sorts last. */
export const CLASS_DEGREE = -3e38;
