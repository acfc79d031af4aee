import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  encodeSafetensors,
  parseSafetensors,
  WeightsError,
} from "../../../runtime/weights/mod.ts";

/** Builds a safetensors file from a header (object or raw text) and data bytes. */
function rawFile(header: unknown, data: ArrayLike<number> = []): Uint8Array {
  const text = typeof header === "string" ? header : JSON.stringify(header);
  const json = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** Little-endian bytes of 16-bit patterns. */
function u16Bytes(bits: readonly number[]): Uint8Array {
  const out = new Uint8Array(2 * bits.length);
  const view = new DataView(out.buffer);
  bits.forEach((b, i) => view.setUint16(2 * i, b, true));
  return out;
}

/** Asserts that parsing throws a WeightsError prefixed with the source and containing each part. */
function rejects(bytes: Uint8Array, parts: readonly string[]): string {
  let caught: unknown;
  try {
    parseSafetensors(bytes, "model.safetensors");
  } catch (error) {
    caught = error;
  }
  assert.instance(caught, WeightsError, "expected a WeightsError");
  const message = (caught as WeightsError).message;
  assert.ok(
    message.startsWith("model.safetensors: "),
    `message should start with the source: ${message}`,
  );
  for (const part of parts) {
    assert.ok(message.includes(part), `message should mention ${part}: ${message}`);
  }
  return message;
}

function sameValues(actual: Float32Array, expected: readonly number[]): void {
  assert.is(actual.length, expected.length, "length");
  expected.forEach((value, i) => {
    assert.ok(
      Object.is(actual[i], value),
      `element ${i}: expected ${Object.is(value, -0) ? "-0" : value}, got ${Object.is(actual[i], -0) ? "-0" : actual[i]}`,
    );
  });
}

test("`encodeSafetensors()` and `parseSafetensors()` round-trip exact values", () => {
  const values = [
    0, -0, 1, -2.5, Math.fround(Math.PI), Math.fround(1e-40), 3.4028234663852886e38,
    Infinity, -Infinity, NaN, Math.fround(-1 / 3), 7,
  ];
  const tensors = new Map([
    ["b", { shape: [3, 4], data: new Float32Array(values) }],
    ["a.scalar", { shape: [], data: new Float32Array([42]) }],
    ["a.empty", { shape: [0, 5], data: new Float32Array(0) }],
  ]);
  const parsed = parseSafetensors(encodeSafetensors(tensors));
  assert.equal([...parsed.keys()].sort(), ["a.empty", "a.scalar", "b"]);
  const b = parsed.get("b")!;
  assert.is(b.dtype, "F32");
  assert.equal(b.shape, [3, 4]);
  sameValues(b.data, values);
  assert.equal(parsed.get("a.scalar")!.shape, []);
  sameValues(parsed.get("a.scalar")!.data, [42]);
  assert.equal(parsed.get("a.empty")!.shape, [0, 5]);
  assert.is(parsed.get("a.empty")!.data.length, 0);
});

test("`encodeSafetensors()` accepts a plain object and writes metadata", () => {
  const bytes = encodeSafetensors(
    { w: { shape: [2], data: new Float32Array([1, 2]) } },
    { format: "pt", note: "hi" },
  );
  const length = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)));
  assert.equal(header.__metadata__, { format: "pt", note: "hi" });
  assert.equal(header.w, { dtype: "F32", shape: [2], data_offsets: [0, 8] });
  sameValues(parseSafetensors(bytes).get("w")!.data, [1, 2]);
});

test("`encodeSafetensors()` pads the header with spaces to a multiple of 8 bytes", () => {
  for (const name of ["a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh"]) {
    const bytes = encodeSafetensors(new Map([[name, { shape: [1], data: new Float32Array([5]) }]]));
    const length = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert.is(length % 8, 0, `header length for ${name}`);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + length));
    const json = text.replace(/ +$/, "");
    assert.ok(json.endsWith("}"), "only spaces follow the JSON");
    assert.ok(text.length - json.length < 8, "at most 7 padding spaces");
    assert.equal(Object.keys(JSON.parse(json)), [name]);
    assert.is(bytes.length, 8 + length + 4);
  }
});

test("`encodeSafetensors()` lays tensors out in sorted-name order", () => {
  const bytes = encodeSafetensors({
    zeta: { shape: [1], data: new Float32Array([3]) },
    alpha: { shape: [2], data: new Float32Array([1, 1]) },
    mid: { shape: [1], data: new Float32Array([2]) },
  });
  const length = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)));
  assert.equal(header.alpha.data_offsets, [0, 8]);
  assert.equal(header.mid.data_offsets, [8, 12]);
  assert.equal(header.zeta.data_offsets, [12, 16]);
});

