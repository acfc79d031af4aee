/**
 * The panels of a merge picture: from a compiled model's `sources` output
 * ([B, N_final, N_0]: which original tokens each final token stands for),
 * colour every pixel by the final token its patch ended up in. Patches merged
 * into one token share a colour; patches never merged are grey; brightness
 * is the digit's ink. Used by `eval.ts` (merges.png) and `demo.ts`.
 */

import { MNIST_SIZE } from "./mnist_data.ts";
import { cssColor, tokenPalette, type MergePanel } from "./plots.ts";

/** The input digits themselves, in grey, as the first row. */
export function inputPanels(images: Float32Array, count: number, row: string, columns: readonly string[]): MergePanel[] {
  const per = MNIST_SIZE * MNIST_SIZE;
  return Array.from({ length: count }, (_, i) => ({
    row,
    column: columns[i]!,
    colors: Array.from(images.subarray(i * per, (i + 1) * per), (v) => cssColor([v, v, v])),
  }));
}

/** Where the patches are: the image size and the token of patch 0 (after the class token, or a text segment). */
export interface PanelGeometry {
  height: number;
  width: number;
  firstPatch: number;
}

/**
 * One panel per image of the batch. Token `firstPatch + p` is patch p of a
 * `patch`×`patch` grid over the image, row-major (by default a 28×28 digit
 * after one class token).
 */
export function mergePanels(
  sources: Float32Array | Int32Array | Uint8Array,
  shape: readonly [number, number, number],
  images: Float32Array,
  patch: number,
  row: string,
  columns: readonly string[],
  geometry: PanelGeometry = { height: MNIST_SIZE, width: MNIST_SIZE, firstPatch: 1 },
): MergePanel[] {
  const [batch, nFinal, nAll] = shape;
  const { height, width, firstPatch } = geometry;
  const per = height * width;
  const grid = width / patch;
  const panels: MergePanel[] = [];
  for (let i = 0; i < batch; i++) {
    // owner[t] = the final token that original token t ended up in; size = how many it holds.
    const owner = new Int32Array(nAll).fill(-1);
    const size = new Int32Array(nFinal);
    for (let f = 0; f < nFinal; f++) {
      for (let t = 0; t < nAll; t++) {
        if (sources[(i * nFinal + f) * nAll + t]! > 0.5) {
          if (owner[t] !== -1) throw new Error(`internal: token ${t} is in two final tokens`);
          owner[t] = f;
          size[f]!++;
        }
      }
    }
    if (owner.some((o) => o === -1)) throw new Error("internal: an original token is in no final token");
    // Colour merged groups by a palette over the groups (in order of their first patch).
    const groupColor = new Map<number, [number, number, number]>();
    const groups: number[] = [];
    for (let t = firstPatch; t < nAll; t++) if (size[owner[t]!]! > 1 && !groups.includes(owner[t]!)) groups.push(owner[t]!);
    const palette = tokenPalette(groups.length);
    groups.forEach((g, k) => groupColor.set(g, palette[k]!));
    const colors: string[] = [];
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const p = Math.floor(y / patch) * grid + Math.floor(x / patch);
        const c = groupColor.get(owner[firstPatch + p]!) ?? [0.55, 0.55, 0.55];
        const shade = 0.3 + 0.7 * images[i * per + y * width + x]!;
        colors.push(cssColor([c[0] * shade, c[1] * shade, c[2] * shade]));
      }
    }
    panels.push({ row, column: columns[i]!, colors });
  }
  return panels;
}
