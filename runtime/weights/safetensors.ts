/**
 * Reading and writing the safetensors weight format.
 *
 * Layout: an 8-byte little-endian unsigned header length N, then N bytes of
 * UTF-8 JSON header, then the data buffer. The header maps each tensor name
 * to `{ dtype, shape, data_offsets: [begin, end] }` (offsets relative to the
 * start of the data buffer) and may hold a `__metadata__` object of strings.
 *
 * Only web-standard APIs are used, so this module runs under Node and Deno.
 *
 * @module
 */

import { WeightsError } from "./errors.ts";

/** The element types {@linkcode parseSafetensors} understands. */
export type SafetensorsDtype = "F32" | "F16" | "BF16";

/** A tensor as plain data: a row-major Float32Array and its shape. */
export interface WeightTensor {
  shape: number[];
  data: Float32Array;
}

/** A tensor read from a safetensors file, converted to float32. */
export interface SafetensorsTensor extends WeightTensor {
  /** The element type stored in the file. */
  dtype: SafetensorsDtype;
}

/** Named tensors, either as a Map or as a plain object. */
export type WeightTensors =
  | ReadonlyMap<string, WeightTensor>
  | Readonly<Record<string, WeightTensor>>;

/** Headers larger than this are rejected, as the reference implementation does. */
const MAX_HEADER_BYTES = 100_000_000;

const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = {
  F32: 4,
  F16: 2,
  BF16: 2,
};

const METADATA_KEY = "__metadata__";

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Parses a safetensors file and converts every tensor to float32.
 *
 * @param bytes The whole file.
 * @param source A name for the file (usually its path), used as the prefix
 *   of error messages.
 * @returns The tensors in header order.
 * @throws {WeightsError} If the file is malformed or holds a dtype other
 *   than F32, F16 or BF16. The message starts with `${source}: `.
 */
export function parseSafetensors(
  bytes: Uint8Array,
  source = "<bytes>",
): Map<string, SafetensorsTensor> {
  if (bytes.length < 8) {
    throw failure(
      source,
      `file is ${bytes.length} bytes, shorter than the 8-byte header length prefix`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const declared = view.getBigUint64(0, true);
  if (declared > BigInt(MAX_HEADER_BYTES)) {
    throw failure(
      source,
      `header length ${declared} bytes exceeds the limit of ${MAX_HEADER_BYTES} bytes (100 MB)`,
    );
  }
  const headerLength = Number(declared);
  if (headerLength > bytes.length - 8) {
    throw failure(
      source,
      `header length ${headerLength} bytes is larger than the ${bytes.length - 8} bytes after the length prefix`,
    );
  }

  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(
      bytes.subarray(8, 8 + headerLength),
    );
  } catch {
    throw failure(source, "header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? `: ${error.message}` : "";
    throw failure(source, `header is not valid JSON${reason}`);
  }
  if (!isObject(header)) {
    throw failure(
      source,
      `header is not a JSON object but ${describeJson(header)}`,
    );
  }

  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  const entries: Entry[] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      checkMetadata(source, value);
      continue;
    }
    entries.push(checkEntry(source, name, value, dataLength));
  }
  checkOverlaps(source, entries);

  const tensors = new Map<string, SafetensorsTensor>();
  for (const entry of entries) {
    const start = dataStart + entry.begin;
    const count = (entry.end - entry.begin) / DTYPE_BYTES[entry.dtype];
    tensors.set(entry.name, {
      dtype: entry.dtype,
      shape: entry.shape,
      data: decode(bytes, start, count, entry.dtype),
    });
  }
  return tensors;
}

/**
 * Encodes tensors as a safetensors file with dtype F32.
 *
 * The header is padded with spaces to a multiple of 8 bytes, and tensors are
 * laid out in the data buffer in sorted-name order.
 *
 * @param tensors The tensors to write.
 * @param metadata Optional string pairs stored under `__metadata__`.
 * @throws {WeightsError} If a tensor's data length does not match its shape,
 *   a shape is invalid, or a tensor is named `__metadata__`.
 */
