/**
 * A minimal WebAssembly binary writer: just enough of the format to build
 * one module with functions over an imported memory, using i32, f32 and
 * 128-bit SIMD instructions. Kernels are generated as bytes at load time, so
 * nothing binary is committed and no toolchain is needed.
 *
 * Reference: the WebAssembly core specification, binary format (sections,
 * LEB128 integers, opcodes) and the fixed-width SIMD proposal.
 *
 * @module
 */

export const i32 = 0x7f;
export const f32 = 0x7d;
export const v128 = 0x7b;
export type ValType = typeof i32 | typeof f32 | typeof v128;

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

const utf8 = (s: string) => [...new TextEncoder().encode(s)];
const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];

/** Emits the instructions of one function body; locals are numbered after the parameters. */
export class Code {
  readonly bytes: number[] = [];
  private readonly locals: ValType[] = [];
  constructor(readonly params: readonly ValType[]) {}

  local(type: ValType): number {
    this.locals.push(type);
    return this.params.length + this.locals.length - 1;
  }

  private op(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  private simd(code: number, ...rest: number[]): this {
    return this.op(0xfd, ...uleb(code), ...rest);
  }

  get(i: number) { return this.op(0x20, ...uleb(i)); }
  set(i: number) { return this.op(0x21, ...uleb(i)); }
  tee(i: number) { return this.op(0x22, ...uleb(i)); }
  i32(c: number) { return this.op(0x41, ...sleb(c)); }
  add() { return this.op(0x6a); }
  sub() { return this.op(0x6b); }
  mul() { return this.op(0x6c); }
  shl() { return this.op(0x74); }
  /** Signed a < b. */
  lt() { return this.op(0x48); }
  /** Signed a > b. */
  gt() { return this.op(0x4a); }
  /** Signed a >= b. */
  ge() { return this.op(0x4e); }
  f32load(offset = 0) { return this.op(0x2a, 2, ...uleb(offset)); }
  f32store(offset = 0) { return this.op(0x38, 2, ...uleb(offset)); }
  f32const0() { return this.op(0x43, 0, 0, 0, 0); }
  f32const(v: number) { return this.op(0x43, ...new Uint8Array(new Float32Array([v]).buffer)); }
  f32add() { return this.op(0x92); }
  f32mul() { return this.op(0x94); }
  v128load(offset = 0) { return this.simd(0x00, 0, ...uleb(offset)); }
  v128store(offset = 0) { return this.simd(0x0b, 0, ...uleb(offset)); }
  v128zero() { return this.simd(0x0c, ...new Array(16).fill(0)); }
  f32x4splat() { return this.simd(0x13); }
  f32x4add() { return this.simd(0xe4); }
  f32x4mul() { return this.simd(0xe6); }
  f32x4sub() { return this.simd(0xe5); }
  f32x4div() { return this.simd(0xe7); }
  f32x4min() { return this.simd(0xe8); }
  f32x4max() { return this.simd(0xe9); }
  brIf(depth: number) { return this.op(0x0d, ...uleb(depth)); }
  br(depth: number) { return this.op(0x0c, ...uleb(depth)); }

  /** `block { loop { body } }`: inside, `brIf(1)` leaves and `br(0)` repeats. */
  loop(body: () => void) {
    this.op(0x02, 0x40, 0x03, 0x40);
    body();
    return this.op(0x0b, 0x0b);
  }

  /** The encoded function body (locals and code). */
  encode(): number[] {
    const groups: number[][] = this.locals.map((t) => [1, t]);
    const body = [...vec(groups), ...this.bytes, 0x0b];
    return [...uleb(body.length), ...body];
  }
}

export interface Func {
  name: string;
  code: Code;
}

/** A module importing `env.memory` and exporting the given functions (all returning nothing). */
export function module(funcs: readonly Func[]): Uint8Array<ArrayBuffer> {
  const types = funcs.map((f) => [0x60, ...vec(f.code.params.map((p) => [p])), 0]);
  // import "env" "memory" as a memory of at least one page, no maximum
  const imports = [[...uleb(3), ...utf8("env"), ...uleb(6), ...utf8("memory"), 0x02, 0x00, 0x01]];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, vec(imports)),
    ...section(3, vec(funcs.map((_, i) => uleb(i)))),
    ...section(7, vec(funcs.map((f, i) => [...uleb(utf8(f.name).length), ...utf8(f.name), 0x00, ...uleb(i)]))),
    ...section(10, vec(funcs.map((f) => f.code.encode()))),
  ];
  return new Uint8Array(bytes);
}
