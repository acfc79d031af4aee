/**
 * The error thrown for problems in user-supplied weights: a malformed
 * safetensors file, an unexpected tensor name, a tensor of the wrong shape.
 *
 * Callers can test `error instanceof WeightsError` to tell such user errors
 * apart from bugs.
 *
 * @module
 */

/** A problem with user-supplied weights (a file, a tensor name or a shape). */
export class WeightsError extends Error {
  override name = "WeightsError";

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}
