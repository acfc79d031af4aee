/**
 * The trace worker's body (started by `trace_spec.ts`): imports the spec,
 * traces it under the budget and posts back the graph, or the error as plain
 * data (a `CompileError`'s message, location and context; anything else as
 * an internal error with its stack).
 */

import { parentPort, workerData } from "node:worker_threads";
import { CompileError } from "./diagnostics.ts";
// The whole DSL, loaded before the clock for importing the spec starts: the spec imports it too.
import "./dsl/mod.ts";
import { trace } from "./dsl/trace.ts";
import { loadSpec } from "./load_spec.ts";
import type { TraceReply, TraceRequest } from "./trace_spec.ts";

const port = parentPort!;
const post = (r: TraceReply): void => port.postMessage(r);
const request = workerData as TraceRequest;

try {
  post({ kind: "loading" });
  const spec = await loadSpec(request.path, request.exportName);
  post({ kind: "tracing", name: String(spec.name), loc: spec.loc });
  post({ kind: "done", graph: trace(spec, request.budget) });
} catch (e) {
  if (e instanceof CompileError) post({ kind: "error", user: true, message: e.message, loc: e.loc, context: [...e.context] });
  else post({ kind: "error", user: false, message: e instanceof Error ? e.message : String(e), stack: e instanceof Error ? e.stack : undefined });
}
