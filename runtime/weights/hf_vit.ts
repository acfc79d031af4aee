/**
 * The name map between Hugging Face ViT checkpoints
 * (`ViTForImageClassification`, or `ViTModel` without the `vit.` prefix)
 * and turbograph's own parameter names, with the shape transforms between
 * them.
 *
 * Turbograph's layout (D = dim, C = channels, p = patch, T = tokens,
 * H = hidden, K = classes), linear weights stored as [in, out]:
 *
 * | turbograph                      | shape       | Hugging Face                                            |
 * | ------------------------------- | ----------- | ------------------------------------------------------- |
 * | `embeddings.patch.weight`       | [C*p*p, D]  | `vit.embeddings.patch_embeddings.projection.weight` [D, C, p, p] |
 * | `embeddings.patch.bias`         | [D]         | `vit.embeddings.patch_embeddings.projection.bias`       |
 * | `embeddings.cls`                | [1, D]      | `vit.embeddings.cls_token` [1, 1, D]                    |
 * | `embeddings.pos`                | [T, D]      | `vit.embeddings.position_embeddings` [1, T, D]          |
 * | `layer.n.ln1.{weight,bias}`     | [D]         | `vit.encoder.layer.n.layernorm_before.*`                |
 * | `layer.n.attn.{q,k,v}.weight`   | [D, D]      | `vit.encoder.layer.n.attention.attention.{query,key,value}.weight` [out, in] |
 * | `layer.n.attn.{q,k,v}.bias`     | [D]         | `vit.encoder.layer.n.attention.attention.{query,key,value}.bias` |
 * | `layer.n.attn.out.weight`       | [D, D]      | `vit.encoder.layer.n.attention.output.dense.weight` [out, in] |
 * | `layer.n.ln2.{weight,bias}`     | [D]         | `vit.encoder.layer.n.layernorm_after.*`                 |
 * | `layer.n.mlp.fc1.weight`        | [D, H]      | `vit.encoder.layer.n.intermediate.dense.weight` [H, D]  |
 * | `layer.n.mlp.fc2.weight`        | [H, D]      | `vit.encoder.layer.n.output.dense.weight` [D, H]        |
 * | `norm.{weight,bias}`            | [D]         | `vit.layernorm.*`                                       |
 * | `head.weight`                   | [D, K]      | `classifier.weight` [K, D]                              |
 * | `head.bias`                     | [K]         | `classifier.bias`                                       |
 *
 * The patch weight row index is `c*p*p + i*p + j`: the PyTorch conv weight
 * [D, C, p, p] flattened to [D, C*p*p] and transposed.
 *
 * @module
 */

import { WeightsError } from "./errors.ts";
import type { WeightTensor } from "./safetensors.ts";

/** How a tensor changes between the two layouts. */
type Kind =
  /** Rank 1, unchanged. */
  | "vector"
  /** Rank 2, transposed: PyTorch [out, in] ↔ turbograph [in, out]. */
  | "linear"
  /** HF [1, N, D] ↔ turbograph [N, D]. */
  | "token"
  /** HF conv weight [D, C, p, p] ↔ turbograph [C*p*p, D]. */
  | "conv";

/** [HF name, turbograph name, kind] for tensors outside the blocks (HF names without `vit.`). */
const GLOBAL_NAMES: ReadonlyArray<readonly [string, string, Kind]> = [
  ["embeddings.patch_embeddings.projection.weight", "embeddings.patch.weight", "conv"],
  ["embeddings.patch_embeddings.projection.bias", "embeddings.patch.bias", "vector"],
  ["embeddings.cls_token", "embeddings.cls", "token"],
  ["embeddings.position_embeddings", "embeddings.pos", "token"],
  ["layernorm.weight", "norm.weight", "vector"],
  ["layernorm.bias", "norm.bias", "vector"],
];

/** [HF name, turbograph name, kind] for the classifier, which never has the `vit.` prefix. */
const HEAD_NAMES: ReadonlyArray<readonly [string, string, Kind]> = [
  ["classifier.weight", "head.weight", "linear"],
  ["classifier.bias", "head.bias", "vector"],
];

/** [HF suffix, turbograph suffix, kind] inside block n (`encoder.layer.n.` ↔ `layer.n.`). */
const LAYER_NAMES: ReadonlyArray<readonly [string, string, Kind]> = [
  ["layernorm_before.weight", "ln1.weight", "vector"],
  ["layernorm_before.bias", "ln1.bias", "vector"],
  ["attention.attention.query.weight", "attn.q.weight", "linear"],
  ["attention.attention.query.bias", "attn.q.bias", "vector"],
  ["attention.attention.key.weight", "attn.k.weight", "linear"],
  ["attention.attention.key.bias", "attn.k.bias", "vector"],
  ["attention.attention.value.weight", "attn.v.weight", "linear"],
  ["attention.attention.value.bias", "attn.v.bias", "vector"],
  ["attention.output.dense.weight", "attn.out.weight", "linear"],
  ["attention.output.dense.bias", "attn.out.bias", "vector"],
  ["layernorm_after.weight", "ln2.weight", "vector"],
  ["layernorm_after.bias", "ln2.bias", "vector"],
  ["intermediate.dense.weight", "mlp.fc1.weight", "linear"],
  ["intermediate.dense.bias", "mlp.fc1.bias", "vector"],
  ["output.dense.weight", "mlp.fc2.weight", "linear"],
  ["output.dense.bias", "mlp.fc2.bias", "vector"],
];

