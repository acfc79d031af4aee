/**
 * The single-stream VQA model (examples/vqa): compiled from its DSL spec
 * with and without Turbo, on wasm and cpu, against the eager tfjs model
 * with the merge written by hand (examples/vqa/eager.ts), on MNIST pairs
 * and random weights; what the compiler found from the graph (the text
 * segment and the image class token protected, the text class token as the
 * semantic source); and the option that names another semantic token.
 */

import { test } from "uvu";
import * as assert from "uvu/assert";
import { compile } from "../../compiler/compile.ts";
import { CompileError } from "../../compiler/diagnostics.ts";
import { randomWeights } from "../../runtime/weights/mod.ts";
import { imageClsPosition, vqaConfig, vqaDims, vqaParams } from "../../examples/vqa/config.ts";
import { eagerVqa } from "../../examples/vqa/eager.ts";
import spec from "../../examples/vqa/vqa.ts";
import { agreementTests, type AgreementCase } from "./_vqa_agreement.ts";

const weights = randomWeights(vqaParams(vqaConfig), 11);

const cases: AgreementCase[] = [
  { name: "no merge" },
  { name: "ToMe (alpha=0), r=12", turbo: { r: 12, alpha: 0 } },
  { name: "Turbo, text class token, r=12", turbo: { r: 12 } },
  { name: "Turbo, image class token, r=20, scale=15", turbo: { r: 20, scale: 15, semanticToken: imageClsPosition(vqaConfig) } },
];

agreementTests(spec, weights, (t, q, p, turbo) => eagerVqa(vqaConfig, t, q, p, turbo), cases);

test("the compiler protects the text segment and the image class token, and takes the text class token's row", () => {
  const { textTokens } = vqaDims(vqaConfig);
  const c = compile(spec, { turbo: { r: 8 } });
  const merges = c.graph.nodes.filter((n) => n.op === "turbo_merge");
  assert.is(merges.length, vqaConfig.depth);
  for (const m of merges) assert.is((m.attrs as { protect: number }).protect, textTokens + 1);
  assert.ok(c.plan.explain?.some((e) => e.includes(`the first ${textTokens + 1} tokens are protected (${textTokens} from token ids (the text segment), 1 more from parameters)`) && e.includes("attention row of token 0 (the text class token)")), String(c.plan.explain));
  assert.equal(c.plan.blocks.filter((b) => b.name.startsWith("layer.")).map((b) => b.tokensOut), [97, 89, 81, 73]);
});

test("semanticToken names the row; a position that is not protected is refused", () => {
  const row = imageClsPosition(vqaConfig);
  const traced = compile(spec, { turbo: { r: 8, semanticToken: row } });
  const cls = traced.graph.nodes.filter((n) => n.op === "slice" && (n.attrs as { start: number }).start === row);
  assert.ok(cls.length >= 1, "a slice of the image class token's query row");
  try {
    compile(spec, { turbo: { r: 8, semanticToken: row + 1 } });
    assert.unreachable("compiled");
  } catch (e) {
    assert.instance(e, CompileError);
    assert.match((e as Error).message, /insertTurbo: option semanticToken: position 7 is not protected \(the first 7 positions are\)/);
  }
});

test.run();
