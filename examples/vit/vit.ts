/**
 * The ViT spec in turbograph's DSL, parameterised by `VitConfig`.
 * Compile it with `turbo-compile examples/vit/vit.ts --model s16` (default: tiny).
 */

import { clsToken, encoderBlock, input, layerNorm, linear, model, patchEmbed } from "../../compiler/dsl/mod.ts";
import { vitConfigs, type VitConfig } from "./config.ts";

export const vit = (c: VitConfig) =>
  model(`vit-${c.name}`, () => {
    const pixels = input("pixels", ["B", c.channels, c.image, c.image]);
    let x = patchEmbed(pixels, { patch: c.patch, dim: c.dim, name: "embeddings" });
    for (let i = 0; i < c.depth; i++) {
      x = encoderBlock(x, { heads: c.heads, mlpRatio: c.mlpRatio, eps: c.eps, name: `layer.${i}` });
    }
    const logits = linear(clsToken(layerNorm(x, { eps: c.eps, name: "norm" })), c.classes, { name: "head" });
    return { logits };
  });

export const tiny = vit(vitConfigs.tiny);
export const ti16 = vit(vitConfigs.ti16);
export const s16 = vit(vitConfigs.s16);
export const b16 = vit(vitConfigs.b16);
export const mnist = vit(vitConfigs.mnist);
export default tiny;