/** HF tensors that turbograph does not use (the pooler, the masked-image-modeling token). */
const IGNORED = /^(vit\.)?(pooler\.|embeddings\.mask_token$)/;

const HF_LAYER = /^encoder\.layer\.(0|[1-9]\d*)\.(.+)$/;
const OUR_LAYER = /^layer\.(0|[1-9]\d*)\.(.+)$/;
const HF_VIT_BACKBONE =
  /^(vit\.)?(embeddings\.(cls_token|position_embeddings|patch_embeddings\.)|encoder\.layer\.\d+\.)/;

const HF_TO_OURS = new Map(
  [...GLOBAL_NAMES, ...HEAD_NAMES].map(([hf, ours, kind]) => [hf, { name: ours, kind }]),
);
const HF_LAYER_TO_OURS = new Map(
  LAYER_NAMES.map(([hf, ours, kind]) => [hf, { name: ours, kind }]),
);
const OURS_TO_HF = new Map(
  GLOBAL_NAMES.map(([hf, ours, kind]) => [ours, { name: hf, kind, head: false }]),
);
for (const [hf, ours, kind] of HEAD_NAMES) {
  OURS_TO_HF.set(ours, { name: hf, kind, head: true });
}
const OURS_LAYER_TO_HF = new Map(
  LAYER_NAMES.map(([hf, ours, kind]) => [ours, { name: hf, kind }]),
);

/** Options for {@linkcode toHfVit}. */
export interface ToHfVitOptions {
  /**
   * Input channels C, needed to turn the patch weight [C*p*p, D] back into
   * the conv weight [D, C, p, p].
   */
  channels: number;
  /**
   * Prefix for backbone names: `"vit."` (the default) as saved from
   * `ViTForImageClassification`, or `""` as saved from `ViTModel`. The
   * classifier is always named `classifier.*`.
   */
  prefix?: "vit." | "";
}

/**
 * Tells whether tensor names follow the Hugging Face ViT naming, with or
 * without the `vit.` prefix: true when at least one name is an HF ViT
 * embedding or encoder-block tensor.
 */
export function isHfVit(names: Iterable<string>): boolean {
  for (const name of names) {
    if (HF_VIT_BACKBONE.test(name)) return true;
  }
  return false;
}

/**
 * Renames and reshapes tensors from a Hugging Face ViT checkpoint to
 * turbograph's parameter names and layouts.
 *
 * Tensors that need no change keep their Float32Array (it is not copied);
 * transposed tensors get new arrays. The pooler and mask token are dropped.
 *
 * @throws {WeightsError} For an unknown name, a tensor of the wrong rank,
 *   or two tensors mapping to the same turbograph name.
 */
export function fromHfVit(
  tensors: ReadonlyMap<string, WeightTensor>,
): Map<string, WeightTensor> {
  const out = new Map<string, WeightTensor>();
  const origin = new Map<string, string>();
  for (const [name, tensor] of tensors) {
    if (IGNORED.test(name)) continue;
    const target = hfTarget(name);
    if (target === undefined) {
      throw new WeightsError(
        `Unknown tensor ${JSON.stringify(name)} in Hugging Face ViT checkpoint`,
      );
    }
    const previous = origin.get(target.name);
    if (previous !== undefined) {
      throw new WeightsError(
        `Tensors ${JSON.stringify(previous)} and ${JSON.stringify(name)} both map to ${JSON.stringify(target.name)}`,
      );
    }
    origin.set(target.name, name);
    out.set(target.name, fromHfTensor(name, tensor, target.kind));
  }
  return out;
}

/**
 * Renames and reshapes tensors from turbograph's parameter names and layouts
 * to a Hugging Face ViT checkpoint (`ViTForImageClassification` naming by
 * default).
 *
 * Tensors that need no change keep their Float32Array (it is not copied);
 * transposed tensors get new arrays.
 *
 * @throws {WeightsError} For a name turbograph's ViT does not have, a tensor
 *   of the wrong rank, or a patch weight whose rows are not C*p*p.
 */
