/**
 * Why Turbo's textual semantic value does or does not change the merges:
 * where the text class token (and, for comparison, the image class token)
 * looks in each block of the unmerged VQA model, and how redundant the
 * image tokens are. Used by experiment.ts; the eager model (eager.ts)
 * exposes each block's attention and keys.
 */

import * as tf from "@tensorflow/tfjs-core";
import type { MnistSplit } from "../vit/mnist_data.ts";
import { QUESTION_LENGTH, questionTypes, vqaDims, type Question, type VqaConfig } from "./config.ts";
import { makeBatch, PAIR_HEIGHT, PAIR_WIDTH } from "./data.ts";
import { eagerVqa } from "./eager.ts";

/** Attention mass of one query row, split by where the keys are (fractions summing to 1). */
export interface RowMass {
  text: number;
  imageCls: number;
  leftHalf: number;
  rightHalf: number;
}

export interface BlockAnalysis {
  question: Question;
  block: number;
  /** The text class token's row (the semantic value of `turbo-text`). */
  textCls: RowMass;
  /** The image class token's row (the semantic value of `turbo-visual`). */
  imageCls: RowMass;
  /** Mean over the image tokens of set A of their best cosine similarity with an image token of B (ToMe's R). */
  redundancy: number;
  /** Spearman correlation, over the image tokens of A, between R and the text class token's attention (averaged over samples). */
  rankCorrelation: number;
  /**
   * Spearman correlation, over the image tokens of A, between the text class
   * token's attention under this question and under the first question
   * type ("left") on the same image (averaged over samples): 1 means the
   * semantic value ranks the image tokens the same whatever is asked.
   */
  sameAsFirstQuestion: number;
}

function ranks(v: readonly number[]): number[] {
  const order = v.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
  const r = new Array<number>(v.length);
  order.forEach(([, i], k) => (r[i] = k));
  return r;
}

function spearman(a: readonly number[], b: readonly number[]): number {
  const [ra, rb] = [ranks(a), ranks(b)];
  const n = a.length;
  const mean = (n - 1) / 2;
  let [num, da, db] = [0, 0, 0];
  for (let i = 0; i < n; i++) {
    num += (ra[i]! - mean) * (rb[i]! - mean);
    da += (ra[i]! - mean) ** 2;
    db += (rb[i]! - mean) ** 2;
  }
  return num / Math.sqrt(da * db);
}

/** The analysis on `pairs` test pairs, each asked every question. */
export function analyseAttention(c: VqaConfig, params: ReadonlyMap<string, tf.Tensor>, test: MnistSplit, pairs: ReadonlyArray<readonly [number, number]>): BlockAnalysis[] {
  const { textTokens, gridW, tokens } = vqaDims(c);
  const first = textTokens + 1;
  const out: BlockAnalysis[] = [];
  /** The text class token's attention over the image tokens of A, per block and sample, under the first question type. */
  const firstRows = new Map<number, number[][]>();
  for (const question of questionTypes) {
    const b = makeBatch(test, pairs.map(([l, r]) => [l, r, question] as const));
    const q = tf.tensor2d(b.question, [b.count, QUESTION_LENGTH], "int32");
    const x = tf.tensor4d(b.pixels, [b.count, 1, PAIR_HEIGHT, PAIR_WIDTH]);
    const logits = eagerVqa(c, params, q, x, undefined, ({ block, probs, metric }) => {
      const rows = tf.tidy(() => tf.mean(probs, 1).arraySync() as number[][][]); // [B, t, t]
      const m = tf.tidy(() => {
        const unit = tf.div(metric, tf.maximum(tf.norm(metric, 2, -1, true), 1e-12));
        return tf.matMul(unit, unit, false, true).arraySync() as number[][][]; // [B, t, t] cosines
      });
      const mass = (row: number[]): RowMass => {
        const acc = { text: 0, imageCls: 0, leftHalf: 0, rightHalf: 0 };
        row.forEach((v, k) => {
          if (k < textTokens) acc.text += v;
          else if (k === textTokens) acc.imageCls += v;
          else if ((k - first) % gridW < gridW / 2) acc.leftHalf += v;
          else acc.rightHalf += v;
        });
        return acc;
      };
      const mean = (xs: RowMass[]): RowMass => ({
        text: xs.reduce((s, r) => s + r.text, 0) / xs.length,
        imageCls: xs.reduce((s, r) => s + r.imageCls, 0) / xs.length,
        leftHalf: xs.reduce((s, r) => s + r.leftHalf, 0) / xs.length,
        rightHalf: xs.reduce((s, r) => s + r.rightHalf, 0) / xs.length,
      });
      let [red, corr, same, count] = [0, 0, 0, 0];
      const rowsI: number[][] = [];
      for (let s = 0; s < b.count; s++) {
        const R: number[] = [];
        const I: number[] = [];
        for (let a = first; a < tokens; a++) {
          if (a % 2 !== 0) continue; // set A: even positions
          let best = -Infinity;
          for (let k = first; k < tokens; k++) if (k % 2 === 1) best = Math.max(best, m[s]![a]![k]!);
          R.push(best);
          I.push(rows[s]![0]![a]!);
        }
        red += R.reduce((u, v) => u + v, 0) / R.length;
        corr += spearman(R, I);
        same += question === questionTypes[0] ? 1 : spearman(I, firstRows.get(block)![s]!);
        rowsI.push(I);
        count++;
      }
      if (question === questionTypes[0]) firstRows.set(block, rowsI);
      out.push({ question, block, textCls: mean(rows.map((r) => mass(r[0]!))), imageCls: mean(rows.map((r) => mass(r[textTokens]!))), redundancy: red / count, rankCorrelation: corr / count, sameAsFirstQuestion: same / count });
    });
    tf.dispose([q, x, logits]);
  }
  return out;
}