test("`encodeSafetensors()` rejects data that does not match the shape", () => {
  assert.throws(
    () => encodeSafetensors({ w: { shape: [2, 2], data: new Float32Array(3) } }),
    (error: unknown) =>
      error instanceof WeightsError && /"w"/.test(error.message) &&
      error.message.includes("[2, 2]") && error.message.includes("3"),
  );
});

test("`parseSafetensors()` reads F32 data that is not 4-byte aligned", () => {
  const file = encodeSafetensors({ w: { shape: [3], data: new Float32Array([1.5, -2, 8]) } });
  const shifted = new Uint8Array(file.length + 1);
  shifted.set(file, 1);
  sameValues(parseSafetensors(shifted.subarray(1)).get("w")!.data, [1.5, -2, 8]);
});

test("`parseSafetensors()` decodes F16 bit patterns", () => {
  const cases: Array<[number, number]> = [
    [0x0000, 0],
    [0x8000, -0],
    [0x3c00, 1],
    [0xc000, -2],
    [0x3555, 0.333251953125],
    [0x7bff, 65504],
    [0x0400, 2 ** -14], // smallest normal
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x8001, -(2 ** -24)],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
    [0x7e00, NaN],
    [0x7c01, NaN],
    [0xfe00, NaN],
  ];
  const file = rawFile(
    { h: { dtype: "F16", shape: [cases.length], data_offsets: [0, 2 * cases.length] } },
    u16Bytes(cases.map(([bits]) => bits)),
  );
  const tensor = parseSafetensors(file).get("h")!;
  assert.is(tensor.dtype, "F16");
  sameValues(tensor.data, cases.map(([, value]) => value));
});

test("`parseSafetensors()` decodes BF16 bit patterns", () => {
  const cases: Array<[number, number]> = [
    [0x0000, 0],
    [0x8000, -0],
    [0x3f80, 1],
    [0xc040, -3],
    [0x4049, 3.140625],
    [0x3e20, 0.15625],
    [0x0001, 2 ** -133], // subnormal
    [0x7f7f, 3.3895313892515355e38], // largest finite
    [0x7f80, Infinity],
    [0xff80, -Infinity],
    [0x7fc0, NaN],
  ];
  const file = rawFile(
    { b: { dtype: "BF16", shape: [cases.length], data_offsets: [0, 2 * cases.length] } },
    u16Bytes(cases.map(([bits]) => bits)),
  );
  const tensor = parseSafetensors(file).get("b")!;
  assert.is(tensor.dtype, "BF16");
  sameValues(tensor.data, cases.map(([, value]) => value));
});

test("`parseSafetensors()` uses the data offsets, not the header order", () => {
  const data = new Uint8Array(8);
  new DataView(data.buffer).setFloat32(0, 2, true);
  new DataView(data.buffer).setFloat32(4, 1, true);
  const file = rawFile({
    first: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
    second: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
    __metadata__: { format: "pt" },
  }, data);
  const parsed = parseSafetensors(file);
  assert.equal([...parsed.keys()], ["first", "second"]);
  sameValues(parsed.get("first")!.data, [1]);
  sameValues(parsed.get("second")!.data, [2]);
});

test("`parseSafetensors()` uses <bytes> as the default source", () => {
  assert.throws(
    () => parseSafetensors(new Uint8Array(3)),
    (error: unknown) => error instanceof Error && error.message.startsWith("<bytes>: "),
  );
});

test("`parseSafetensors()` rejects a truncated file", () => {
  rejects(new Uint8Array(5), ["5 bytes", "shorter than"]);
  rejects(new Uint8Array(0), ["0 bytes"]);
});

test("`parseSafetensors()` rejects a header length larger than the file", () => {
  const file = rawFile({});
  new DataView(file.buffer).setBigUint64(0, 1000n, true);
  rejects(file, ["header length 1000", `${file.length - 8} bytes`]);
});

test("`parseSafetensors()` rejects a header length over 100 MB", () => {
  const file = new Uint8Array(16);
  new DataView(file.buffer).setBigUint64(0, 200_000_000n, true);
  rejects(file, ["200000000", "100 MB"]);
  new DataView(file.buffer).setBigUint64(0, 2n ** 64n - 1n, true);
  rejects(file, ["18446744073709551615", "100 MB"]);
});

test("`parseSafetensors()` rejects a header that is not valid JSON", () => {
  rejects(rawFile('{"w": {"dtype": "F32",'), ["not valid JSON"]);
  rejects(rawFile("{'w': 1}"), ["not valid JSON"]);
});

test("`parseSafetensors()` rejects a header that is not valid UTF-8", () => {
  const file = new Uint8Array(8 + 3);
  new DataView(file.buffer).setBigUint64(0, 3n, true);
  file.set([0x22, 0xff, 0x22], 8);
  rejects(file, ["not valid UTF-8"]);
});

