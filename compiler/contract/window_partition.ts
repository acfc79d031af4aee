/**
 * Generation mode's static split of a token grid into destinations (one per
 * window, chosen by the seeded generator) and sources (spec/turbo.md,
 * "Generation mode"). Shared by the tfjs kernel
 * (runtime/kernels/window_merge.ts) and the ONNX rendering
 * (compiler/lower/onnx_window_merge.ts), so both merge into the same tokens.
 *
 * @module
 */

import { mulberry32 } from "./random.ts";

/** The static split of a token grid into destinations and sources. */
export interface WindowPartition {
  /** Tokens: grid rows × grid columns. */
  readonly n: number;
  /** Destination positions (raster order), one per full window. */
  readonly destinations: readonly number[];
  /** Every other position (raster order), tokens outside full windows included. */
  readonly sources: readonly number[];
}

export interface WindowOptions {
  /** Token grid [rows, columns]; rows × columns must be N. */
  grid: readonly [number, number];
  /** Window [sy, sx]. @default {[2, 2]} */
  window?: readonly [number, number];
  /** Seed of the choice inside each window. @default {0} */
  seed?: number;
}

function positiveInteger(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`windowMerge: ${what} ${value} must be a positive integer`);
}

/**
 * The destinations of a grid: windows tile it from the top-left corner; in
 * each full window, taken in raster order, one draw u of mulberry32(seed)
 * picks the cell ⌊u·sy·sx⌋ (raster order inside the window). Rows and columns
 * left over when sy or sx does not divide the grid hold sources only.
 */
export function windowPartition(options: WindowOptions): WindowPartition {
  const [rows, columns] = options.grid;
  const [sy, sx] = options.window ?? [2, 2];
  positiveInteger(rows, "grid rows");
  positiveInteger(columns, "grid columns");
  positiveInteger(sy, "window rows");
  positiveInteger(sx, "window columns");
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed)) throw new RangeError(`windowMerge: seed ${seed} must be an integer`);
  const draw = mulberry32(seed >>> 0);
  const isDestination = new Uint8Array(rows * columns);
  for (let wy = 0; wy + sy <= rows; wy += sy) {
    for (let wx = 0; wx + sx <= columns; wx += sx) {
      const cell = Math.min(sy * sx - 1, Math.floor(draw() * sy * sx));
      isDestination[(wy + Math.floor(cell / sx)) * columns + wx + (cell % sx)] = 1;
    }
  }
  const destinations: number[] = [];
  const sources: number[] = [];
  isDestination.forEach((d, p) => (d ? destinations : sources).push(p));
  return { n: rows * columns, destinations, sources };
}
