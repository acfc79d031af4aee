/**
 * The token-merging methods the MNIST evaluation compares (examples/vit/eval.ts)
 * and the test checks against the eager oracle (test/examples/mnist_turbo.test.ts),
 * each as the options of `compile(spec, { turbo })`. The same object is a valid
 * `EagerTurbo` for `eagerVit`, so both paths merge the same way.
 *
 * @module
 */

import type { TurboOptions } from "../../compiler/passes/insert_turbo.ts";
import type { EagerTurbo } from "./eager.ts";

export type MethodId = "none" | "tome" | "semantic" | "turbo-s1" | "turbo-s2";

export interface MergeMethod {
  id: MethodId;
  /** Name in tables and plots. */
  label: string;
  /** How E is formed, in words (for RESULTS.md). */
  rule: string;
  /** Compile options for Υ = r and a token floor, or undefined for no merging. */
  options(r: number, threshold: number): (TurboOptions & EagerTurbo) | undefined;
}

/**
 * α for "semantic value only". There is no fusion without R, so this is S1
 * with α so large that α·c·I dominates: E = R − α·c·I with α·c = 3·10⁵, while
 * R ∈ [−1, 1]. Two tokens are then ranked by R only when their class
 * attentions differ by less than 2/(α·c) ≈ 7·10⁻⁶ (the mean attention is
 * 1/197 ≈ 5·10⁻³). Destinations stay the most similar token, as in every
 * method.
 */
export const SEMANTIC_ONLY_ALPHA = 1e4;

export const noMerging: MergeMethod = {
  id: "none",
  label: "no merging",
  rule: "no merge",
  options: () => undefined,
};

export const mergeMethods: readonly MergeMethod[] = [
  {
    id: "tome",
    label: "ToMe (α = 0)",
    rule: "E = R (mutual redundancy only)",
    options: (r, threshold) => ({ r, threshold, alpha: 0 }),
  },
  {
    id: "semantic",
    label: "semantic only",
    rule: `E = R − α·c·I with α = ${SEMANTIC_ONLY_ALPHA}, c = 30 (S1; I decides, R only breaks near-ties)`,
    options: (r, threshold) => ({ r, threshold, alpha: SEMANTIC_ONLY_ALPHA, scale: 30, fusion: "S1" }),
  },
  {
    id: "turbo-s1",
    label: "Turbo S1",
    rule: "E = R − α·c·I with α = 5, c = 30",
    options: (r, threshold) => ({ r, threshold, alpha: 5, scale: 30, fusion: "S1" }),
  },
  {
    id: "turbo-s2",
    label: "Turbo S2",
    rule: "E = R / (c·I + 10⁻⁶) with c = 30",
    options: (r, threshold) => ({ r, threshold, alpha: 5, scale: 30, fusion: "S2" }),
  },
];

export const allMethods: readonly MergeMethod[] = [noMerging, ...mergeMethods];

export function methodById(id: string): MergeMethod {
  const m = allMethods.find((x) => x.id === id);
  if (m === undefined) throw new Error(`unknown method "${id}"; expected one of ${allMethods.map((x) => x.id).join(", ")}`);
  return m;
}
