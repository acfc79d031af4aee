/**
 * The einops-style pattern grammar as chevrotain tokens and a rules-only
 * CstParser; pattern.ts holds the visitor. In EBNF:
 *
 *   pattern = side { "," side } "->" side ;
 *   side    = { term } ;
 *   term    = AXIS | NUMBER | "..." | "(" { AXIS | NUMBER | "..." } ")" ;
 *
 * AXIS is a name (`b`, `h`, `d_head`), NUMBER a literal size (only `1`
 * means something: a unit axis). `...` is lexed so that it can be refused
 * with a clear message.
 */

import { createToken, CstParser, Lexer, type TokenType } from "chevrotain";
import { messageProvider } from "../_syntax.ts";

const WhiteSpace = createToken({ name: "WhiteSpace", pattern: /\s+/, group: Lexer.SKIPPED, line_breaks: true });
export const Arrow = createToken({ name: "Arrow", pattern: "->", label: '"->"' });
export const Comma = createToken({ name: "Comma", pattern: ",", label: '","' });
export const LParen = createToken({ name: "LParen", pattern: "(", label: '"("' });
export const RParen = createToken({ name: "RParen", pattern: ")", label: '")"' });
export const Ellipsis = createToken({ name: "Ellipsis", pattern: "...", label: '"..."' });
export const Axis = createToken({ name: "Axis", pattern: /[A-Za-z_][A-Za-z0-9_]*/, label: "an axis name" });
export const NumberLit = createToken({ name: "NumberLit", pattern: /\d+/, label: "a number" });

const tokens: TokenType[] = [WhiteSpace, Arrow, Comma, LParen, RParen, Ellipsis, Axis, NumberLit];

export const patternLexer = new Lexer(tokens, { positionTracking: "onlyOffset", ensureOptimizations: true });

export class PatternParser extends CstParser {
  constructor() {
    super(tokens, { errorMessageProvider: messageProvider("the end of the pattern") });
    this.performSelfAnalysis();
  }

  pattern = this.RULE("pattern", () => {
    this.SUBRULE(this.side, { LABEL: "inputs" });
    this.MANY(() => {
      this.CONSUME(Comma);
      this.SUBRULE2(this.side, { LABEL: "inputs" });
    });
    this.CONSUME(Arrow);
    this.SUBRULE3(this.side, { LABEL: "output" });
  });

  side = this.RULE("side", () => {
    this.MANY(() => this.SUBRULE(this.term));
  });

  term = this.RULE("term", () => {
    this.OR([
      { ALT: () => this.CONSUME(Axis) },
      { ALT: () => this.CONSUME(NumberLit) },
      { ALT: () => this.CONSUME(Ellipsis) },
      { ALT: () => this.SUBRULE(this.group) },
    ]);
  });

  group = this.RULE("group", () => {
    this.CONSUME(LParen);
    this.MANY(() =>
      this.OR([
        { ALT: () => this.CONSUME(Axis) },
        { ALT: () => this.CONSUME(NumberLit) },
        { ALT: () => this.CONSUME(Ellipsis) },
      ]),
    );
    this.CONSUME(RParen);
  });
}

export const patternParser = new PatternParser();
