/**
 * The dual-stream (BLIP-style) two-digit MNIST VQA model in turbograph's
 * DSL: an image encoder over [image class token, 4×4 patches], then a text
 * encoder over [text class token, question words] whose blocks cross-attend
 * to the encoded image tokens; the answer is read from the text class token.
 *
 *   turbo-compile examples/vqa/dual.ts --turbo r=16
 *
 * The compiler finds from the graph that the image stream is the one that
 * merges (its self-attention comes first; the text's is a second stream),
 * that the image class token is protected and gives the semantic value, and
 * that the text's cross-attention reads the merged tokens, so it gets their
 * sizes (proportional attention).
 */

import { add, broadcast, clsToken, concat, embedding, encoderBlock, input, layerNorm, linear, model, param, patchEmbed, reshape } from "../../compiler/dsl/mod.ts";
import { ANSWERS, QUESTION_LENGTH, vocabulary, vqaDims, vqaDualConfig, type VqaDualConfig } from "./config.ts";

export const vqaDual = (c: VqaDualConfig) =>
  model(`vqa-${c.name}`, () => {
    const { textTokens } = vqaDims(c);
    const question = input("question", ["B", QUESTION_LENGTH], { dtype: "i32" });
    const pixels = input("pixels", ["B", 1, c.height, c.width]);
    let image = patchEmbed(pixels, { patch: c.patch, dim: c.dim, name: "image.embeddings" });
    for (let i = 0; i < c.depth; i++) image = encoderBlock(image, { heads: c.heads, mlpRatio: c.mlpRatio, eps: c.eps, name: `image.layer.${i}` });
    image = layerNorm(image, { eps: c.eps, name: "image.norm" });
    const words = embedding(question, { vocab: vocabulary.length, dim: c.dim, name: "text.embeddings.words" });
    const cls = broadcast(reshape(param("text.embeddings.cls", [1, c.dim]), [1, 1, c.dim]), ["B", 1, c.dim]);
    let text = add(concat([cls, words], 1), param("text.embeddings.pos", [textTokens, c.dim]));
    for (let i = 0; i < c.fusion; i++) text = encoderBlock(text, { heads: c.heads, mlpRatio: c.mlpRatio, eps: c.eps, context: image, name: `text.layer.${i}` });
    const answer = linear(clsToken(layerNorm(text, { eps: c.eps, name: "norm" })), ANSWERS, { name: "head" });
    return { answer };
  });

export default vqaDual(vqaDualConfig);
