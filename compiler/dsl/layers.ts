/**
 * Layer builders: ordinary functions composing primitives and declaring
 * parameters with hierarchical names (`layer.3.attn.q.weight`). Parameter
 * layouts are the lowering-friendly ones: linear weights are [in, out].
 */

import { CompileError } from "../diagnostics.ts";
import { formatShape } from "../ir/types.ts";
import { rearrange } from "./einops.ts";
import { add, broadcast, concat, cos, full, gelu, mul, reshape, scale, silu, sin, slice } from "./primitives.ts";
import { block, currentTrace, describe, emit, here, param, Tensor } from "./trace.ts";

/** The options object every layer builder takes, with its parameter-prefix name: present, an object, a non-empty string name. */
function checkOptions(builder: string, o: unknown): void {
  if (typeof o !== "object" || o === null) throw new CompileError(`${builder}: the options are ${describe(o)}; pass { name: "…", … }`, here());
  const name = (o as { name?: unknown }).name;
  if (typeof name !== "string" || name === "") throw new CompileError(`${builder}: options.name must be a non-empty string (the parameters' prefix), not ${describe(name)}`, here());
}

function staticWidth(builder: string, x: Tensor): number {
  if (!(x instanceof Tensor)) throw new CompileError(`${builder}: the input is ${describe(x)}, not a tensor`, here());
  const w = x.width;
  if (typeof w !== "number") throw new CompileError(`${builder}: the last axis of ${formatShape(x.shape)} must be static`, here());
  return w;
}

export interface LinearOptions {
  /** Parameter prefix: creates `${name}.weight` [in, out] and `${name}.bias` [out]. */
  name: string;
  bias?: boolean;
}

/** x·W + b over the last axis. */
export function linear(x: Tensor, out: number, o: LinearOptions): Tensor {
  checkOptions("linear", o);
  const width = staticWidth("linear", x);
  if (!Number.isInteger(out) || out <= 0) throw new CompileError(`linear "${o.name}": output width ${out} must be a positive integer`, here());
  const known = currentTrace("linear").builder.params.get(`${o.name}.weight`);
  if (known !== undefined && (known.shape[0] !== width || known.shape[1] !== out)) {
    const [kin, kout] = known.shape;
    throw new CompileError(
      kin !== width
        ? `linear "${o.name}": input has width ${width} but the weight expects ${kin} (weight ${formatShape(known.shape)} is shared by name)`
        : `linear "${o.name}": output width ${out} differs from the shared weight's ${kout}`,
      here(),
    );
  }
  const w = param(`${o.name}.weight`, [width, out], "linear");
  if (o.bias === false) return emit("linear", [x, w], {});
  return emit("linear", [x, w, param(`${o.name}.bias`, [out], "linear")], {});
}

export interface EmbeddingOptions {
  /** Parameter prefix: creates `${name}.weight` [vocab, dim]. */
  name: string;
  /** Rows of the table: ids must lie in [0, vocab). */
  vocab: number;
  dim: number;
}

/** Token embedding: i32 ids [B, T] → rows of `${name}.weight` [B, T, dim]. */
export function embedding(ids: Tensor, o: EmbeddingOptions): Tensor {
  checkOptions("embedding", o);
  if (!(ids instanceof Tensor)) throw new CompileError(`embedding "${o.name}": the ids are ${describe(ids)}, not a tensor`, here());
  for (const k of ["vocab", "dim"] as const) {
    if (!Number.isInteger(o[k]) || o[k] <= 0) throw new CompileError(`embedding "${o.name}": ${k} must be a positive integer, not ${describe(o[k])}`, here());
  }
  return emit("gather", [ids, param(`${o.name}.weight`, [o.vocab, o.dim], "embedding")], {});
}

export interface LayerNormOptions {
  name: string;
  eps?: number;
}

