/**
 * A WebAssembly SIMD kernel for batched matmul on the tfjs wasm backend.
 *
 * tfjs-backend-wasm sends only 2-D untransposed matmuls to XNNPACK; batched
 * ones ([B·h, N, d]·[B·h, d, M], attention's q·kᵀ and p·v) run a scalar loop
 * at about 1–2 GFLOP/s on our machines. This kernel computes each batch slice
 * with f32x4 vectors, a 2-row × 16-column register block (8 accumulators),
 * column blocks outermost so each block of B stays in cache,
 * reading the operands straight from the tfjs wasm heap (it imports the
 * backend's memory), so nothing is copied.
 *
 * `registerSimdMatmul()` installs it as the wasm backend's BatchMatMul for
 * float32 operands with batch > 1 (broadcast batch of 1 allowed); a transposed
 * b is transposed explicitly first. Every other case (2-D, transposed a) goes
 * to the stock kernel, which stays the best for 2-D.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { Code, f32, i32, module, v128 } from "./wasm_asm.ts";

/** mm(a, b, c, n, k, m): C[n,m] = A[n,k]·B[k,m], row-major, byte pointers; k ≥ 1. */
function matmulCode(): Code {
  const c = new Code([i32, i32, i32, i32, i32, i32]);
  const [A, B, C, N, , M] = [0, 1, 2, 3, 4, 5];
  const K = 4;
  const kb = c.local(i32), mb = c.local(i32), i = c.local(i32), jb = c.local(i32), bp = c.local(i32), pEnd = c.local(i32);
  const rowA = [c.local(i32), c.local(i32)], rowC = [c.local(i32), c.local(i32)], ap = [c.local(i32), c.local(i32)];
  const acc = Array.from({ length: 8 }, () => c.local(v128));
  const bv = Array.from({ length: 4 }, () => c.local(v128));
  const av = [c.local(v128), c.local(v128)];
  const s = [c.local(f32), c.local(f32)];

  c.get(K).i32(2).shl().set(kb);
  c.get(M).i32(2).shl().set(mb);

  /** Points rowA/rowC at rows i (and i+1). */
  const rowPointers = (rows: number) => {
    c.get(A).get(i).get(kb).mul().add().set(rowA[0]!);
    c.get(C).get(i).get(mb).mul().add().set(rowC[0]!);
    if (rows === 2) {
      c.get(rowA[0]!).get(kb).add().set(rowA[1]!);
      c.get(rowC[0]!).get(mb).add().set(rowC[1]!);
    }
  };

  /** C[rows, 16·vecs columns at jb] = A[rows, :]·B[:, same columns]. */
  const vectorBlock = (rows: number, vecs: number) => {
    for (let a = 0; a < rows * vecs; a++) c.v128zero().set(acc[a]!);
    c.get(B).get(jb).add().set(bp);
    for (let r = 0; r < rows; r++) c.get(rowA[r]!).set(ap[r]!);
    c.get(rowA[0]!).get(kb).add().set(pEnd);
    c.loop(() => {
      c.get(ap[0]!).get(pEnd).ge().brIf(1);
      for (let r = 0; r < rows; r++) c.get(ap[r]!).f32load().f32x4splat().set(av[r]!);
      for (let v = 0; v < vecs; v++) c.get(bp).v128load(16 * v).set(bv[v]!);
      for (let r = 0; r < rows; r++) {
        for (let v = 0; v < vecs; v++) {
          const a = r * vecs + v;
          c.get(acc[a]!).get(av[r]!).get(bv[v]!).f32x4mul().f32x4add().set(acc[a]!);
        }
      }
      for (let r = 0; r < rows; r++) c.get(ap[r]!).i32(4).add().set(ap[r]!);
      c.get(bp).get(mb).add().set(bp);
      c.br(0);
    });
    for (let r = 0; r < rows; r++) {
      for (let v = 0; v < vecs; v++) c.get(rowC[r]!).get(jb).add().get(acc[r * vecs + v]!).v128store(16 * v);
    }
  };

  /** C[rows, column jb] = A[rows, :]·B[:, jb], one column (m not a multiple of 4). */
  const scalarBlock = (rows: number) => {
    for (let r = 0; r < rows; r++) c.f32const0().set(s[r]!).get(rowA[r]!).set(ap[r]!);
    c.get(B).get(jb).add().set(bp);
    c.get(rowA[0]!).get(kb).add().set(pEnd);
    c.loop(() => {
      c.get(ap[0]!).get(pEnd).ge().brIf(1);
      for (let r = 0; r < rows; r++) c.get(s[r]!).get(ap[r]!).f32load().get(bp).f32load().f32mul().f32add().set(s[r]!);
      for (let r = 0; r < rows; r++) c.get(ap[r]!).i32(4).add().set(ap[r]!);
      c.get(bp).get(mb).add().set(bp);
      c.br(0);
    });
    for (let r = 0; r < rows; r++) c.get(rowC[r]!).get(jb).add().get(s[r]!).f32store();
  };

  /** Every row (two at a time, then the odd one) for the current columns. */
  const allRows = (block: (rows: number) => void) => {
    c.i32(0).set(i);
    for (const rows of [2, 1]) {
      c.loop(() => {
        c.get(i).i32(rows).add().get(N).gt().brIf(1);
        rowPointers(rows);
        block(rows);
        c.get(i).i32(rows).add().set(i);
        c.br(0);
      });
    }
  };

  // Column blocks outermost: a block of B (k rows × 64 bytes) stays in cache
  // while every row of A passes over it.
  c.i32(0).set(jb);
  for (const vecs of [4, 1]) {
    c.loop(() => {
      c.get(jb).i32(16 * vecs).add().get(mb).gt().brIf(1);
      allRows((rows) => vectorBlock(rows, vecs));
      c.get(jb).i32(16 * vecs).add().set(jb);
      c.br(0);
    });
  }
  c.loop(() => {
    c.get(jb).get(mb).ge().brIf(1);
    allRows(scalarBlock);
    c.get(jb).i32(4).add().set(jb);
    c.br(0);
  });
  return c;
}

