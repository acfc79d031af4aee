/**
 * The diffusion transformer of examples/dit in turbograph's DSL. Inputs: the
 * noisy image x_t [B, C, H, W], the timestep t [B, 1] (float), the prompt ids
 * [B, 2]. Output: the predicted noise, [B, C, H, W].
 *
 * Per block, with c the conditioning vector (the timestep embedding), the
 * DSL's `ditBlock`:
 *
 *     (shift₁, scale₁, gate₁, shift₂, scale₂, gate₂) = linear(silu(c))   (adaLN-Zero)
 *     x ← x + gate₁ · selfAttention(modulate(LN(x), shift₁, scale₁))
 *     x ← x + crossAttention(LN(x), prompt)
 *     x ← x + gate₂ · mlp(modulate(LN(x), shift₂, scale₂))
 *
 * where modulate(h, s, k) = h·(1 + k) + s, written h + h·k + s.
 * `turbo-compile --generation …` wraps the sub-layers in generation mode's
 * merge and restore (compiler/passes/insert_generation.ts), found from the
 * graph: `dit(cfg, { primitives: true })` writes the block itself, with the
 * attention and the MLP from matmul, softmax and rearrange, and the same
 * parameters, and gets the same merges.
 */

import { add, attention, block, ditBlock, embedding, gelu, input, layerNorm, linear, matmul, model, modulate, mul, param, patchEmbed, rearrange, reshape, scale, silu, slice, softmax, timestepEmbedding, transpose, type Tensor } from "../../compiler/dsl/mod.ts";
import { ditConfig, ditDims, PROMPT_LENGTH, PROMPT_VOCAB, type DitConfig } from "./config.ts";

/** Multi-head attention of x over `context` from primitives (same parameters as the `attention` builder). */
function attentionByHand(x: Tensor, context: Tensor, heads: number, dim: number, name: string): Tensor {
  const split = (t: Tensor) => rearrange(t, "b n (h d) -> b h n d", { h: heads });
  const q = split(linear(x, dim, { name: `${name}.q` }));
  const k = split(linear(context, dim, { name: `${name}.k` }));
  const v = split(linear(context, dim, { name: `${name}.v` }));
  const p = softmax(scale(matmul(q, transpose(k, [0, 1, 3, 2])), 1 / Math.sqrt(dim / heads)));
  return linear(rearrange(matmul(p, v), "b h n d -> b n (h d)"), dim, { name: `${name}.out` });
}

/** `ditBlock` written out: the attention and the MLP from primitives, the same parameters. */
function ditBlockByHand(x: Tensor, c: Tensor, prompt: Tensor, cfg: DitConfig, name: string): Tensor {
  return block(name, () => {
    const d = cfg.dim;
    const mod = linear(silu(c), 6 * d, { name: `${name}.adaLN` });
    const [shift1, scale1, gate1, shift2, scale2, gate2] = [0, 1, 2, 3, 4, 5].map((i) => slice(mod, { axis: 1, start: i * d, end: (i + 1) * d })) as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
    const gated = (y: Tensor, gate: Tensor) => mul(y, reshape(gate, ["B", 1, d]));
    const h1 = modulate(layerNorm(x, { eps: cfg.eps, name: `${name}.norm1` }), shift1, scale1);
    x = add(x, gated(attentionByHand(h1, h1, cfg.heads, d, `${name}.attn`), gate1));
    x = add(x, attentionByHand(layerNorm(x, { eps: cfg.eps, name: `${name}.norm2` }), prompt, cfg.heads, d, `${name}.cross`));
    const h3 = modulate(layerNorm(x, { eps: cfg.eps, name: `${name}.norm3` }), shift2, scale2);
    const hidden = ditDims(cfg).hidden;
    return add(x, gated(linear(gelu(linear(h3, hidden, { name: `${name}.mlp.fc1` })), d, { name: `${name}.mlp.fc2` }), gate2));
  });
}

interface Style {
  /** Blocks written from primitives rather than with `ditBlock`. */
  primitives?: boolean;
}

export const dit = (cfg: DitConfig, style: Style = {}) =>
  model(`dit-${cfg.name}${style.primitives ? "-primitives" : ""}`, () => {
    const { grid } = ditDims(cfg);
    const d = cfg.dim;
    const noisy = input("noisy", ["B", cfg.channels, cfg.image, cfg.image]);
    const t = input("t", ["B", 1]);
    const ids = input("prompt", ["B", PROMPT_LENGTH], { dtype: "i32" });
    const c = timestepEmbedding(t, { dim: d, frequencies: cfg.frequencies, name: "t_embed" });
    // Prompt tokens with positions, the context of every cross-attention.
    const prompt = add(embedding(ids, { vocab: PROMPT_VOCAB, dim: d, name: "prompt.embed" }), param("prompt.pos", [PROMPT_LENGTH, d]));
    let x = patchEmbed(noisy, { patch: cfg.patch, dim: d, cls: false, name: "x_embed" });
    for (let i = 0; i < cfg.depth; i++) {
      const name = `block.${i}`;
      x = style.primitives
        ? ditBlockByHand(x, c, prompt, cfg, name)
        : ditBlock(x, c, { heads: cfg.heads, mlpRatio: cfg.mlpRatio, eps: cfg.eps, context: prompt, name });
    }
    // Final adaLN (shift, scale), then each token back to its patch of pixels.
    const fin = linear(silu(c), 2 * d, { name: "final.adaLN" });
    const h = modulate(layerNorm(x, { eps: cfg.eps, name: "final.norm" }), slice(fin, { axis: 1, start: 0, end: d }), slice(fin, { axis: 1, start: d, end: 2 * d }));
    const patches = linear(h, ditDims(cfg).patchDim, { name: "final.out" });
    const noise = rearrange(patches, "b (gh gw) (p q c) -> b c (gh p) (gw q)", { gh: grid, p: cfg.patch, q: cfg.patch });
    return { noise };
  });

export const mnist = dit(ditConfig);
export default mnist;
