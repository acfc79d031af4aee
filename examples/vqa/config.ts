/**
 * The two-digit MNIST VQA model: its configuration, its question vocabulary
 * and the parameter contract shared by the DSL spec (vqa.ts), the eager
 * reference and training forward pass (eager.ts) and the weights file.
 *
 * Single-stream (ViLT-style, `vqaConfig`): one sequence [text class token,
 * the question's words, image class token, image patches]. Dual-stream
 * (BLIP-style, `vqaDualConfig`): an image encoder over [image class token,
 * patches], then a text encoder over [text class token, words] whose blocks
 * cross-attend to the encoded image tokens. The answer is read from the text
 * class token in both.
 */

export interface VqaConfig {
  name: string;
  /** Image height and width in pixels (two 28×28 digits side by side). */
  height: number;
  width: number;
  /** Square patch size; must divide both. */
  patch: number;
  dim: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  eps: number;
}

export const vqaConfig: VqaConfig = {
  name: "vqa",
  height: 28,
  width: 56,
  patch: 4,
  dim: 48,
  depth: 4,
  heads: 3,
  mlpRatio: 2,
  eps: 1e-6,
};

/** The dual-stream model: `depth` image blocks, then `fusion` text blocks with cross-attention. */
export interface VqaDualConfig extends VqaConfig {
  fusion: number;
}

export const vqaDualConfig: VqaDualConfig = { ...vqaConfig, name: "dual", depth: 4, fusion: 2 };

/** The words questions are made of; the id of a word is its index. */
export const vocabulary = ["what", "is", "the", "left", "right", "larger", "digit", "sum", "of", "two", "digits"] as const;

/** Question types, their words (all the same length, so no padding and no mask), and their answer. */
export const questions = {
  left: { words: ["what", "is", "the", "left", "digit"], answer: (l: number, _r: number) => l },
  right: { words: ["what", "is", "the", "right", "digit"], answer: (_l: number, r: number) => r },
  larger: { words: ["what", "is", "the", "larger", "digit"], answer: (l: number, r: number) => Math.max(l, r) },
  sum: { words: ["sum", "of", "the", "two", "digits"], answer: (l: number, r: number) => l + r },
} as const;

export type Question = keyof typeof questions;
export const questionTypes = Object.keys(questions) as Question[];

/** Words per question. */
export const QUESTION_LENGTH = 5;
/** Answers are classes 0 … 18 (the sum reaches 18). */
export const ANSWERS = 19;

/** The token ids of a question type. */
export function questionIds(q: Question): number[] {
  return questions[q].words.map((w) => vocabulary.indexOf(w as (typeof vocabulary)[number]));
}

/** Derived sizes. */
export function vqaDims(c: VqaConfig): { gridH: number; gridW: number; patches: number; textTokens: number; imageTokens: number; tokens: number; patchDim: number; headDim: number; hidden: number } {
  if (c.height % c.patch !== 0 || c.width % c.patch !== 0) throw new Error(`vqa config: patch ${c.patch} must divide ${c.height}×${c.width}`);
  if (c.dim % c.heads !== 0) throw new Error(`vqa config: heads ${c.heads} must divide dim ${c.dim}`);
  const gridH = c.height / c.patch;
  const gridW = c.width / c.patch;
  const patches = gridH * gridW;
  const textTokens = 1 + QUESTION_LENGTH;
  const imageTokens = 1 + patches;
  return { gridH, gridW, patches, textTokens, imageTokens, tokens: textTokens + imageTokens, patchDim: c.patch * c.patch, headDim: c.dim / c.heads, hidden: c.dim * c.mlpRatio };
}

/** Position of the image class token in the sequence. */
export const imageClsPosition = (c: VqaConfig): number => vqaDims(c).textTokens;

type ParamList = Array<{ name: string; shape: number[] }>;

/** The parameters of one pre-norm encoder block `l` (with a cross-attention sub-layer when `cross`). */
function blockParams(l: string, D: number, H: number, cross: boolean): ParamList {
  const attn = (a: string) => ["q", "k", "v", "out"].flatMap((p) => [{ name: `${l}.${a}.${p}.weight`, shape: [D, D] }, { name: `${l}.${a}.${p}.bias`, shape: [D] }]);
  const norm = (n: string) => [{ name: `${l}.${n}.weight`, shape: [D] }, { name: `${l}.${n}.bias`, shape: [D] }];
  return [
    ...norm("ln1"),
    ...attn("attn"),
    ...(cross ? [...norm("ln_cross"), ...attn("cross")] : []),
    ...norm("ln2"),
    { name: `${l}.mlp.fc1.weight`, shape: [D, H] },
    { name: `${l}.mlp.fc1.bias`, shape: [H] },
    { name: `${l}.mlp.fc2.weight`, shape: [H, D] },
    { name: `${l}.mlp.fc2.bias`, shape: [D] },
  ];
}

/** The embeddings of both streams (shared by the two architectures). */
function embeddingParams(c: VqaConfig): ParamList {
  const D = c.dim;
  const { textTokens, imageTokens, patchDim } = vqaDims(c);
  return [
    { name: "text.embeddings.words.weight", shape: [vocabulary.length, D] },
    { name: "text.embeddings.cls", shape: [1, D] },
    { name: "text.embeddings.pos", shape: [textTokens, D] },
    { name: "image.embeddings.patch.weight", shape: [patchDim, D] },
    { name: "image.embeddings.patch.bias", shape: [D] },
    { name: "image.embeddings.cls", shape: [1, D] },
    { name: "image.embeddings.pos", shape: [imageTokens, D] },
  ];
}

/** The final norm and the answer head. */
const headParams = (D: number): ParamList => [{ name: "norm.weight", shape: [D] }, { name: "norm.bias", shape: [D] }, { name: "head.weight", shape: [D, ANSWERS] }, { name: "head.bias", shape: [ANSWERS] }];

/** Every parameter of the dual-stream model, in canonical order, with its shape. */
export function vqaDualParams(c: VqaDualConfig): ParamList {
  const D = c.dim;
  const H = vqaDims(c).hidden;
  return [
    ...embeddingParams(c),
    ...Array.from({ length: c.depth }, (_, n) => blockParams(`image.layer.${n}`, D, H, false)).flat(),
    { name: "image.norm.weight", shape: [D] },
    { name: "image.norm.bias", shape: [D] },
    ...Array.from({ length: c.fusion }, (_, n) => blockParams(`text.layer.${n}`, D, H, true)).flat(),
    ...headParams(D),
  ];
}

/** Every parameter of the single-stream model, in canonical order, with its shape. */
export function vqaParams(c: VqaConfig): ParamList {
  const D = c.dim;
  const H = vqaDims(c).hidden;
  return [...embeddingParams(c), ...Array.from({ length: c.depth }, (_, n) => blockParams(`layer.${n}`, D, H, false)).flat(), ...headParams(D)];
}
