/**
 * examples/vit/wasm_kernels.ts around runtime/kernels/simd_matmul.ts (the
 * combination train_mnist.ts uses on wasm): gradients and matmuls equal the
 * cpu backend's.
 */

import { test } from "uvu";
import { registerFastWasmKernels } from "../../examples/vit/wasm_kernels.ts";
import { registerSimdMatmul } from "../../runtime/kernels/simd_matmul.ts";
import { checkFastKernels } from "./_wasm_kernel_checks.ts";

test("on wasm with the SIMD matmul inside the fast kernels: gradients and matmuls equal the cpu backend's", async () => {
  await checkFastKernels(() => registerSimdMatmul() && registerFastWasmKernels({ batched: "inner" }));
});

test.run();
