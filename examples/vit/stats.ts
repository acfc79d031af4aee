/** Small statistics the evaluations share: argmax per row, McNemar's exact test, the median. */

/** The index of the largest value in each row of `classes` values. */
export function argmaxRows(values: Float32Array | Int32Array | Uint8Array, classes: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < values.length / classes; i++) {
    let best = 0;
    for (let k = 1; k < classes; k++) if (values[i * classes + k]! > values[i * classes + best]!) best = k;
    out.push(best);
  }
  return out;
}

/** Two-sided exact binomial (sign) test of b successes against c, p = 1/2: McNemar's exact test. */
export function signTestP(b: number, c: number): number {
  const n = b + c;
  if (n === 0) return 1;
  const k = Math.min(b, c);
  let logP = -n * Math.LN2; // log P(X = 0)
  let tail = Math.exp(logP);
  for (let i = 1; i <= k; i++) {
    logP += Math.log((n - i + 1) / i);
    tail += Math.exp(logP);
  }
  return Math.min(1, 2 * tail);
}

/** The median of a non-empty list. */
export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