type Mm = (a: number, b: number, c: number, n: number, k: number, m: number) => void;

/** Instantiates the kernel over a WebAssembly memory. */
export function instantiateMatmul(memory: WebAssembly.Memory): Mm {
  const bytes = module([{ name: "mm", code: matmulCode() }]);
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
  return instance.exports.mm as Mm;
}

interface WasmBackendLike {
  wasm: { asm: { memory: WebAssembly.Memory } };
  dataIdMap: { get(id: object): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: "float32"): tf.TensorInfo;
}

let installed = false;
let enabled = true;

/**
 * Turns the installed kernel off (every call goes to the stock kernel) or back
 * on, e.g. to measure the stock path in the same process.
 */
export function setSimdMatmulEnabled(on: boolean): void {
  enabled = on;
}

/**
 * Installs the SIMD kernel as the wasm backend's BatchMatMul (idempotent).
 * Returns false when the wasm backend is not registered or SIMD is missing.
 */
export function registerSimdMatmul(): boolean {
  if (installed) return true;
  const stock = tf.getKernel("BatchMatMul", "wasm");
  if (stock === undefined || typeof WebAssembly !== "object") return false;
  let mm: Mm | undefined;
  let memory: WebAssembly.Memory | undefined;
  const stockFunc = stock.kernelFunc;
  const transposeKernel = tf.getKernel("Transpose", "wasm")!.kernelFunc;
  const kernelFunc: tf.KernelFunc = (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const ra = a.shape.length;
    const rb = b.shape.length;
    const batchA = a.shape.slice(0, -2).reduce((x, y) => x * y, 1);
    const batchB = b.shape.slice(0, -2).reduce((x, y) => x * y, 1);
    const batch = Math.max(batchA, batchB);
    const simple = !transposeA && a.dtype === "float32" && b.dtype === "float32" && ra === rb && ra >= 3 && batch > 1
      && (batchA === batchB || batchA === 1 || batchB === 1) && a.shape[ra - 1]! > 0;
    if (!simple || !enabled) return stockFunc(args);
    const backend = args.backend as unknown as WasmBackendLike;
    if (transposeB) {
      // Transpose b explicitly (the wasm transpose kernel is fast), then multiply.
      const perm = [...b.shape.keys()].map((i) => (i < rb - 2 ? i : i === rb - 2 ? rb - 1 : rb - 2));
      const bT = transposeKernel({ inputs: { x: b }, backend: args.backend, attrs: { perm } }) as tf.TensorInfo;
      const out = kernelFunc({ ...args, inputs: { a, b: bT }, attrs: { ...args.attrs, transposeB: false } }) as tf.TensorInfo;
      (args.backend as unknown as { disposeData(id: object): void }).disposeData(bT.dataId);
      return out;
    }
    if (memory !== backend.wasm.asm.memory) {
      memory = backend.wasm.asm.memory;
      mm = instantiateMatmul(memory);
    }
    const n = a.shape[ra - 2]!;
    const k = a.shape[ra - 1]!;
    const m = b.shape[rb - 1]!;
    const outShape = [...(batchA >= batchB ? a.shape : b.shape).slice(0, -2), n, m];
    const out = backend.makeOutput(outShape, "float32");
    const pa = backend.dataIdMap.get(a.dataId).memoryOffset;
    const pb = backend.dataIdMap.get(b.dataId).memoryOffset;
    const pc = backend.dataIdMap.get(out.dataId).memoryOffset;
    const sa = batchA === 1 ? 0 : n * k * 4;
    const sb = batchB === 1 ? 0 : k * m * 4;
    for (let s = 0; s < batch; s++) mm!(pa + s * sa, pb + s * sb, pc + s * n * m * 4, n, k, m);
    return out;
  };
  tf.unregisterKernel("BatchMatMul", "wasm");
  tf.registerKernel({ ...stock, kernelFunc });
  installed = true;
  return true;
}
