/**
 * The MNIST evaluation's pictures, drawn with Vega-Lite (compiled to Vega and
 * rendered headlessly to SVG) and converted to PNG with resvg. Text uses
 * DejaVu Sans when the system has it (resvg reads the system's fonts).
 *
 * @module
 */

import { Resvg } from "@resvg/resvg-js";
import * as vega from "vega";
import { compile as compileVegaLite, type TopLevelSpec } from "vega-lite";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/** Renders a Vega-Lite spec to a PNG file (white background, `scale` × its pixel size). */
export async function renderPng(spec: TopLevelSpec, path: string, scale = 1.25): Promise<number> {
  const view = new vega.View(vega.parse(compileVegaLite(spec).spec), { renderer: "none" });
  const svg = await view.toSVG(scale);
  view.finalize();
  const png = new Resvg(svg, {
    background: "white",
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
  }).render().asPng();
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, png);
  return png.length;
}

const font = { font: "DejaVu Sans", labelFont: "DejaVu Sans", titleFont: "DejaVu Sans" };
const config = {
  font: "DejaVu Sans",
  axis: { labelFont: font.labelFont, titleFont: font.titleFont, grid: true },
  legend: { labelFont: font.labelFont, titleFont: font.titleFont, labelLimit: 400 },
  header: { labelFont: font.labelFont, titleFont: font.titleFont },
  title: { font: font.titleFont, anchor: "start" as const },
};

export interface SpeedPoint {
  method: string;
  upsilon: number;
  threshold: number;
  accuracy: number;
  imagesPerSecond: number;
  flopsFraction: number;
}

/**
 * The paper's Figure 4: accuracy against throughput, one line per method
 * (Υ grows along each line, from the unmerged model), and the same against
 * FLOPs (which, unlike images/s, does not depend on the machine's load).
 * `baseline` is the unmerged model, drawn as a black square.
 */
export function speedSpec(points: readonly SpeedPoint[], baseline: SpeedPoint, title: string, methodOrder: readonly string[]): TopLevelSpec {
  const color = { field: "method", type: "nominal" as const, title: "method", sort: [...methodOrder], scale: { domain: [...methodOrder] } };
  const y = { field: "accuracy", type: "quantitative" as const, title: "test accuracy (%)", scale: { zero: false } };
  const values = [
    ...methodOrder.map((method) => ({ ...baseline, method, label: "" })),
    ...points.map((p) => ({ ...p, label: `Υ${p.upsilon}` })),
  ];
  const base = [{ ...baseline, label: "no merging" }];
  const layer = (x: object) => ({
    layer: [
      { data: { values }, mark: { type: "line" as const, point: { size: 50 } }, encoding: { x, y, color, order: { field: "upsilon" } } },
      { data: { values }, mark: { type: "text" as const, dy: -9, fontSize: 9 }, encoding: { x, y, text: { field: "label" }, color } },
      { data: { values: base }, mark: { type: "square" as const, size: 90, color: "black" }, encoding: { x, y } },
      { data: { values: base }, mark: { type: "text" as const, dy: 14, fontSize: 10, color: "black" }, encoding: { x, y, text: { field: "label" } } },
    ],
  });
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title,
    config,
    hconcat: [
      { width: 380, height: 300, ...layer({ field: "imagesPerSecond", type: "quantitative", title: "images/s (higher is faster)", scale: { zero: false } }) },
      { width: 380, height: 300, ...layer({ field: "flopsFraction", type: "quantitative", title: "FLOPs ÷ unmerged FLOPs (right is cheaper)", scale: { reverse: true, zero: false } }) },
    ],
  } as TopLevelSpec;
}

