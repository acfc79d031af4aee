/**
 * Generation mode's merge and restore (runtime/kernels/window_merge.ts)
 * against a plain-loop reference written here from spec/turbo.md: the window
 * choice, which sources merge where, the merged values, the output order and
 * the restore order; on cpu and wasm. Plus: restore(merge(x)) gives an
 * unmerged token back bit for bit, a sample gives the same bits alone and in a
 * batch, runs repeat exactly, and errors name the argument.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";
import { restore, windowMerge, windowPartition } from "../../../runtime/kernels/window_merge.ts";
import { mulberry32 } from "../../../runtime/weights/random.ts";

tf.env().set("PROD", true);
const BACKENDS = ["cpu", "wasm"] as const;

async function useBackend(name: string): Promise<void> {
  assert.ok(await tf.setBackend(name), `backend ${name}`);
  await tf.ready();
}

// --------------------------------------------------------------- reference

/** spec/turbo.md's window rule, written out: a 2-D walk over full windows, one draw each. */
function referenceDestinations(rows: number, columns: number, sy: number, sx: number, seed: number): Set<number> {
  const u = mulberry32(seed);
  const chosen = new Set<number>();
  const windowsDown = Math.floor(rows / sy);
  const windowsAcross = Math.floor(columns / sx);
  for (let i = 0; i < windowsDown; i++) {
    for (let j = 0; j < windowsAcross; j++) {
      const k = Math.floor(u() * sx * sy);
      const dy = Math.floor(k / sx);
      const dx = k - dy * sx;
      chosen.add((i * sy + dy) * columns + (j * sx + dx));
    }
  }
  return chosen;
}

interface Sample {
  x: number[][];
  metric: number[][];
  semantic: number[];
}

function makeSample(seed: number, n: number, width: number, metricWidth: number): Sample {
  const u = mulberry32(seed * 7919 + 13);
  const f = Math.fround;
  const centres = Array.from({ length: Math.max(2, n >> 3) }, () => Array.from({ length: metricWidth }, () => 2 * u() - 1));
  const logits = Array.from({ length: n }, () => 2 * (2 * u() - 1));
  const total = logits.reduce((s, l) => s + Math.exp(l), 0);
  return {
    x: Array.from({ length: n }, () => Array.from({ length: width }, () => f(2 * u() - 1))),
    metric: Array.from({ length: n }, () => {
      const c = centres[Math.floor(u() * centres.length)]!;
      return c.map((v) => f(v + 0.5 * (2 * u() - 1)));
    }),
    semantic: logits.map((l) => f(Math.exp(l) / total)),
  };
}

interface Expected {
  /** The merged tokens, in output order. */
  x: number[][];
  /** For each original position, the output row it takes back. */
  restore: number[];
  /** Smallest gap behind a decision, to skip samples float32 could flip. */
  margin: number;
}

function referenceMerge(s: Sample, rows: number, columns: number, o: { sy: number; sx: number; seed: number; r: number; alpha: number; scale: number }): Expected {
  const n = rows * columns;
  const dst = referenceDestinations(rows, columns, o.sy, o.sx, o.seed);
  const B = [...dst].sort((a, b) => a - b);
  const A = Array.from({ length: n }, (_, p) => p).filter((p) => !dst.has(p));
  const r = Math.min(o.r, A.length);
  const norm = (v: number[]) => {
    const l = Math.max(Math.hypot(...v), 1e-12);
    return v.map((t) => t / l);
  };
  const unit = s.metric.map(norm);
  let margin = Infinity;
  const best = A.map((a) => {
    let top = -Infinity;
    let second = -Infinity;
    let at = -1;
    B.forEach((b, j) => {
      const dot = unit[a]!.reduce((acc, v, k) => acc + v * unit[b]![k]!, 0);
      if (dot > top) [second, top, at] = [top, dot, j];
      else if (dot > second) second = dot;
    });
    return { a, R: top, j: at, gap: top - second, E: top - o.alpha * o.scale * s.semantic[a]! };
  });
  const order = best.map((_, i) => i).sort((p, q) => best[q]!.E - best[p]!.E || p - q);
  const moving = new Set(order.slice(0, r));
  for (const i of moving) margin = Math.min(margin, best[i]!.gap);
  if (r > 0 && r < order.length) margin = Math.min(margin, best[order[r - 1]!]!.E - best[order[r]!]!.E);
  const staying = best.map((_, i) => i).filter((i) => !moving.has(i)); // position order
  const groups = B.map((b) => [b]);
  for (const i of moving) groups[best[i]!.j]!.push(best[i]!.a);
  const mean = (ps: number[]) => s.x[0]!.map((_, k) => ps.reduce((acc, p) => acc + s.x[p]![k]!, 0) / ps.length);
  const x = [...staying.map((i) => [...s.x[best[i]!.a]!]), ...groups.map(mean)];
  const restoreRows = new Array<number>(n);
  staying.forEach((i, t) => (restoreRows[best[i]!.a] = t));
  B.forEach((b, j) => (restoreRows[b] = staying.length + j));
  for (const i of moving) restoreRows[best[i]!.a] = staying.length + best[i]!.j;
  return { x, restore: restoreRows, margin };
}

