/**
 * Tracing a spec file where it can be stopped: the CLI imports and traces the
 * spec in a worker thread, so a spec whose top level or build function never
 * returns — even one that never calls a builder, which the trace budget's
 * per-call check cannot see — ends with a located error after the time limit
 * instead of hanging the compiler. The graph comes back by structured clone.
 */

import { Worker } from "node:worker_threads";
import { CompileError, type SourceLoc } from "./diagnostics.ts";
import { traceDefaults, type TraceOptions } from "./dsl/trace.ts";
import type { Graph } from "./ir/graph.ts";

/** What the main thread sends the worker. */
export interface TraceRequest {
  readonly path: string;
  readonly exportName: string | undefined;
  readonly budget: Required<TraceOptions>;
}

/** What the worker sends back, in order: loading, tracing, then done or error. */
export type TraceReply =
  | { readonly kind: "loading" }
  | { readonly kind: "tracing"; readonly name: string; readonly loc: SourceLoc | undefined }
  | { readonly kind: "done"; readonly graph: Graph }
  | { readonly kind: "error"; readonly user: true; readonly message: string; readonly loc: SourceLoc | undefined; readonly context: string[] }
  | { readonly kind: "error"; readonly user: false; readonly message: string; readonly stack: string | undefined };

/** The worker module; under a TypeScript loader (tsx) the worker first registers tsx, which Node 20 does not pass on to workers. */
function startWorker(request: TraceRequest): Worker {
  const url = new URL(import.meta.url.endsWith(".ts") ? "./trace_worker.ts" : "./trace_worker.js", import.meta.url);
  if (!url.pathname.endsWith(".ts")) return new Worker(url, { workerData: request });
  const api = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  const code = `import(${api}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(code, { eval: true, workerData: request });
}

/** How long the worker may take to start, before it reports loading the spec (a machine under load). */
const startupMs = 120_000;

/** A traced spec: the graph and where its `model()` call is. */
export interface TracedSpec {
  readonly graph: Graph;
  readonly loc: SourceLoc | undefined;
}

/** Imports `path` and traces its model export `exportName` (default export when undefined) in a worker, within `budget`. */
export function traceSpecFile(path: string, exportName: string | undefined, budget: TraceOptions = {}): Promise<TracedSpec> {
  const limits = { ...traceDefaults, ...budget };
  const seconds = `${limits.timeoutMs / 1000} s`;
  const worker = startWorker({ path, exportName, budget: limits });
  return new Promise<TracedSpec>((resolve, reject) => {
    let settled = false;
    let loc: SourceLoc | undefined;
    let timer: NodeJS.Timeout | undefined;
    const finish = (error: unknown, graph?: Graph): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      if (graph !== undefined) resolve({ graph, loc });
      else reject(error);
    };
    const limit = (ms: number, error: () => unknown): void => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(error()), ms);
    };
    limit(startupMs, () => new Error(`internal: the trace worker did not start within ${startupMs / 1000} s`));
    worker.on("message", (r: TraceReply) => {
      switch (r.kind) {
        case "loading":
          return limit(limits.timeoutMs, () => new CompileError(`Spec file "${path}": loading did not finish within ${seconds}; does its top level never return? (raise the limit with --trace-timeout)`, { file: path, line: 1, col: 1 }));
        case "tracing":
          loc = r.loc;
          return limit(limits.timeoutMs, () => new CompileError(`model "${r.name}": tracing did not finish within ${seconds}; a build that never returns? (raise the limit with --trace-timeout)`, r.loc));
        case "done":
          return finish(undefined, r.graph);
        case "error":
          if (r.user) return finish(new CompileError(r.message, r.loc, r.context));
          return finish(Object.assign(new Error(r.message), { stack: r.stack }));
      }
    });
    worker.on("error", (e: Error & { code?: string }) => {
      if (e.code === "ERR_WORKER_OUT_OF_MEMORY") finish(new CompileError(`Spec file "${path}" ran out of memory while being traced; a build that never stops growing?`, { file: path, line: 1, col: 1 }));
      else finish(new CompileError(`Spec file "${path}" failed while being traced: ${e.message}`, { file: path, line: 1, col: 1 }));
    });
    worker.on("exit", (code) => finish(new CompileError(`Spec file "${path}" ended the compiler's trace (exit code ${code}) before returning a model; does it call process.exit()?`, { file: path, line: 1, col: 1 })));
  });
}
