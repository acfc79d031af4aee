/**
 * Backend choice. Explicit (`"wasm"`, `"cpu"`, `"tensorflow"`, `"webgpu"`) or
 * automatic: `tensorflow` when @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node
 * can be imported (optional peers, loaded with a guarded dynamic import), else
 * `wasm`, else `cpu`. The choice and the reason are reported.
 *
 * `webgpu` is never chosen automatically: it needs a host with `navigator.gpu`
 * (Deno with --unstable-webgpu, a browser), and where the only adapter is a
 * software one (Mesa's llvmpipe) it is far slower than wasm (spec/pipeline.md,
 * "Runtime hosts").
 */

import * as tf from "@tensorflow/tfjs-core";

export type BackendName = "tensorflow" | "wasm" | "cpu" | "webgpu";
export type BackendChoice = BackendName | "auto";

export interface BackendInfo {
  readonly name: BackendName;
  readonly reason: string;
}

export class BackendError extends Error {}

async function tryImport(specifier: string): Promise<string | undefined> {
  try {
    await import(specifier);
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message.split("\n")[0] : String(e);
  }
}

async function activate(name: BackendName): Promise<boolean> {
  try {
    return (await tf.setBackend(name)) && tf.getBackend() === name;
  } catch {
    return false;
  }
}

let quieted = false;
/** tfjs prints a banner on Node suggesting tfjs-node; the report below replaces it. */
function quiet(): void {
  if (quieted) return;
  quieted = true;
  tf.env().set("PROD", true);
}

async function registerWasm(): Promise<string | undefined> {
  return tryImport("@tensorflow/tfjs-backend-wasm");
}

async function registerCpu(): Promise<string | undefined> {
  return tryImport("@tensorflow/tfjs-backend-cpu");
}

interface GpuAdapterLike {
  readonly isFallbackAdapter?: boolean;
  readonly info?: { readonly description?: string; readonly vendor?: string; readonly isFallbackAdapter?: boolean };
}

/**
 * WebGPU needs `navigator.gpu` and an adapter before tfjs's backend can start;
 * each missing piece gets its own reason. Returns the adapter's description.
 */
async function registerWebgpu(): Promise<{ failure?: string; adapter?: string }> {
  const gpu = (globalThis.navigator as { gpu?: { requestAdapter(): Promise<GpuAdapterLike | null> } } | undefined)?.gpu;
  if (gpu === undefined) {
    const deno = (globalThis as { Deno?: unknown }).Deno !== undefined;
    return {
      failure: deno
        ? "navigator.gpu is missing: run Deno with --unstable-webgpu"
        : "this runtime has no WebGPU (navigator.gpu): use Deno (npx deno run --unstable-webgpu -A …) or a browser with WebGPU; Node has none",
    };
  }
  let adapter: GpuAdapterLike | null = null;
  try {
    adapter = await gpu.requestAdapter();
  } catch (e) {
    return { failure: `navigator.gpu.requestAdapter() failed (${e instanceof Error ? e.message : String(e)})` };
  }
  if (adapter === null) {
    return { failure: "navigator.gpu.requestAdapter() found no adapter: no GPU driver and no software Vulkan (on Debian: apt-get install mesa-vulkan-drivers)" };
  }
  const missing = await tryImport("@tensorflow/tfjs-backend-webgpu");
  const failure = missing === undefined ? undefined : `${missing}; the webgpu backend is an optional peer dependency: npm install @tensorflow/tfjs-backend-webgpu@4.22.0`;
  const fallback = adapter.isFallbackAdapter ?? adapter.info?.isFallbackAdapter;
  const description = adapter.info?.description || adapter.info?.vendor || "unnamed adapter";
  return { failure, adapter: `${description}${fallback === true ? ", a software fallback adapter" : ""}` };
}

/** Selects and initialises a tfjs backend; returns which one and why. */
export async function selectBackend(choice: BackendChoice = "auto"): Promise<BackendInfo> {
  quiet();
  if (choice === "tensorflow") {
    const gpu = await tryImport("@tensorflow/tfjs-node-gpu");
    const node = gpu === undefined ? undefined : await tryImport("@tensorflow/tfjs-node");
    const pkg = gpu === undefined ? "@tensorflow/tfjs-node-gpu" : node === undefined ? "@tensorflow/tfjs-node" : undefined;
    if (pkg !== undefined && (await activate("tensorflow"))) return { name: "tensorflow", reason: `requested; using ${pkg}` };
    throw new BackendError(
      `Backend "tensorflow" was requested but neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node can be loaded (${node ?? gpu}); install one of them at version 4.22.0`,
    );
  }
  if (choice === "wasm" || choice === "cpu") {
    const failure = choice === "wasm" ? await registerWasm() : await registerCpu();
    if (failure === undefined && (await activate(choice))) return { name: choice, reason: "requested" };
    throw new BackendError(`Backend "${choice}" was requested but could not be initialised${failure ? ` (${failure})` : ""}`);
  }
  if (choice === "webgpu") {
    const { failure, adapter } = await registerWebgpu();
    if (failure === undefined && (await activate("webgpu"))) return { name: "webgpu", reason: `requested; adapter: ${adapter}` };
    throw new BackendError(`Backend "webgpu" was requested but could not be initialised (${failure ?? `tfjs could not start it on ${adapter}`})`);
  }
  if (choice !== "auto") throw new BackendError(`Unknown backend "${String(choice)}"; expected "auto", "tensorflow", "wasm", "cpu" or "webgpu"`);

  const gpu = await tryImport("@tensorflow/tfjs-node-gpu");
  if (gpu === undefined && (await activate("tensorflow"))) return { name: "tensorflow", reason: "auto: @tensorflow/tfjs-node-gpu is installed" };
  const node = await tryImport("@tensorflow/tfjs-node");
  if (node === undefined && (await activate("tensorflow"))) return { name: "tensorflow", reason: "auto: @tensorflow/tfjs-node is installed" };
  const noNode = "auto: @tensorflow/tfjs-node(-gpu) is not installed";
  const wasm = await registerWasm();
  if (wasm === undefined && (await activate("wasm"))) return { name: "wasm", reason: `${noNode}; wasm is available` };
  const cpu = await registerCpu();
  if (cpu === undefined && (await activate("cpu"))) return { name: "cpu", reason: `${noNode}; wasm could not be initialised` };
  throw new BackendError("No tfjs backend could be initialised: install @tensorflow/tfjs-backend-wasm or @tensorflow/tfjs-backend-cpu");
}
