/**
 * ViT model configurations and the parameter contract shared by the eager
 * reference implementation and the compiled program.
 */

export interface VitConfig {
  /** Human-readable preset name. */
  name: string;
  /** Square input resolution (pixels per side). */
  image: number;
  /** Square patch size (pixels per side); must divide `image`. */
  patch: number;
  /** Input channels. */
  channels: number;
  /** Embedding width D. */
  dim: number;
  /** Number of transformer blocks. */
  depth: number;
  /** Attention heads; must divide `dim`. */
  heads: number;
  /** MLP hidden width = dim * mlpRatio. */
  mlpRatio: number;
  /** Number of output classes. */
  classes: number;
  /** LayerNorm epsilon. */
  eps: number;
}

export const tiny: VitConfig = {
  name: "tiny",
  image: 32,
  patch: 8,
  channels: 3,
  dim: 64,
  depth: 2,
  heads: 4,
  mlpRatio: 4,
  classes: 10,
  eps: 1e-12,
};

export const ti16: VitConfig = {
  name: "ti16",
  image: 224,
  patch: 16,
  channels: 3,
  dim: 192,
  depth: 12,
  heads: 3,
  mlpRatio: 4,
  classes: 1000,
  eps: 1e-12,
};

export const s16: VitConfig = {
  name: "s16",
  image: 224,
  patch: 16,
  channels: 3,
  dim: 384,
  depth: 12,
  heads: 6,
  mlpRatio: 4,
  classes: 1000,
  eps: 1e-12,
};

export const b16: VitConfig = {
  name: "b16",
  image: 224,
  patch: 16,
  channels: 3,
  dim: 768,
  depth: 12,
  heads: 12,
  mlpRatio: 4,
  classes: 1000,
  eps: 1e-12,
};

/**
 * The ViT trained on MNIST (examples/vit/train_mnist.ts): 2×2 patches give
 * 196 patch tokens + the class token = 197, the token count of ViT-B/16 at
 * 224, so Turbo's merging has the same geometry to work with. Width and
 * depth are sized so that training fits in about an hour on one CPU core
 * with the wasm backend (see examples/vit/README.md).
 */
export const mnist: VitConfig = {
  name: "mnist",
  image: 28,
  patch: 2,
  channels: 1,
  dim: 32,
  depth: 6,
  heads: 2,
  mlpRatio: 2,
  classes: 10,
  eps: 1e-12,
};

export const vitConfigs = { tiny, ti16, s16, b16, mnist };

/** Derived sizes of a config. */
export function vitDims(config: VitConfig): {
  grid: number;
  patches: number;
  tokens: number;
  patchDim: number;
  headDim: number;
  hidden: number;
} {
  const { image, patch, channels, dim, heads, mlpRatio } = config;
  if (!(image > 0 && patch > 0 && image % patch === 0)) {
    throw new Error(`vit config ${config.name}: patch ${patch} must divide image ${image}`);
  }
  if (!(dim > 0 && heads > 0 && dim % heads === 0)) {
    throw new Error(`vit config ${config.name}: heads ${heads} must divide dim ${dim}`);
  }
  const hidden = dim * mlpRatio;
  if (!Number.isInteger(hidden) || hidden <= 0) {
    throw new Error(`vit config ${config.name}: dim*mlpRatio must be a positive integer, got ${hidden}`);
  }
  const grid = image / patch;
  const patches = grid * grid;
  return {
    grid,
    patches,
    tokens: patches + 1,
    patchDim: channels * patch * patch,
    headDim: dim / heads,
    hidden,
  };
}

/** Every parameter of the model, in canonical order, with its shape. */
export function vitParams(config: VitConfig): Array<{ name: string; shape: number[] }> {
  const { dim: D, depth, classes: K } = config;
  const { tokens: T, patchDim: P, hidden: H } = vitDims(config);
  const out: Array<{ name: string; shape: number[] }> = [
    { name: "embeddings.patch.weight", shape: [P, D] },
    { name: "embeddings.patch.bias", shape: [D] },
    { name: "embeddings.cls", shape: [1, D] },
    { name: "embeddings.pos", shape: [T, D] },
  ];
  for (let n = 0; n < depth; n++) {
    const l = `layer.${n}`;
    out.push(
      { name: `${l}.ln1.weight`, shape: [D] },
      { name: `${l}.ln1.bias`, shape: [D] },
    );
    for (const proj of ["q", "k", "v", "out"]) {
      out.push(
        { name: `${l}.attn.${proj}.weight`, shape: [D, D] },
        { name: `${l}.attn.${proj}.bias`, shape: [D] },
      );
    }
    out.push(
      { name: `${l}.ln2.weight`, shape: [D] },
      { name: `${l}.ln2.bias`, shape: [D] },
      { name: `${l}.mlp.fc1.weight`, shape: [D, H] },
      { name: `${l}.mlp.fc1.bias`, shape: [H] },
      { name: `${l}.mlp.fc2.weight`, shape: [H, D] },
      { name: `${l}.mlp.fc2.bias`, shape: [D] },
    );
  }
  out.push(
    { name: "norm.weight", shape: [D] },
    { name: "norm.bias", shape: [D] },
    { name: "head.weight", shape: [D, K] },
    { name: "head.bias", shape: [K] },
  );
  return out;
}