export function toHfVit(
  tensors: ReadonlyMap<string, WeightTensor>,
  options: ToHfVitOptions,
): Map<string, WeightTensor> {
  const { channels } = options;
  const prefix = options.prefix ?? "vit.";
  if (!Number.isSafeInteger(channels) || channels <= 0) {
    throw new WeightsError(
      `Channels must be a positive integer, got ${channels}`,
    );
  }
  const out = new Map<string, WeightTensor>();
  for (const [name, tensor] of tensors) {
    let target: { name: string; kind: Kind } | undefined;
    const layer = OUR_LAYER.exec(name);
    if (layer !== null) {
      const entry = OURS_LAYER_TO_HF.get(layer[2]!);
      if (entry !== undefined) {
        target = {
          name: `${prefix}encoder.layer.${layer[1]}.${entry.name}`,
          kind: entry.kind,
        };
      }
    } else {
      const entry = OURS_TO_HF.get(name);
      if (entry !== undefined) {
        target = {
          name: entry.head ? entry.name : `${prefix}${entry.name}`,
          kind: entry.kind,
        };
      }
    }
    if (target === undefined) {
      throw new WeightsError(
        `Unknown tensor ${JSON.stringify(name)}: not a turbograph ViT parameter`,
      );
    }
    out.set(target.name, toHfTensor(name, tensor, target.kind, channels));
  }
  return out;
}

function hfTarget(name: string): { name: string; kind: Kind } | undefined {
  const head = HF_TO_OURS.get(name);
  if (head !== undefined && name.startsWith("classifier.")) return head;
  const bare = name.startsWith("vit.") ? name.slice(4) : name;
  if (bare.startsWith("classifier.")) return undefined;
  const layer = HF_LAYER.exec(bare);
  if (layer !== null) {
    const entry = HF_LAYER_TO_OURS.get(layer[2]!);
    if (entry === undefined) return undefined;
    return { name: `layer.${layer[1]}.${entry.name}`, kind: entry.kind };
  }
  return HF_TO_OURS.get(bare);
}

function fromHfTensor(name: string, tensor: WeightTensor, kind: Kind): WeightTensor {
  const { shape, data } = tensor;
  checkData(name, tensor);
  switch (kind) {
    case "vector":
      expectRank(name, shape, 1, "[n]");
      return { shape: [...shape], data };
    case "linear": {
      expectRank(name, shape, 2, "[out, in]");
      const [rows, cols] = shape as [number, number];
      return { shape: [cols, rows], data: transpose(data, rows, cols) };
    }
    case "token": {
      expectRank(name, shape, 3, "[1, n, dim]");
      if (shape[0] !== 1) {
        throw new WeightsError(
          `Tensor ${JSON.stringify(name)} has shape ${formatShape(shape)}, expected a leading dimension of 1`,
        );
      }
      return { shape: shape.slice(1), data };
    }
    case "conv": {
      expectRank(name, shape, 4, "[dim, channels, patch, patch]");
      const [dim, channels, height, width] = shape as [number, number, number, number];
      const rows = channels * height * width;
      return { shape: [rows, dim], data: transpose(data, dim, rows) };
    }
  }
}

function toHfTensor(
  name: string,
  tensor: WeightTensor,
  kind: Kind,
  channels: number,
): WeightTensor {
  const { shape, data } = tensor;
  checkData(name, tensor);
  switch (kind) {
    case "vector":
      expectRank(name, shape, 1, "[n]");
      return { shape: [...shape], data };
    case "linear": {
      expectRank(name, shape, 2, "[in, out]");
      const [rows, cols] = shape as [number, number];
      return { shape: [cols, rows], data: transpose(data, rows, cols) };
    }
    case "token":
      expectRank(name, shape, 2, "[n, dim]");
      return { shape: [1, ...shape], data };
    case "conv": {
      expectRank(name, shape, 2, "[channels*patch*patch, dim]");
      const [rows, dim] = shape as [number, number];
      const patch = Math.round(Math.sqrt(rows / channels));
      if (channels * patch * patch !== rows) {
        throw new WeightsError(
          `Tensor ${JSON.stringify(name)} has shape ${formatShape(shape)}, but ${rows} rows is not channels*patch*patch for ${channels} channels`,
        );
      }
      return {
        shape: [dim, channels, patch, patch],
        data: transpose(data, rows, dim),
      };
    }
  }
}

function expectRank(
  name: string,
  shape: readonly number[],
  rank: number,
  layout: string,
): void {
  if (shape.length !== rank) {
    throw new WeightsError(
      `Tensor ${JSON.stringify(name)} has shape ${formatShape(shape)}, expected rank ${rank} ${layout}`,
    );
  }
}

function checkData(name: string, tensor: WeightTensor): void {
  let size = 1;
  for (const dim of tensor.shape) size *= dim;
  if (tensor.data.length !== size) {
    throw new WeightsError(
      `Tensor ${JSON.stringify(name)} has ${tensor.data.length} values but shape ${formatShape(tensor.shape)} needs ${size}`,
    );
  }
}

/** Transposes a row-major [rows, cols] matrix into a new [cols, rows] one. */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[base + c]!;
  }
  return out;
}

function formatShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
