/**
 * The IR text grammar as chevrotain tokens and a rules-only CstParser; the
 * visitor that turns the CST into a graph is in parse.ts. The grammar, in
 * EBNF (spec/language.md has the full reference):
 *
 *   file      = { NL } "graph" name "(" IDENT ")" "{" NL { NL } { statement NL { NL } } "}" { NL } ;
 *   statement = param | node | return ;
 *   param     = "param" PARAM ":" type ;
 *   node      = VALUE ":" type "=" IDENT [ attrs ] [ operand { "," operand } ] [ SCOPE ] ;
 *   attrs     = "[" [ attr { "," attr } ] "]" ;
 *   attr      = IDENT "=" value ;
 *   value     = NUMBER | STRING | dim_name | "[" [ value { "," value } ] "]" ;
 *   dim_name  = IDENT [ "*" NUMBER ] ;            (* true, false, or the batch name *)
 *   type      = IDENT "[" [ dim { "," dim } ] "]" ;
 *   dim       = NUMBER | IDENT [ "*" NUMBER ] ;
 *   operand   = VALUE | PARAM ;
 *   return    = "return" output { "," output } ;
 *   output    = name "=" VALUE ;
 *   name      = IDENT | STRING ;
 *
 * Line comments `// …` and spaces are skipped; `# …` to the end of a node
 * line is the node's block scope, part of the IR.
 */

import { createToken, CstParser, Lexer, type TokenType } from "chevrotain";
import { messageProvider } from "../_syntax.ts";

const jsonString = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/;