export function encodeSafetensors(
  tensors: WeightTensors,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const list = isMap(tensors) ? [...tensors] : Object.entries(tensors);
  list.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

  // A null-prototype object, so a tensor named "__proto__" is an own key.
  const header: Record<string, unknown> = Object.create(null);
  if (metadata !== undefined) {
    const copy: Record<string, string> = Object.create(null);
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== "string") {
        throw new WeightsError(
          `Metadata value for ${JSON.stringify(key)} is ${describeJson(value)}, expected a string`,
        );
      }
      copy[key] = value;
    }
    header[METADATA_KEY] = copy;
  }
  let offset = 0;
  for (const [name, tensor] of list) {
    if (name === METADATA_KEY) {
      throw new WeightsError(
        `Tensor name ${JSON.stringify(name)} is reserved for metadata`,
      );
    }
    const shape = [...tensor.shape];
    const bad = shape.find((dim) => !Number.isSafeInteger(dim) || dim < 0);
    if (bad !== undefined) {
      throw new WeightsError(
        `Tensor ${JSON.stringify(name)} has invalid dimension ${bad} in shape ${formatShape(shape)}`,
      );
    }
    if (!(tensor.data instanceof Float32Array)) {
      throw new WeightsError(
        `Tensor ${JSON.stringify(name)} data is not a Float32Array`,
      );
    }
    const size = product(shape);
    if (tensor.data.length !== size) {
      throw new WeightsError(
        `Tensor ${JSON.stringify(name)} has ${tensor.data.length} values but shape ${formatShape(shape)} needs ${size}`,
      );
    }
    header[name] = {
      dtype: "F32",
      shape,
      data_offsets: [offset, offset + size * 4],
    };
    offset += size * 4;
  }

  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);

  let position = 8 + padded;
  for (const [, tensor] of list) {
    const data = tensor.data;
    if (LITTLE_ENDIAN) {
      out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), position);
    } else {
      for (let i = 0; i < data.length; i++) {
        view.setFloat32(position + 4 * i, data[i]!, true);
      }
    }
    position += data.byteLength;
  }
  return out;
}

interface Entry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

function checkEntry(
  source: string,
  name: string,
  value: unknown,
  dataLength: number,
): Entry {
  const tensor = `tensor ${JSON.stringify(name)}`;
  if (!isObject(value)) {
    throw failure(
      source,
      `${tensor} has header entry ${describeJson(value)}, expected an object`,
    );
  }
  for (const field of ["dtype", "shape", "data_offsets"]) {
    if (!Object.hasOwn(value, field)) {
      throw failure(source, `${tensor} is missing "${field}"`);
    }
  }

  const dtype = value["dtype"];
  if (typeof dtype !== "string") {
    throw failure(
      source,
      `${tensor} has dtype ${describeJson(dtype)}, expected a string`,
    );
  }
  if (!Object.hasOwn(DTYPE_BYTES, dtype)) {
    throw failure(
      source,
      `${tensor} has unsupported dtype ${JSON.stringify(dtype)} (supported: F32, F16, BF16)`,
    );
  }
  const elementBytes = DTYPE_BYTES[dtype as SafetensorsDtype];

  const shape = value["shape"];
  if (!Array.isArray(shape)) {
    throw failure(
      source,
      `${tensor} has shape ${describeJson(shape)}, expected an array`,
    );
  }
  for (const dim of shape) {
    if (typeof dim !== "number" || !Number.isSafeInteger(dim) || dim < 0) {
      throw failure(
        source,
        `${tensor} has invalid dimension ${JSON.stringify(dim)} in shape ${JSON.stringify(shape)}; dimensions must be non-negative integers`,
      );
    }
  }

  const offsets = value["data_offsets"];
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((o) =>
      typeof o === "number" && Number.isSafeInteger(o) && o >= 0
    )
  ) {
    throw failure(
      source,
      `${tensor} has invalid data_offsets ${JSON.stringify(offsets)}, expected [begin, end] with non-negative integers`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) {
    throw failure(
      source,
      `${tensor} has data_offsets [${begin}, ${end}] with begin after end`,
    );
  }
  if (end > dataLength) {
    throw failure(
      source,
      `${tensor} has data_offsets [${begin}, ${end}] outside the ${dataLength}-byte data buffer`,
    );
  }
  const needed = product(shape as number[]) * elementBytes;
  if (end - begin !== needed) {
    throw failure(
      source,
      `${tensor} with dtype ${dtype} and shape ${formatShape(shape as number[])} needs ${needed} bytes but data_offsets [${begin}, ${end}] hold ${end - begin} bytes`,
    );
  }
  return {
    name,
    dtype: dtype as SafetensorsDtype,
    shape: [...(shape as number[])],
    begin,
    end,
  };
}

