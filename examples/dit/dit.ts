/**
 * The diffusion transformer of examples/dit in turbograph's DSL. Inputs: the
 * noisy image x_t [B, C, H, W], the timestep t [B, 1] (float), the prompt ids
 * [B, 2]. Output: the predicted noise, [B, C, H, W].
 *
 * Per block, with c the conditioning vector (timestep MLP):
 *
 *     (shift₁, scale₁, gate₁, shift₂, scale₂, gate₂) = linear(silu(c))   (adaLN-Zero)
 *     x ← x + gate₁ · selfAttention(modulate(LN(x), shift₁, scale₁))
 *     x ← x + crossAttention(LN(x), prompt)
 *     x ← x + gate₂ · mlp(modulate(LN(x), shift₂, scale₂))
 *
 * where modulate(h, s, k) = h·(1 + k) + s, written h + h·k + s.
 * `turbo-compile --generation …` wraps the sub-layers in generation mode's
 * merge and restore (compiler/passes/insert_generation.ts), found from the
 * graph: `dit(cfg, { primitives: true })` writes the attention and the MLP
 * from matmul, softmax and rearrange instead of the builders, with the same
 * parameters, and gets the same merges.
 */

import { add, attention, block, concat, cos, embedding, gelu, input, layerNorm, linear, matmul, mlp, model, mul, param, patchEmbed, rearrange, reshape, scale, silu, sin, slice, softmax, transpose, type Tensor } from "../../compiler/dsl/mod.ts";
import { ditConfig, ditDims, PROMPT_LENGTH, PROMPT_VOCAB, type DitConfig } from "./config.ts";

/** [B, D] → [B, 1, D], so that it broadcasts over the tokens. */
const perSample = (v: Tensor, dim: number) => reshape(v, ["B", 1, dim]);

function modulate(h: Tensor, shift: Tensor, scaleBy: Tensor, dim: number): Tensor {
  return add(add(h, mul(h, perSample(scaleBy, dim))), perSample(shift, dim));
}

/** The i-th of n equal chunks of the last axis of [B, n·D]. */
const chunk = (v: Tensor, i: number, dim: number) => slice(v, { axis: 1, start: i * dim, end: (i + 1) * dim });

/** Multi-head attention of x over `context` from primitives (same parameters as the `attention` builder). */
function attentionByHand(x: Tensor, context: Tensor, heads: number, dim: number, name: string): Tensor {
  const split = (t: Tensor) => rearrange(t, "b n (h d) -> b h n d", { h: heads });
  const q = split(linear(x, dim, { name: `${name}.q` }));
  const k = split(linear(context, dim, { name: `${name}.k` }));
  const v = split(linear(context, dim, { name: `${name}.v` }));
  const p = softmax(scale(matmul(q, transpose(k, [0, 1, 3, 2])), 1 / Math.sqrt(dim / heads)));
  return linear(rearrange(matmul(p, v), "b h n d -> b n (h d)"), dim, { name: `${name}.out` });
}

interface Style {
  /** Attention and MLP written from primitives rather than the builders. */
  primitives?: boolean;
}

export function ditBlock(x: Tensor, c: Tensor, prompt: Tensor, cfg: DitConfig, name: string, style: Style = {}): Tensor {
  return block(name, () => ditBlockBody(x, c, prompt, cfg, name, style));
}

function ditBlockBody(x: Tensor, c: Tensor, prompt: Tensor, cfg: DitConfig, name: string, style: Style): Tensor {
  const d0 = cfg.dim;
  const attend = (h: Tensor, context: Tensor | undefined, sub: string) =>
    style.primitives
      ? attentionByHand(h, context ?? h, cfg.heads, d0, `${name}.${sub}`)
      : attention(h, { heads: cfg.heads, ...(context === undefined ? {} : { context }), name: `${name}.${sub}` });
  const feedForward = (h: Tensor) =>
    style.primitives
      ? linear(gelu(linear(h, ditDims(cfg).hidden, { name: `${name}.mlp.fc1` })), d0, { name: `${name}.mlp.fc2` })
      : mlp(h, { hidden: ditDims(cfg).hidden, name: `${name}.mlp` });
  const d = cfg.dim;
  const mod = linear(silu(c), 6 * d, { name: `${name}.adaLN` });
  const [shift1, scale1, gate1, shift2, scale2, gate2] = [0, 1, 2, 3, 4, 5].map((i) => chunk(mod, i, d)) as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
  const h1 = modulate(layerNorm(x, { eps: cfg.eps, name: `${name}.norm1` }), shift1, scale1, d);
  x = add(x, mul(attend(h1, undefined, "attn"), perSample(gate1, d)));
  const h2 = layerNorm(x, { eps: cfg.eps, name: `${name}.norm2` });
  x = add(x, attend(h2, prompt, "cross"));
  const h3 = modulate(layerNorm(x, { eps: cfg.eps, name: `${name}.norm3` }), shift2, scale2, d);
  return add(x, mul(feedForward(h3), perSample(gate2, d)));
}

export const dit = (cfg: DitConfig, style: Style = {}) =>
  model(`dit-${cfg.name}${style.primitives ? "-primitives" : ""}`, () => {
    const { grid } = ditDims(cfg);
    const d = cfg.dim;
    const noisy = input("noisy", ["B", cfg.channels, cfg.image, cfg.image]);
    const t = input("t", ["B", 1]);
    const ids = input("prompt", ["B", PROMPT_LENGTH], { dtype: "i32" });
    // Timestep: [cos(t·f), sin(t·f)] → linear → silu → linear.
    const phase = mul(t, param("t_embed.freqs", [1, cfg.frequencies]));
    const features = concat([cos(phase), sin(phase)], 1);
    const c = linear(silu(linear(features, d, { name: "t_embed.fc1" })), d, { name: "t_embed.fc2" });
    // Prompt tokens with positions, the context of every cross-attention.
    const prompt = add(embedding(ids, { vocab: PROMPT_VOCAB, dim: d, name: "prompt.embed" }), param("prompt.pos", [PROMPT_LENGTH, d]));
    let x = patchEmbed(noisy, { patch: cfg.patch, dim: d, cls: false, name: "x_embed" });
    for (let i = 0; i < cfg.depth; i++) x = ditBlock(x, c, prompt, cfg, `block.${i}`, style);
    // Final adaLN (shift, scale), then each token back to its patch of pixels.
    const fin = linear(silu(c), 2 * d, { name: "final.adaLN" });
    const h = modulate(layerNorm(x, { eps: cfg.eps, name: "final.norm" }), chunk(fin, 0, d), chunk(fin, 1, d), d);
    const patches = linear(h, ditDims(cfg).patchDim, { name: "final.out" });
    const noise = rearrange(patches, "b (gh gw) (p q c) -> b c (gh p) (gw q)", { gh: grid, p: cfg.patch, q: cfg.patch });
    return { noise };
  });

export const mnist = dit(ditConfig);
export default mnist;