const WhiteSpace = createToken({ name: "WhiteSpace", pattern: /[ \t]+/, group: Lexer.SKIPPED });
const Comment = createToken({ name: "Comment", pattern: /\/\/[^\n\r]*/, group: Lexer.SKIPPED });
export const Newline = createToken({ name: "Newline", pattern: /\r?\n/, line_breaks: true, label: "a line break" });
export const Scope = createToken({ name: "Scope", pattern: /#[^\n\r]*/, label: "a scope comment" });
export const ValueRef = createToken({ name: "ValueRef", pattern: /%\d+/, label: "a node like %3" });
export const ParamRef = createToken({
  name: "ParamRef",
  pattern: new RegExp(`@(?:[A-Za-z0-9_.\\-]+|${jsonString.source})`),
  label: "a parameter like @name",
});
export const StringLit = createToken({ name: "StringLit", pattern: jsonString, label: "a string" });
export const NumberLit = createToken({ name: "NumberLit", pattern: /-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/, label: "a number" });
export const Ident = createToken({ name: "Ident", pattern: /[A-Za-z_][A-Za-z0-9_]*/, label: "a name" });
const keyword = (word: string) =>
  createToken({ name: `Kw_${word}`, pattern: new RegExp(word), longer_alt: Ident, categories: [Ident], label: `"${word}"` });
export const GraphKw = keyword("graph");
export const ParamKw = keyword("param");
export const ReturnKw = keyword("return");
const punct = (name: string, text: string) => createToken({ name, pattern: text, label: `"${text}"` });
const LBrace = punct("LBrace", "{");
const RBrace = punct("RBrace", "}");
const LParen = punct("LParen", "(");
const RParen = punct("RParen", ")");
const LBracket = punct("LBracket", "[");
const RBracket = punct("RBracket", "]");
const Colon = punct("Colon", ":");
const Comma = punct("Comma", ",");
const Equals = punct("Equals", "=");
const Star = punct("Star", "*");

const tokens: TokenType[] = [
  WhiteSpace, Comment, Newline, Scope, ValueRef, ParamRef, StringLit, NumberLit,
  GraphKw, ParamKw, ReturnKw, Ident,
  LBrace, RBrace, LParen, RParen, LBracket, RBracket, Colon, Comma, Equals, Star,
];

export const tirLexer = new Lexer(tokens, { positionTracking: "full", ensureOptimizations: true });

export class TirParser extends CstParser {
  constructor() {
    super(tokens, { errorMessageProvider: messageProvider("the end of the file"), maxLookahead: 2 });
    this.performSelfAnalysis();
  }

  file = this.RULE("file", () => {
    this.MANY(() => this.CONSUME(Newline));
    this.CONSUME(GraphKw);
    this.SUBRULE(this.name);
    this.CONSUME(LParen);
    this.CONSUME(Ident, { LABEL: "batch" });
    this.CONSUME(RParen);
    this.CONSUME(LBrace);
    this.AT_LEAST_ONE(() => this.CONSUME2(Newline));
    this.MANY2(() => {
      this.SUBRULE(this.statement);
      this.AT_LEAST_ONE2(() => this.CONSUME3(Newline));
    });
    this.CONSUME(RBrace);
    this.MANY3(() => this.CONSUME4(Newline));
  });

  statement = this.RULE("statement", () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.param) },
      { ALT: () => this.SUBRULE(this.node) },
      { ALT: () => this.SUBRULE(this.ret) },
    ]);
  });

  param = this.RULE("param", () => {
    this.CONSUME(ParamKw);
    this.CONSUME(ParamRef);
    this.CONSUME(Colon);
    this.SUBRULE(this.type);
  });

  node = this.RULE("node", () => {
    this.CONSUME(ValueRef);
    this.CONSUME(Colon);
    this.SUBRULE(this.type);
    this.CONSUME(Equals);
    this.CONSUME(Ident, { LABEL: "op" });
    this.OPTION(() => this.SUBRULE(this.attrs));
    this.OPTION2(() => this.AT_LEAST_ONE_SEP({ SEP: Comma, DEF: () => this.SUBRULE(this.operand) }));
    this.OPTION3(() => this.CONSUME(Scope));
  });

  attrs = this.RULE("attrs", () => {
    this.CONSUME(LBracket);
    this.MANY_SEP({ SEP: Comma, DEF: () => this.SUBRULE(this.attr) });
    this.CONSUME(RBracket);
  });

  attr = this.RULE("attr", () => {
    this.CONSUME(Ident);
    this.CONSUME(Equals);
    this.SUBRULE(this.value);
  });

  value = this.RULE("value", () => {
    this.OR([
      { ALT: () => this.CONSUME(NumberLit) },
      { ALT: () => this.CONSUME(StringLit) },
      { ALT: () => this.SUBRULE(this.dimName) },
      { ALT: () => this.SUBRULE(this.list) },
    ]);
  });

  list = this.RULE("list", () => {
    this.CONSUME(LBracket);
    this.MANY_SEP({ SEP: Comma, DEF: () => this.SUBRULE(this.value) });
    this.CONSUME(RBracket);
  });

  dimName = this.RULE("dimName", () => {
    this.CONSUME(Ident);
    this.OPTION(() => {
      this.CONSUME(Star);
      this.CONSUME(NumberLit);
    });
  });

  type = this.RULE("type", () => {
    this.CONSUME(Ident, { LABEL: "dtype" });
    this.CONSUME(LBracket);
    this.MANY_SEP({ SEP: Comma, DEF: () => this.SUBRULE(this.dim) });
    this.CONSUME(RBracket);
  });

  dim = this.RULE("dim", () => {
    this.OR([{ ALT: () => this.CONSUME(NumberLit) }, { ALT: () => this.SUBRULE(this.dimName) }]);
  });

  operand = this.RULE("operand", () => {
    this.OR([{ ALT: () => this.CONSUME(ValueRef) }, { ALT: () => this.CONSUME(ParamRef) }]);
  });

  ret = this.RULE("ret", () => {
    this.CONSUME(ReturnKw);
    this.AT_LEAST_ONE_SEP({ SEP: Comma, DEF: () => this.SUBRULE(this.output) });
  });

  output = this.RULE("output", () => {
    this.SUBRULE(this.name);
    this.CONSUME(Equals);
    this.CONSUME(ValueRef);
  });

  name = this.RULE("name", () => {
    this.OR([{ ALT: () => this.CONSUME(Ident) }, { ALT: () => this.CONSUME(StringLit) }]);
  });
}

/** One parser instance, reused (building one analyses the grammar). */
export const tirParser = new TirParser();