function clearSamples(count: number, seed: number, rows: number, columns: number, width: number, o: Parameters<typeof referenceMerge>[3]): [Sample[], Expected[]] {
  const samples: Sample[] = [];
  const expected: Expected[] = [];
  for (let attempt = 0; samples.length < count; attempt++) {
    if (attempt > 500) throw new Error("no clear sample");
    const s = makeSample(seed * 1000 + attempt, rows * columns, width, 6);
    const e = referenceMerge(s, rows, columns, o);
    if (e.margin >= 1e-4) {
      samples.push(s);
      expected.push(e);
    }
  }
  return [samples, expected];
}

function tensors(samples: Sample[]) {
  const n = samples[0]!.x.length;
  return {
    x: tf.tensor3d(samples.map((s) => s.x)),
    metric: tf.tensor3d(samples.map((s) => s.metric)),
    semantic: tf.tensor2d(samples.map((s) => s.semantic), [samples.length, n]),
  };
}

function close(actual: ArrayLike<number>, expected: number[], tol: number, what: string): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i]! - expected[i]!) <= tol * Math.max(1, Math.abs(expected[i]!)))) {
      assert.unreachable(`${what}: element ${i} is ${actual[i]}, the reference ${expected[i]}`);
    }
  }
}

// ------------------------------------------------------------------- tests

test("`windowPartition()` puts one destination in each full window, where the seeded draw says", () => {
  for (const [rows, columns, sy, sx] of [[4, 4, 2, 2], [14, 14, 2, 2], [7, 5, 2, 2], [6, 6, 3, 2], [5, 4, 1, 4]] as const) {
    for (const seed of [0, 1, 77]) {
      const p = windowPartition({ grid: [rows, columns], window: [sy, sx], seed });
      const want = referenceDestinations(rows, columns, sy, sx, seed);
      assert.equal(p.destinations, [...want].sort((a, b) => a - b), `${rows}×${columns} ${sy}×${sx} seed ${seed}`);
      assert.is(p.destinations.length, Math.floor(rows / sy) * Math.floor(columns / sx));
      assert.is(p.destinations.length + p.sources.length, rows * columns);
      // Each full window holds exactly one destination; leftover rows and columns hold none.
      const perWindow = new Map<string, number>();
      for (const d of p.destinations) {
        const [y, x] = [Math.floor(d / columns), d % columns];
        assert.ok(y < Math.floor(rows / sy) * sy && x < Math.floor(columns / sx) * sx, `destination ${d} outside the full windows`);
        const key = `${Math.floor(y / sy)},${Math.floor(x / sx)}`;
        perWindow.set(key, (perWindow.get(key) ?? 0) + 1);
      }
      assert.ok([...perWindow.values()].every((c) => c === 1));
    }
  }
  const a = windowPartition({ grid: [14, 14], seed: 3 }).destinations;
  assert.equal(windowPartition({ grid: [14, 14], seed: 3 }).destinations, a, "same seed, same destinations");
  assert.not.equal(windowPartition({ grid: [14, 14], seed: 4 }).destinations, a, "another seed, other destinations");
});

const CASES = [
  { rows: 4, columns: 4, sy: 2, sx: 2, seed: 0, r: 6, alpha: 0, scale: 30, b: 2, width: 5 },
  { rows: 4, columns: 4, sy: 2, sx: 2, seed: 9, r: 12, alpha: 0, scale: 30, b: 1, width: 3 }, // every source merges
  { rows: 7, columns: 5, sy: 2, sx: 2, seed: 2, r: 10, alpha: 5, scale: 30, b: 3, width: 4 }, // leftover row and column
  { rows: 14, columns: 14, sy: 2, sx: 2, seed: 1, r: 98, alpha: 0, scale: 30, b: 2, width: 8 }, // 50 % of 196
  { rows: 14, columns: 14, sy: 2, sx: 2, seed: 1, r: 137, alpha: 5, scale: 100, b: 2, width: 8 }, // 70 %
  { rows: 6, columns: 6, sy: 3, sx: 2, seed: 5, r: 500, alpha: 2, scale: 30, b: 2, width: 4 }, // clamped
  { rows: 6, columns: 8, sy: 2, sx: 2, seed: 4, r: 1, alpha: 0, scale: 30, b: 2, width: 4 },
];