/** The paper's Figure 3: token redundancy S and attention concentration C per block. */
export function redundancySpec(blocks: ReadonlyArray<{ block: number; S: number; C: number }>, title: string): TopLevelSpec {
  const values = blocks.flatMap((b) => [
    { block: b.block + 1, measure: "token redundancy S", value: 100 * b.S },
    { block: b.block + 1, measure: "attention concentration C", value: 100 * b.C },
  ]);
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title,
    config,
    width: 420,
    height: 260,
    data: { values },
    layer: [
      {
        mark: { type: "line", point: { size: 60 } },
        encoding: {
          x: { field: "block", type: "ordinal", title: "encoder block", axis: { labelAngle: 0 } },
          y: { field: "value", type: "quantitative", title: "%", scale: { domain: [0, 100] } },
          color: { field: "measure", type: "nominal", title: null, legend: { orient: "bottom" } },
        },
      },
      {
        mark: { type: "text", dy: -10, fontSize: 10 },
        encoding: {
          x: { field: "block", type: "ordinal" },
          y: { field: "value", type: "quantitative" },
          text: { field: "value", type: "quantitative", format: ".0f" },
          color: { field: "measure", type: "nominal" },
        },
      },
    ],
  } as TopLevelSpec;
}

export interface MergePanel {
  /** Row title, e.g. "ToMe (α = 0), Υ = 24: 53 tokens". */
  row: string;
  /** Column title, e.g. "test image 125 (digit 0)". */
  column: string;
  /** One CSS colour per pixel, row-major over the image. */
  colors: readonly string[];
}

/** A grid of images (`size` pixels square, or [height, width]) drawn pixel by pixel: one titled row per method, one column per image. */
export function mergeSpec(panels: readonly MergePanel[], size: number | readonly [number, number], title: string, rowOrder: readonly string[], columnOrder: readonly string[]): TopLevelSpec {
  const cell = 5;
  const [height, width] = typeof size === "number" ? [size, size] : size;
  const rowSpec = (row: string, first: boolean) => ({
    title: { text: row, fontSize: 12, anchor: "start" as const },
    data: { values: panels.filter((p) => p.row === row).flatMap((p) => p.colors.map((c, i) => ({ column: p.column, x: i % width, y: Math.floor(i / width), c }))) },
    facet: {
      column: { field: "column", type: "nominal", title: null, sort: [...columnOrder], header: first ? { labelFontSize: 11 } : { labels: false } },
    },
    spacing: 8,
    spec: {
      width: width * cell,
      height: height * cell,
      // The stroke in the fill's colour closes the hairline seams between neighbouring cells.
      mark: { type: "rect", strokeWidth: 0.6 },
      encoding: {
        x: { field: "x", type: "ordinal", axis: null, scale: { paddingInner: 0, paddingOuter: 0 } },
        y: { field: "y", type: "ordinal", axis: null, scale: { paddingInner: 0, paddingOuter: 0 } },
        color: { field: "c", type: "nominal", scale: null, legend: null },
        stroke: { field: "c", type: "nominal", scale: null, legend: null },
      },
    },
  });
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title,
    config: { ...config, view: { stroke: null } },
    vconcat: rowOrder.map((row, i) => rowSpec(row, i === 0)),
    spacing: 10,
  } as TopLevelSpec;
}

/**
 * A colour for each of `count` tokens: hues a golden angle apart, so tokens
 * next to each other in the list get clearly different colours.
 */
export function tokenPalette(count: number): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = [];
  for (let i = 0; i < count; i++) {
    const h = (i * 137.508) % 360;
    const s = i % 2 === 0 ? 0.85 : 0.65;
    const l = [0.55, 0.42, 0.68][i % 3]!;
    out.push(hslToRgb(h, s, l));
  }
  return out;
}

function hslToRgb(h: number, s: number, l: number): [number, number, number] {
  const c = (1 - Math.abs(2 * l - 1)) * s;
  const x = c * (1 - Math.abs(((h / 60) % 2) - 1));
  const m = l - c / 2;
  const [r, g, b] = h < 60 ? [c, x, 0] : h < 120 ? [x, c, 0] : h < 180 ? [0, c, x] : h < 240 ? [0, x, c] : h < 300 ? [x, 0, c] : [c, 0, x];
  return [r + m, g + m, b + m];
}

export function cssColor([r, g, b]: readonly [number, number, number]): string {
  const hex = (v: number) => Math.round(Math.min(1, Math.max(0, v)) * 255).toString(16).padStart(2, "0");
  return `#${hex(r)}${hex(g)}${hex(b)}`;
}