test("`parseSafetensors()` rejects a header that is not a JSON object", () => {
  rejects(rawFile("[1, 2]"), ["not a JSON object", "array"]);
  rejects(rawFile("null"), ["not a JSON object", "null"]);
  rejects(rawFile("42"), ["not a JSON object", "42"]);
});

test("`parseSafetensors()` rejects an entry that is not an object", () => {
  rejects(rawFile({ w: 5 }), ['"w"', "expected an object"]);
});

test("`parseSafetensors()` rejects an entry missing dtype, shape or data_offsets", () => {
  const full = { dtype: "F32", shape: [1], data_offsets: [0, 4] };
  for (const field of ["dtype", "shape", "data_offsets"] as const) {
    const entry: Record<string, unknown> = { ...full };
    delete entry[field];
    rejects(rawFile({ "enc.w": entry }, new Uint8Array(4)), ['"enc.w"', "missing", field]);
  }
});

test("`parseSafetensors()` rejects an unsupported dtype naming it and the tensor", () => {
  rejects(
    rawFile({ ids: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)),
    ['"ids"', '"I64"', "unsupported dtype"],
  );
  rejects(
    rawFile({ ids: { dtype: 3, shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)),
    ['"ids"', "dtype number 3"],
  );
});

test("`parseSafetensors()` rejects negative or non-integer shape dimensions", () => {
  rejects(
    rawFile({ w: { dtype: "F32", shape: [2, -1], data_offsets: [0, 0] } }),
    ['"w"', "-1", "[2,-1]"],
  );
  rejects(
    rawFile({ w: { dtype: "F32", shape: [1.5], data_offsets: [0, 4] } }, new Uint8Array(4)),
    ['"w"', "1.5"],
  );
  rejects(
    rawFile({ w: { dtype: "F32", shape: ["2"], data_offsets: [0, 8] } }, new Uint8Array(8)),
    ['"w"', '"2"'],
  );
  rejects(rawFile({ w: { dtype: "F32", shape: 2, data_offsets: [0, 8] } }), ['"w"', "shape number 2"]);
});

test("`parseSafetensors()` rejects malformed data_offsets", () => {
  rejects(rawFile({ w: { dtype: "F32", shape: [1], data_offsets: [0] } }), ['"w"', "data_offsets [0]"]);
  rejects(
    rawFile({ w: { dtype: "F32", shape: [1], data_offsets: [-4, 0] } }),
    ['"w"', "data_offsets [-4,0]"],
  );
});

test("`parseSafetensors()` rejects offsets outside the data buffer", () => {
  rejects(
    rawFile({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, new Uint8Array(12)),
    ['"w"', "[0, 16]", "12-byte data buffer"],
  );
});

test("`parseSafetensors()` rejects begin after end", () => {
  rejects(
    rawFile({ w: { dtype: "F32", shape: [1], data_offsets: [8, 4] } }, new Uint8Array(8)),
    ['"w"', "[8, 4]", "begin after end"],
  );
});

test("`parseSafetensors()` rejects a byte count that does not match the shape", () => {
  rejects(
    rawFile({ "layer.0.w": { dtype: "F32", shape: [2, 3], data_offsets: [0, 20] } }, new Uint8Array(24)),
    ['"layer.0.w"', "[2, 3]", "24 bytes", "20 bytes"],
  );
  rejects(
    rawFile({ h: { dtype: "F16", shape: [3], data_offsets: [0, 12] } }, new Uint8Array(12)),
    ['"h"', "[3]", "6 bytes", "12 bytes", "F16"],
  );
});

test("`parseSafetensors()` rejects overlapping tensors naming both", () => {
  const message = rejects(
    rawFile({
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    }, new Uint8Array(12)),
    ['"a"', '"b"', "overlap"],
  );
  assert.ok(message.includes("0..8") && message.includes("4..12"), message);
  // A range nested inside an earlier, longer one.
  rejects(
    rawFile({
      outer: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      mid: { dtype: "F32", shape: [1], data_offsets: [16, 20] },
      inner: { dtype: "F32", shape: [1], data_offsets: [8, 12] },
    }, new Uint8Array(20)),
    ['"outer"', '"inner"', "overlap"],
  );
});

test("`parseSafetensors()` accepts adjacent and empty tensors that share an offset", () => {
  const parsed = parseSafetensors(rawFile({
    a: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
    e: { dtype: "F32", shape: [0], data_offsets: [4, 4] },
    b: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
  }, new Uint8Array(8)));
  assert.equal([...parsed.keys()], ["a", "e", "b"]);
});

test("`parseSafetensors()` rejects metadata that is not an object of strings", () => {
  rejects(rawFile({ __metadata__: { epochs: 3 } }), ["__metadata__", '"epochs"', "number 3"]);
  rejects(rawFile({ __metadata__: "pt" }), ["__metadata__", 'string "pt"']);
});

test.run();