function checkMetadata(source: string, value: unknown): void {
  if (!isObject(value)) {
    throw failure(
      source,
      `"${METADATA_KEY}" is ${describeJson(value)}, expected an object of strings`,
    );
  }
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== "string") {
      throw failure(
        source,
        `"${METADATA_KEY}" value for ${JSON.stringify(key)} is ${describeJson(item)}, expected a string`,
      );
    }
  }
}

/**
 * Rejects tensors whose (non-empty) byte ranges overlap. Sorted by start,
 * any overlap shows up between neighbours.
 */
function checkOverlaps(source: string, entries: readonly Entry[]): void {
  const ranges = entries
    .filter((entry) => entry.end > entry.begin)
    .sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < ranges.length; i++) {
    const previous = ranges[i - 1]!;
    const entry = ranges[i]!;
    if (entry.begin < previous.end) {
      throw failure(
        source,
        `tensors ${JSON.stringify(previous.name)} (bytes ${previous.begin}..${previous.end}) and ${JSON.stringify(entry.name)} (bytes ${entry.begin}..${entry.end}) overlap`,
      );
    }
  }
}

function decode(
  bytes: Uint8Array,
  start: number,
  count: number,
  dtype: SafetensorsDtype,
): Float32Array {
  const out = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case "F32":
      if (LITTLE_ENDIAN) {
        // Copying bytes also handles data that is not 4-byte aligned.
        new Uint8Array(out.buffer).set(bytes.subarray(start, start + 4 * count));
      } else {
        for (let i = 0; i < count; i++) {
          out[i] = view.getFloat32(start + 4 * i, true);
        }
      }
      break;
    case "F16": {
      const table = f16Table();
      for (let i = 0; i < count; i++) {
        out[i] = table[view.getUint16(start + 2 * i, true)]!;
      }
      break;
    }
    case "BF16": {
      // bfloat16 is the top half of a float32's bits.
      const words = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) {
        words[i] = view.getUint16(start + 2 * i, true) << 16;
      }
      break;
    }
  }
  return out;
}

let f16Values: Float32Array | undefined;

/** All 65536 float16 values as float32, indexed by bit pattern. */
function f16Table(): Float32Array {
  if (f16Values === undefined) {
    f16Values = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) f16Values[bits] = f16ToF32(bits);
  }
  return f16Values;
}

/** Converts an IEEE 754 binary16 bit pattern to its value. */
function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero, subnormal
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

function failure(source: string, message: string): WeightsError {
  return new WeightsError(`${source}: ${message}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isMap(
  tensors: WeightTensors,
): tensors is ReadonlyMap<string, WeightTensor> {
  return tensors instanceof Map;
}

function describeJson(value: unknown): string {
  if (value === undefined) return "undefined";
  if (Array.isArray(value)) return `an array ${truncate(JSON.stringify(value))}`;
  if (value === null) return "null";
  if (typeof value === "object") return "an object";
  return `${typeof value} ${truncate(JSON.stringify(value))}`;
}

function truncate(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function product(shape: readonly number[]): number {
  let size = 1;
  for (const dim of shape) size *= dim;
  return size;
}

function formatShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
