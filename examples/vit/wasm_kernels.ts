/**
 * Faster `BatchMatMul` and `Identity` kernels for the wasm backend, used to
 * train the ViT (`registerFastWasmKernels()`).
 *
 * ## BatchMatMul
 *
 * The stock wasm kernel sends every matmul with a batch dimension above 1, or
 * with a transposed operand, to a scalar loop (measured here: 1.1 GFLOP/s for
 * attention's q·kᵀ with `transposeB`, 2.5 for probs·v); only an untransposed
 * 2-D product reaches XNNPACK. This kernel makes every product reach XNNPACK:
 *
 * 1. a transposed operand is transposed explicitly first (the wasm transpose
 *    kernel is fast: 1.5 ms for [128, 197, 16]);
 * 2. for batch n > 1 it registers, for each batch entry, three *views* — wasm
 *    tensors whose memory is a slice of the operands' and the output's heap
 *    buffers, no copy — and runs the stock kernel on them as 2-D products;
 * 3. when only `a` has a batch, `a` is one [n·M, K] matrix: a single call.
 *
 * Measured on [128, 197, 16]·[128, 16, 197]: 10.5 ms against 146 ms; on
 * [128, 197, 197]·[128, 197, 16]: 14 ms against 63 ms. Results agree with the
 * stock kernel to float32 rounding (the summation order differs).
 *
 * It reaches into the wasm backend's internals (`dataIdMap`, the module's
 * `tfjs.registerTensor`/`disposeData` and its exported `BatchMatMul`), which
 * are not a public API: it is pinned to @tensorflow/tfjs-backend-wasm 4.22.0
 * and checks that what it needs is there, falling back to the stock kernel
 * otherwise.
 *
 * ## Identity
 *
 * The stock wasm `Identity` copies its input. tfjs-core runs it for every
 * tensor a gradient rule saves for the backward pass (`saveTensorsForBackwardMode`
 * clones them), about 650 copies per training step here (7 % of the step).
 * Tensors are immutable, so this one shares the input's memory and counts a
 * reference, as the cpu backend's `Identity` does.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";

/** The wasm backend's internals this kernel uses (tfjs-backend-wasm 4.22.0). */
interface WasmInternals {
  incRef(dataId: object): void;
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object): boolean;
  wasm: {
    cwrap(name: string, ret: null, args: string[]): (...args: unknown[]) => void;
    tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  };
}

function internals(backend: unknown): WasmInternals | undefined {
  const b = backend as Partial<WasmInternals>;
  const ok = b.dataIdMap !== undefined && typeof b.incRef === "function" && typeof b.dataIdNextNumber === "number" &&
    typeof b.makeOutput === "function" && typeof b.wasm?.cwrap === "function" &&
    typeof b.wasm?.tfjs?.registerTensor === "function" && typeof b.wasm?.tfjs?.disposeData === "function";
  return ok ? (b as WasmInternals) : undefined;
}

const shapeBytes = (shape: number[]): Uint8Array => new Uint8Array(new Int32Array(shape).buffer);

let registered = false;

export interface FastKernelOptions {
  /**
   * How an untransposed product with a batch above 1 is run: `"views"` (the
   * default) as 2-D XNNPACK products on heap views, or `"inner"` by the
   * BatchMatMul kernel registered before this one — for instance
   * runtime/kernels/simd_matmul.ts, measured faster on attention's shapes
   * (4.3 ms against 6.2 for [64, 197, 197]·[64, 197, 16]) but not handling
   * transposed operands, which this kernel then transposes first.
   */
  batched?: "views" | "inner";
}

/**
 * Replaces the wasm backend's `BatchMatMul` and `Identity` kernels with the
 * ones above, for every later use of the wasm backend in this process. Call
 * after the wasm backend is initialised (`tf.setBackend("wasm")`).
 * Idempotent; returns false (and changes nothing) when the wasm backend is
 * not active or its internals are not the expected ones.
 */
