/** The compiler's public face: the DSL, the pipeline and its pieces. */
export * from "./dsl/mod.ts";
export { compile, compileGraph, pipeline, runPasses } from "./compile.ts";
export type { CompileOptions, Compiled } from "./compile.ts";
export { CompileError, formatDiagnostic, formatError } from "./diagnostics.ts";
export type { SourceLoc } from "./diagnostics.ts";
export type { Graph, Node, AnyNode, Operand } from "./ir/graph.ts";
export { opDocs } from "./ir/ops.ts";
export type { Op } from "./ir/ops.ts";
export { printGraph } from "./ir/print.ts";
export { parseGraph, readGraph } from "./ir/parse.ts";
export { checkSpec } from "./check_spec.ts";
export { verify } from "./ir/verify.ts";
export { formatReport } from "./report.ts";