export function layerNorm(x: Tensor, o: LayerNormOptions): Tensor {
  checkOptions("layerNorm", o);
  const width = staticWidth("layerNorm", x);
  const w = param(`${o.name}.weight`, [width], "layerNorm");
  const b = param(`${o.name}.bias`, [width], "layerNorm");
  return emit("layer_norm", [x, w, b], { eps: o.eps ?? 1e-5 }, "layerNorm");
}

export interface AttentionOptions {
  heads: number;
  name: string;
  /** Keys and values come from here (cross-attention); default: x itself. */
  context?: Tensor;
  /**
   * Additive mask on the logits (0 keeps a key, a large negative number
   * drops it), broadcasting to [B, heads, N, M]; `keyPadding` makes one for
   * padded text.
   */
  mask?: Tensor;
}

/**
 * Multi-head attention: q, k, v projections, the high-level `attention` op
 * (kept whole until the Turbo pass has run) and the output projection.
 */
export function attention(x: Tensor, o: AttentionOptions): Tensor {
  checkOptions("attention", o);
  const width = staticWidth("attention", x);
  if (!Number.isInteger(o.heads) || o.heads <= 0 || width % o.heads !== 0) {
    throw new CompileError(`attention "${o.name}": heads ${o.heads} does not divide width ${width}`, here());
  }
  if (o.mask !== undefined && !(o.mask instanceof Tensor)) throw new CompileError(`attention "${o.name}": mask is ${describe(o.mask)}, not a tensor`, here());
  const ctx = o.context ?? x;
  const q = linear(x, width, { name: `${o.name}.q` });
  const k = linear(ctx, width, { name: `${o.name}.k` });
  const v = linear(ctx, width, { name: `${o.name}.v` });
  const a = o.mask === undefined ? emit("attention", [q, k, v], { heads: o.heads }) : emit("attention", [q, k, v, o.mask], { heads: o.heads, bias: true });
  return linear(a, width, { name: `${o.name}.out` });
}

/** The additive value `keyPadding` gives a padded key: exp of it underflows to 0 in float32. */
export const MASKED = -1e9;

/**
 * The additive key mask for a sequence whose first T tokens are text that
 * may be padded: `mask` [B, T] is 1 for a real token and 0 for padding; the
 * result [B, 1, 1, keys] is 0 on real tokens and on every key after the
 * text, MASKED on padding. Zero past the text is what lets it survive
 * merging (spec/turbo.md, "Padding").
 */
export function keyPadding(mask: Tensor, keys: number): Tensor {
  if (mask.rank !== 2) throw new CompileError(`keyPadding: mask must be [batch, text tokens] but has shape ${formatShape(mask.shape)}`, here());
  const text = mask.shape[1];
  if (typeof text !== "number" || !Number.isInteger(keys) || keys < text) {
    throw new CompileError(`keyPadding: keys ${keys} must be a whole number of tokens, at least the mask's ${String(text)} text tokens`, here());
  }
  const batch = currentTrace("keyPadding").builder.batch;
  const onText = add(scale(mask, -MASKED), full([batch, text], MASKED));
  const all = keys === text ? onText : concat([onText, full([batch, keys - text], 0)], 1);
  return reshape(all, [batch, 1, 1, keys]);
}

export interface MlpOptions {
  hidden: number;
  name: string;
}

/** fc2(gelu(fc1(x))). */
export function mlp(x: Tensor, o: MlpOptions): Tensor {
  checkOptions("mlp", o);
  const width = staticWidth("mlp", x);
  return linear(gelu(linear(x, o.hidden, { name: `${o.name}.fc1` })), width, { name: `${o.name}.fc2` });
}

export interface EncoderBlockOptions {
  heads: number;
  name: string;
  mlpRatio?: number;
  eps?: number;
  /**
   * Tokens of another stream [B, M, D] (a BLIP-style text encoder's image
   * tokens): adds a cross-attention sub-layer `x + cross(ln_cross(x), context)`
   * between self-attention and the MLP (parameters `<name>.ln_cross`, `<name>.cross`).
   */
  context?: Tensor;
  /** Additive mask on the self-attention's logits (see `attention`, `keyPadding`). */
  mask?: Tensor;
}