export function registerFastWasmKernels(options: FastKernelOptions = {}): boolean {
  if (registered) return true;
  const batchedByInner = options.batched === "inner";
  if (tf.getBackend() !== "wasm" || internals(tf.backend()) === undefined) return false;
  const stock = tf.getKernel("BatchMatMul", "wasm");
  const transpose = tf.getKernel("Transpose", "wasm");
  if (stock === undefined || transpose === undefined) return false;
  const setUp = new WeakSet<object>();
  let wasmMatMul: ((...args: unknown[]) => void) | undefined;

  const kernelFunc: tf.KernelFunc = (args) => {
    const { inputs, attrs } = args;
    const backend = internals(args.backend)!;
    if (!setUp.has(backend)) {
      stock.setupFunc?.(args.backend);
      wasmMatMul = backend.wasm.cwrap("BatchMatMul", null, [
        "number", "array", "number", "number", "array", "number", "number", "number", "number",
      ]);
      setUp.add(backend);
    }
    const a = inputs.a as tf.TensorInfo;
    const b = inputs.b as tf.TensorInfo;
    const transposeA = attrs?.transposeA === true;
    const transposeB = attrs?.transposeB === true;
    if (a.dtype !== "float32" || b.dtype !== "float32") return stock.kernelFunc(args);
    const outerA = a.shape.slice(0, -2);
    const outerB = b.shape.slice(0, -2);
    const nA = outerA.reduce((x, y) => x * y, 1);
    const nB = outerB.reduce((x, y) => x * y, 1);
    const [rA, cA] = a.shape.slice(-2) as [number, number];
    const [rB, cB] = b.shape.slice(-2) as [number, number];
    const M = transposeA ? cA : rA;
    const K = transposeA ? rA : cA;
    const N = transposeB ? rB : cB;
    const kB = transposeB ? cB : rB;
    // Leave to the stock kernel what it already does fast, and what this one does not handle.
    const sameOuter = outerA.length === outerB.length && outerA.every((d, i) => d === outerB[i]);
    if (K !== kB || (nA === 1 && nB === 1 && !transposeA && !transposeB) || !(sameOuter || nB === 1)) {
      return stock.kernelFunc(args);
    }

    const temporaries: tf.TensorInfo[] = [];
    // [n, r, c] → [n, c, r] through the stock transpose kernel.
    const flip = (x: tf.TensorInfo, n: number, r: number, c: number): tf.TensorInfo => {
      const x3: tf.TensorInfo = { dataId: x.dataId, shape: [n, r, c], dtype: x.dtype };
      const t = transpose.kernelFunc({ inputs: { x: x3 }, attrs: { perm: [0, 2, 1] }, backend: args.backend }) as tf.TensorInfo;
      temporaries.push(t);
      return t;
    };
    const a2 = transposeA ? flip(a, nA, rA, cA) : a;
    const b2 = transposeB ? flip(b, nB, rB, cB) : b;
    const outShape = [...tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB), M, N];
    if (batchedByInner && nB > 1) {
      const inner = stock.kernelFunc({
        inputs: { a: { dataId: a2.dataId, shape: [nA, M, K], dtype: "float32" }, b: { dataId: b2.dataId, shape: [nB, K, N], dtype: "float32" } },
        attrs: { transposeA: false, transposeB: false },
        backend: args.backend,
      }) as tf.TensorInfo;
      for (const t of temporaries) backend.disposeData(t.dataId);
      return { dataId: inner.dataId, shape: outShape, dtype: "float32" };
    }
    const out = backend.makeOutput(outShape, "float32");
    const offA = backend.dataIdMap.get(a2.dataId)!.memoryOffset;
    const offB = backend.dataIdMap.get(b2.dataId)!.memoryOffset;
    const offOut = backend.dataIdMap.get(out.dataId)!.memoryOffset;
    const view = (offset: number, size: number): number => {
      const id = backend.dataIdNextNumber++;
      backend.wasm.tfjs.registerTensor(id, size, offset);
      return id;
    };
    const run = (rows: number, atA: number, atB: number, atOut: number): void => {
      const ids = [view(atA, rows * K), view(atB, K * N), view(atOut, rows * N)] as const;
      wasmMatMul!(ids[0], shapeBytes([1, rows, K]), 3, ids[1], shapeBytes([1, K, N]), 3, false, false, ids[2]);
      for (const id of ids) backend.wasm.tfjs.disposeData(id);
    };
    if (nB === 1) {
      run(nA * M, offA, offB, offOut); // b shared by every batch entry: one [n·M, K]·[K, N]
    } else {
      for (let i = 0; i < nA; i++) run(M, offA + 4 * i * M * K, offB + 4 * i * K * N, offOut + 4 * i * M * N);
    }
    for (const t of temporaries) backend.disposeData(t.dataId);
    return out;
  };

  const identity: tf.KernelFunc = ({ inputs, backend }) => {
    const x = inputs.x as tf.TensorInfo;
    internals(backend)!.incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  };

  tf.unregisterKernel("BatchMatMul", "wasm");
  tf.registerKernel({ kernelName: "BatchMatMul", backendName: "wasm", kernelFunc });
  tf.unregisterKernel("Identity", "wasm");
  tf.registerKernel({ kernelName: "Identity", backendName: "wasm", kernelFunc: identity });
  registered = true;
  return true;
}