for (const backend of BACKENDS) {
  test(`\`windowMerge()\` and \`restore()\` match the reference on ${backend}`, async () => {
    await useBackend(backend);
    CASES.forEach((c, i) => {
      const name = JSON.stringify(c);
      const [samples, expected] = clearSamples(c.b, 100 + i, c.rows, c.columns, c.width, c);
      const t = tensors(samples);
      const m = windowMerge(t, { grid: [c.rows, c.columns], window: [c.sy, c.sx], seed: c.seed, r: c.r, alpha: c.alpha, scale: c.scale });
      const n = c.rows * c.columns;
      const out = n - m.merged;
      assert.is(m.merged, Math.min(c.r, n - Math.floor(c.rows / c.sy) * Math.floor(c.columns / c.sx)), `${name}: merged`);
      assert.equal(m.x.shape, [c.b, out, c.width], `${name}: shape`);
      close(m.x.dataSync(), expected.flatMap((e) => e.x.flat()), 1e-5, `${name}: merged tokens`);
      assert.equal(Array.from(m.restoreRows.dataSync()), expected.flatMap((e, b) => e.restore.map((row) => b * out + row)), `${name}: restore rows`);
      const back = restore(m.x, m.restoreRows, n);
      assert.equal(back.shape, [c.b, n, c.width], `${name}: restored shape`);
      const merged = m.x.arraySync();
      back.arraySync().forEach((rows, b) => rows.forEach((row, p) => assert.equal(row, merged[b]![expected[b]!.restore[p]!]!, `${name}: position ${p}`)));
      tf.dispose([m.x, m.restoreRows, back, ...Object.values(t)]);
    });
  });

  test(`restore(merge(x)) gives every unmerged source and unfed destination back bit for bit on ${backend}`, async () => {
    await useBackend(backend);
    const c = { rows: 14, columns: 14, sy: 2, sx: 2, seed: 6, r: 98, alpha: 0, scale: 30 };
    const [samples, expected] = clearSamples(2, 900, 14, 14, 6, c);
    const t = tensors(samples);
    const m = windowMerge(t, { grid: [14, 14], seed: 6, r: 98 });
    const back = restore(m.x, m.restoreRows, 196).arraySync();
    const x = t.x.arraySync();
    let exact = 0;
    expected.forEach((e, b) => {
      const counts = new Map<number, number>();
      for (const row of e.restore) counts.set(row, (counts.get(row) ?? 0) + 1);
      e.restore.forEach((row, p) => {
        if (counts.get(row) === 1) {
          assert.equal(back[b]![p], x[b]![p], `sample ${b} position ${p}: an unmerged token comes back exactly`);
          exact++;
        }
      });
    });
    assert.ok(exact > 100, `${exact} positions checked`);
    const none = windowMerge(t, { grid: [14, 14], seed: 6, r: 0 });
    assert.equal(restore(none.x, none.restoreRows, 196).arraySync(), x, "r = 0 is the identity");
    tf.dispose([m.x, m.restoreRows, none.x, none.restoreRows, ...Object.values(t)]);
  });
}

test("a sample gives the same bits alone and at each batch position, and runs repeat exactly", async () => {
  await useBackend("wasm");
  const samples = [0, 1, 2].map((i) => makeSample(40 + i, 64, 8, 6));
  const batch = tensors(samples);
  const o = { grid: [8, 8] as const, seed: 2, r: 24, alpha: 5, scale: 30 };
  const a = windowMerge(batch, o);
  const again = windowMerge(batch, o);
  assert.equal(Array.from(again.x.dataSync()), Array.from(a.x.dataSync()), "repeat: tokens");
  assert.equal(Array.from(again.restoreRows.dataSync()), Array.from(a.restoreRows.dataSync()), "repeat: restore rows");
  const restoredBatch = restore(a.x, a.restoreRows, 64).arraySync();
  samples.forEach((s, b) => {
    const alone = tensors([s]);
    const m = windowMerge(alone, o);
    assert.equal(restore(m.x, m.restoreRows, 64).arraySync()[0], restoredBatch[b], `batch position ${b}`);
    tf.dispose([m.x, m.restoreRows, ...Object.values(alone)]);
  });
  tf.dispose([a.x, a.restoreRows, again.x, again.restoreRows, ...Object.values(batch)]);
});

test("`windowMerge()` leaves only its outputs and names bad arguments", async () => {
  await useBackend("cpu");
  const t = tensors([makeSample(1, 16, 4, 6)]);
  const before = tf.memory().numTensors;
  const m = windowMerge(t, { grid: [4, 4], r: 4, alpha: 1 });
  assert.is(tf.memory().numTensors, before + 2);
  tf.dispose([m.x, m.restoreRows]);
  const throws = (f: () => unknown, pattern: RegExp) => assert.throws(f, (e: Error) => pattern.test(e.message));
  throws(() => windowMerge(t, { grid: [4, 5], r: 4 }), /grid 4×5 has 20 tokens, but x has 16/);
  throws(() => windowMerge({ x: t.x, metric: t.metric }, { grid: [4, 4], r: 4, alpha: 2 }), /alpha 2 needs the semantic value/);
  throws(() => windowMerge(t, { grid: [4, 4], r: -1 }), /r -1 must be a non-negative integer/);
  throws(() => windowMerge(t, { grid: [4, 4], window: [0, 2], r: 1 }), /window rows 0 must be a positive integer/);
  throws(() => restore(t.x, tf.tensor1d([0, 1], "int32"), 16), /restoreRows has 2 rows, expected 1·16/);
  tf.dispose(Object.values(t));
});

test.run();