/**
 * Pre-norm transformer encoder block: x + attn(ln1(x)); with `context`,
 * x + cross(ln_cross(x), context); then x + mlp(ln2(x)).
 */
export function encoderBlock(x: Tensor, o: EncoderBlockOptions): Tensor {
  checkOptions("encoderBlock", o);
  const width = staticWidth("encoderBlock", x);
  const hidden = width * (o.mlpRatio ?? 4);
  if (!Number.isInteger(hidden)) throw new CompileError(`encoderBlock "${o.name}": mlpRatio ${o.mlpRatio} gives a fractional hidden width`, here());
  return block(o.name, () => {
    const eps = o.eps === undefined ? {} : { eps: o.eps };
    let h = add(x, attention(layerNorm(x, { name: `${o.name}.ln1`, ...eps }), { heads: o.heads, name: `${o.name}.attn`, ...(o.mask === undefined ? {} : { mask: o.mask }) }));
    if (o.context !== undefined) h = add(h, attention(layerNorm(h, { name: `${o.name}.ln_cross`, ...eps }), { heads: o.heads, context: o.context, name: `${o.name}.cross` }));
    return add(h, mlp(layerNorm(h, { name: `${o.name}.ln2`, ...eps }), { hidden, name: `${o.name}.mlp` }));
  });
}

export interface PatchEmbedOptions {
  patch: number;
  dim: number;
  name: string;
  /** Prepend a learned class token (default true). */
  cls?: boolean;
}

/**
 * Image [B, C, H, W] → tokens [B, (H/p)·(W/p) (+1), dim]: non-overlapping
 * p×p patches (a convolution with stride p, written as a rearrange and one
 * matmul), an optional class token, and a learned position embedding.
 */
export function patchEmbed(pixels: Tensor, o: PatchEmbedOptions): Tensor {
  checkOptions("patchEmbed", o);
  const [, c, h, w] = pixels.shape;
  if (pixels.rank !== 4 || typeof c !== "number" || typeof h !== "number" || typeof w !== "number") {
    throw new CompileError(`patchEmbed "${o.name}": pixels must be [batch, channels, height, width] but have shape ${formatShape(pixels.shape)}`, here());
  }
  const p = o.patch;
  if (!Number.isInteger(p) || p <= 0 || h % p !== 0 || w % p !== 0) {
    throw new CompileError(`patchEmbed "${o.name}": patch ${p} does not divide the image size ${h}×${w}`, here());
  }
  const gh = h / p;
  const gw = w / p;
  const batch = currentTrace("patchEmbed").builder.batch;
  return block(o.name, () => {
    const patches = rearrange(pixels, "b c (gh p) (gw q) -> b (gh gw) (c p q)", { p, q: p });
    let x = linear(patches, o.dim, { name: `${o.name}.patch` });
    let tokens = gh * gw;
    if (o.cls !== false) {
      const cls = param(`${o.name}.cls`, [1, o.dim], "patchEmbed");
      const clsB = broadcast(emit("reshape", [cls], { shape: [1, 1, o.dim] }, "patchEmbed"), [batch, 1, o.dim]);
      x = concat([clsB, x], 1);
      tokens += 1;
    }
    return add(x, param(`${o.name}.pos`, [tokens, o.dim], "patchEmbed"));
  });
}

export interface TimestepEmbeddingOptions {
  /** Output width. */
  dim: number;
  /** F: the features are F cosines then F sines. */
  frequencies: number;
  name: string;
}

/**
 * A diffusion timestep t [B, 1] (float) → [B, dim]: the sinusoidal features
 * [cos(t·f), sin(t·f)], then linear → SiLU → linear (DiT's timestep
 * embedder). The frequencies f are the parameter `<name>.freqs` [1, F], a
 * fixed buffer stored with the weights (10000^(−i/F) in DiT), so the graph
 * needs no constant tensors.
 */
