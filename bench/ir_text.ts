/**
 * How long printing and parsing the IR text of a 12-block model takes: the
 * S/16 ViT's traced graph and its final (canonical) graph, with and without
 * Turbo merges. Prints the median of several runs per step.
 *
 *   npx tsx bench/ir_text.ts [runs]
 */

import { compile } from "../compiler/compile.ts";
import type { Graph } from "../compiler/ir/graph.ts";
import { parseGraph } from "../compiler/ir/parse.ts";
import { printGraph } from "../compiler/ir/print.ts";
import { s16 } from "../examples/vit/vit.ts";

const runs = Number(process.argv[2] ?? 21);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

function time(fn: () => unknown): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

const plain = compile(s16);
const turbo = compile(s16, { turbo: { r: 8 } });
const graphs: [string, Graph][] = [
  ["S/16 traced", plain.traced],
  ["S/16 final", plain.graph],
  ["S/16 + Turbo final", turbo.graph],
];

console.log(`IR text, median of ${runs} runs (after 3 warm-up runs), Node ${process.version}`);
console.log("graph                 nodes   chars    print      parse      print+parse");
for (const [name, g] of graphs) {
  const text = printGraph(g);
  for (let i = 0; i < 3; i++) parseGraph(printGraph(g), "bench.tir");
  const print = median(Array.from({ length: runs }, () => time(() => printGraph(g))));
  const parse = median(Array.from({ length: runs }, () => time(() => parseGraph(text, "bench.tir"))));
  const both = median(Array.from({ length: runs }, () => time(() => parseGraph(printGraph(g), "bench.tir"))));
  console.log(
    `${name.padEnd(20)} ${String(g.nodes.length).padStart(6)} ${String(text.length).padStart(7)} ${print.toFixed(1).padStart(7)} ms ${parse.toFixed(1).padStart(7)} ms ${both.toFixed(1).padStart(10)} ms`,
  );
}
