/**
 * Glue between chevrotain and located diagnostics, shared by the IR text
 * parser and the pattern parser: the wording of syntax errors ("expected X
 * but found Y"), and positions as offsets that a `SourceText` turns into
 * `file:line:col`.
 */

import {
  EOF,
  type ILexingError,
  type IParserErrorMessageProvider,
  type IRecognitionException,
  type IToken,
  type TokenType,
} from "chevrotain";
import type { SourceLoc } from "./diagnostics.ts";

/** A syntax or semantic problem at a character offset of the parsed text. */
export class SyntaxProblem extends Error {
  constructor(message: string, readonly offset: number) {
    super(message);
  }
}

const label = (t: TokenType): string => t.LABEL ?? t.name;

/** "a, b or c" for a list of distinct alternatives. */
export function oneOf(items: readonly string[]): string {
  const unique = [...new Set(items)];
  if (unique.length <= 1) return unique[0] ?? "nothing";
  return `${unique.slice(0, -1).join(", ")} or ${unique[unique.length - 1]}`;
}

/**
 * Error wording for a chevrotain parser. `end` names the end of the input
 * ("the end of the file", "the end of the pattern").
 */
export function messageProvider(end: string): IParserErrorMessageProvider {
  const found = (t: IToken): string => (t.tokenType === EOF ? end : describeToken(t));
  return {
    buildMismatchTokenMessage: ({ expected, actual }) => `Expected ${label(expected)} but found ${found(actual)}`,
    buildNotAllInputParsedMessage: ({ firstRedundant }) => `Expected ${end} but found ${found(firstRedundant)}`,
    buildNoViableAltMessage: ({ expectedPathsPerAlt, actual }) =>
      `Expected ${oneOf(expectedPathsPerAlt.flatMap((alt) => alt.map((path) => label(path[0]!))))} but found ${found(actual[0]!)}`,
    buildEarlyExitMessage: ({ expectedIterationPaths, actual }) =>
      `Expected ${oneOf(expectedIterationPaths.map((path) => label(path[0]!)))} but found ${found(actual[0]!)}`,
  };
}

/** A token as the user wrote it: `"->"`, or "a line break". */
export function describeToken(t: IToken): string {
  if (/^\r?\n$/.test(t.image)) return "a line break";
  return JSON.stringify(t.image.length > 40 ? `${t.image.slice(0, 37)}...` : t.image);
}

/** Start offset of a token; for the end-of-input token, just after the previous token. */
export function tokenOffset(t: IToken, previous: IToken | undefined, textLength: number): number {
  if (t.tokenType !== EOF && Number.isFinite(t.startOffset)) return t.startOffset;
  if (previous !== undefined && /^\r?\n$/.test(previous.image)) return previous.startOffset;
  if (previous !== undefined && Number.isFinite(previous.endOffset)) return (previous.endOffset ?? previous.startOffset) + 1;
  return textLength;
}

/** The first parser error as a problem at its offset. */
export function parserProblem(errors: readonly IRecognitionException[], textLength: number): SyntaxProblem | undefined {
  const e = errors[0];
  if (e === undefined) return undefined;
  const previous = (e as IRecognitionException & { previousToken?: IToken }).previousToken;
  return new SyntaxProblem(e.message, tokenOffset(e.token, previous, textLength));
}

/** The first lexer error as a problem: an unterminated string or an unexpected character. */
export function lexerProblem(errors: readonly ILexingError[], text: string): SyntaxProblem | undefined {
  const e = errors[0];
  if (e === undefined) return undefined;
  const ch = text[e.offset] ?? "";
  if (ch === '"') return new SyntaxProblem("Unterminated or malformed string", e.offset);
  return new SyntaxProblem(`Unexpected character ${JSON.stringify(ch)}`, e.offset);
}

/** A text with a file name, mapping offsets to 1-based lines and columns. */
export class SourceText {
  private readonly lineStarts: number[] = [0];
  constructor(readonly file: string, readonly text: string) {
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) this.lineStarts.push(i + 1);
  }
  loc(offset: number): SourceLoc {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { file: this.file, line: lo + 1, col: offset - this.lineStarts[lo]! + 1 };
  }
}