export function timestepEmbedding(t: Tensor, o: TimestepEmbeddingOptions): Tensor {
  checkOptions("timestepEmbedding", o);
  if (!(t instanceof Tensor) || t.rank !== 2 || t.shape[1] !== 1) throw new CompileError(`timestepEmbedding "${o.name}": t must be [batch, 1], not ${t instanceof Tensor ? formatShape(t.shape) : describe(t)}`, here());
  if (!Number.isInteger(o.frequencies) || o.frequencies <= 0) throw new CompileError(`timestepEmbedding "${o.name}": frequencies ${o.frequencies} must be a positive integer`, here());
  const phase = mul(t, param(`${o.name}.freqs`, [1, o.frequencies]));
  const features = concat([cos(phase), sin(phase)], 1);
  return linear(silu(linear(features, o.dim, { name: `${o.name}.fc1` })), o.dim, { name: `${o.name}.fc2` });
}

/** adaLN modulation h·(1 + scale) + shift, written h + h·scale + shift, with shift and scale [B, D] applied to every token of h [B, N, D]. */
export function modulate(h: Tensor, shift: Tensor, scale: Tensor): Tensor {
  const width = staticWidth("modulate", h);
  const batch = currentTrace("modulate").builder.batch;
  const perSample = (v: Tensor) => reshape(v, [batch, 1, width]);
  return add(add(h, mul(h, perSample(scale))), perSample(shift));
}

export interface DitBlockOptions {
  heads: number;
  /** MLP hidden width / width (default 4). */
  mlpRatio?: number;
  eps?: number;
  /** Prompt tokens [B, T, D]: adds a cross-attention sub-layer after self-attention. */
  context?: Tensor;
  name: string;
}

/**
 * A DiT block with adaLN-Zero conditioning on c [B, D] (Peebles & Xie), and
 * cross-attention to `context` when given:
 *
 *     (shift₁, scale₁, gate₁, shift₂, scale₂, gate₂) = linear(silu(c))
 *     x ← x + gate₁ · attn(modulate(LN(x), shift₁, scale₁))
 *     x ← x + cross(LN(x), context)
 *     x ← x + gate₂ · mlp(modulate(LN(x), shift₂, scale₂))
 *
 * Parameters: `<name>.adaLN`, `.norm1`, `.attn`, `.norm2`, `.cross`, `.norm3`, `.mlp`.
 */
export function ditBlock(x: Tensor, c: Tensor, o: DitBlockOptions): Tensor {
  checkOptions("ditBlock", o);
  const d = staticWidth("ditBlock", x);
  const hidden = d * (o.mlpRatio ?? 4);
  if (!Number.isInteger(hidden)) throw new CompileError(`ditBlock "${o.name}": mlpRatio ${o.mlpRatio} gives a fractional hidden width`, here());
  const eps = o.eps === undefined ? {} : { eps: o.eps };
  const batch = currentTrace("ditBlock").builder.batch;
  return block(o.name, () => {
    const mod = linear(silu(c), 6 * d, { name: `${o.name}.adaLN` });
    const [shift1, scale1, gate1, shift2, scale2, gate2] = [0, 1, 2, 3, 4, 5].map((i) => slice(mod, { axis: 1, start: i * d, end: (i + 1) * d })) as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
    const gated = (y: Tensor, gate: Tensor) => mul(y, reshape(gate, [batch, 1, d]));
    const h1 = modulate(layerNorm(x, { name: `${o.name}.norm1`, ...eps }), shift1, scale1);
    let y = add(x, gated(attention(h1, { heads: o.heads, name: `${o.name}.attn` }), gate1));
    if (o.context !== undefined) y = add(y, attention(layerNorm(y, { name: `${o.name}.norm2`, ...eps }), { heads: o.heads, context: o.context, name: `${o.name}.cross` }));
    const h3 = modulate(layerNorm(y, { name: `${o.name}.norm3`, ...eps }), shift2, scale2);
    return add(y, gated(mlp(h3, { hidden, name: `${o.name}.mlp` }), gate2));
  });
}
