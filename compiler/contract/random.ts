/**
 * The project's one seeded generator, shared by everything that must draw
 * the same numbers on both sides of the compiler/runtime line: initial
 * weights (runtime/weights/random.ts), generation mode's window destinations
 * (window_partition.ts, used by the tfjs kernel and the ONNX rendering alike)
 * and the examples' data order.
 *
 * @module
 */

/** The mulberry32 generator: uniform numbers in [0, 1) from a 32-bit state. */
export function mulberry32(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
