/**
 * The two-digit MNIST VQA model in turbograph's DSL: one sequence
 * [text class token, question words, image class token, 4×4 patches]
 * through pre-norm encoder blocks; the answer is read from the text class
 * token. Compile it with `turbo-compile examples/vqa/vqa.ts --turbo r=8`:
 * the compiler finds from the graph that the first 7 tokens (the text
 * segment from the embedding, and the image class token) are protected and
 * that position 0, the text class token, gives the semantic value.
 *
 * `vqa(c, { mask: true })` adds an input `mask` [B, 6] (1 for the text
 * class token and each real word, 0 for padding) and the key-padding mask
 * it gives every block's attention; it survives merging because it is zero
 * past the protected text (spec/turbo.md, "Padding").
 */

import { add, broadcast, clsToken, concat, embedding, encoderBlock, input, keyPadding, layerNorm, linear, model, param, patchEmbed, reshape } from "../../compiler/dsl/mod.ts";
import { ANSWERS, QUESTION_LENGTH, vocabulary, vqaConfig, vqaDims, type VqaConfig } from "./config.ts";

export const vqa = (c: VqaConfig, o: { mask?: boolean } = {}) =>
  model(`vqa-${c.name}${o.mask === true ? "-masked" : ""}`, () => {
    const { textTokens, patches } = vqaDims(c);
    const question = input("question", ["B", QUESTION_LENGTH], { dtype: "i32" });
    const pixels = input("pixels", ["B", 1, c.height, c.width]);
    const words = embedding(question, { vocab: vocabulary.length, dim: c.dim, name: "text.embeddings.words" });
    const cls = broadcast(reshape(param("text.embeddings.cls", [1, c.dim]), [1, 1, c.dim]), ["B", 1, c.dim]);
    const text = add(concat([cls, words], 1), param("text.embeddings.pos", [textTokens, c.dim]));
    const image = patchEmbed(pixels, { patch: c.patch, dim: c.dim, name: "image.embeddings" });
    let x = concat([text, image], 1);
    const mask = o.mask === true ? { mask: keyPadding(input("mask", ["B", textTokens]), textTokens + 1 + patches) } : {};
    for (let i = 0; i < c.depth; i++) x = encoderBlock(x, { heads: c.heads, mlpRatio: c.mlpRatio, eps: c.eps, name: `layer.${i}`, ...mask });
    const answer = linear(clsToken(layerNorm(x, { eps: c.eps, name: "norm" })), ANSWERS, { name: "head" });
    return { answer };
  });

export default vqa(vqaConfig);
