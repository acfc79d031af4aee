/**
 * Gradient rules for the tfjs kernels the forward passes of the examples use
 * (the ViT's, and the DiT's: Sigmoid for SiLU, Sqrt in its layer norm,
 * GatherV2 for the prompt embedding, SplitV and ExpandDims for the adaLN
 * chunks), so that
 * `tf.variableGrads` / `optimizer.minimize` work with `@tensorflow/tfjs-core`
 * alone.
 *
 * Why our own: tfjs-core's Node entry (`dist/tf-core.node.js`) registers no
 * gradients — only the `@tensorflow/tfjs` union package imports
 * `register_all_gradients`, and that file is ESM without file extensions,
 * which Node cannot import. Without rules, the first backward step fails
 * with "gradient function not found for RealDiv".
 *
 * `registerGradients()` registers a rule for each kernel below (and replaces
 * nothing that is already registered). Kernels without a rule still fail
 * loudly in the backward pass, naming the kernel.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";

type Attrs = tf.NamedAttrMap;
type Rule = tf.GradConfig;

const shapeOf = (t: tf.Tensor): number[] => t.shape as number[];

/** Normalises an axis attribute (number, list, possibly negative) for a rank. */
function axes(axis: unknown, rank: number): number[] {
  const list = axis === undefined || axis === null
    ? Array.from({ length: rank }, (_, i) => i)
    : Array.isArray(axis) ? (axis as number[]) : [axis as number];
  return list.map((a) => (a < 0 ? a + rank : a));
}

/** Sums `dy` down to `shape`, undoing numpy-style broadcasting. */
function unbroadcast(dy: tf.Tensor, shape: readonly number[]): tf.Tensor {
  const dyShape = shapeOf(dy);
  if (dyShape.length === shape.length && dyShape.every((d, i) => d === shape[i])) return dy;
  const lead = dyShape.length - shape.length;
  const reduce: number[] = [];
  for (let i = 0; i < dyShape.length; i++) {
    if (i < lead || (shape[i - lead] === 1 && dyShape[i] !== 1)) reduce.push(i);
  }
  const summed = reduce.length > 0 ? tf.sum(dy, reduce, true) : dy;
  return tf.reshape(summed, [...shape]);
}

/** A binary elementwise rule: gradients of `a` and `b` from dy and the saved inputs. */
function binary(
  kernelName: string,
  da: (dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => tf.Tensor,
  db: (dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => tf.Tensor,
): Rule {
  return {
    kernelName,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, saved) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const g = dy as tf.Tensor;
      return {
        a: () => unbroadcast(da(g, a, b), shapeOf(a)),
        b: () => unbroadcast(db(g, a, b), shapeOf(b)),
      };
    },
  };
}

/**
 * dy reshaped to the reduced tensor's keepDims shape, then broadcast to x's
 * shape. By a multiplication with ones: `tf.broadcastTo` runs the wasm Tile
 * kernel, measured 60× slower (24 ms for [32, 197, 1] → [32, 197, 64]).
 */
function expandReduced(dy: tf.Tensor, x: tf.Tensor, attrs: Attrs): tf.Tensor {
  const shape = shapeOf(x);
  const reduced = axes(attrs.axis, shape.length);
  const kept = shape.map((d, i) => (reduced.includes(i) ? 1 : d));
  return tf.mul(tf.reshape(dy, kept), tf.onesLike(x));
}

const rules: Rule[] = [
  binary("Add", (dy) => dy, (dy) => dy),
  binary("Sub", (dy) => dy, (dy) => tf.neg(dy)),
  binary("Multiply", (dy, _a, b) => tf.mul(dy, b), (dy, a) => tf.mul(dy, a)),
  binary(
    "RealDiv",
    (dy, _a, b) => tf.div(dy, b),
    (dy, a, b) => tf.neg(tf.div(tf.mul(dy, a), tf.square(b))),
  ),
  {
    kernelName: "Neg",
    gradFunc: (dy) => ({ x: () => tf.neg(dy as tf.Tensor) }),
  },
  {
    kernelName: "Cast",
    inputsToSave: ["x"],
    gradFunc: (dy, saved) => {
      const [x] = saved as [tf.Tensor];
      if (x.dtype !== "float32") throw new Error(`Cast: cannot differentiate through a ${x.dtype} input`);
      return { x: () => tf.clone(dy as tf.Tensor) };
    },
  },
  {
    kernelName: "Square",
    inputsToSave: ["x"],
    gradFunc: (dy, saved) => {
      const [x] = saved as [tf.Tensor];
      return { x: () => tf.mul(dy as tf.Tensor, tf.mul(x, 2)) };
    },
  },
  {
    // y = x^(-1/2): dy/dx = -y³/2
    kernelName: "Rsqrt",
    outputsToSave: [true],
    gradFunc: (dy, saved) => {
      const [y] = saved as [tf.Tensor];
      return { x: () => tf.mul(dy as tf.Tensor, tf.mul(tf.mul(tf.square(y), y), -0.5)) };
    },
  },
  {
    // d erf(x)/dx = 2/√π · exp(−x²)
    kernelName: "Erf",
    inputsToSave: ["x"],
    gradFunc: (dy, saved) => {
      const [x] = saved as [tf.Tensor];
      return { x: () => tf.mul(dy as tf.Tensor, tf.mul(tf.exp(tf.neg(tf.square(x))), 2 / Math.sqrt(Math.PI))) };
    },
  },
  {
    // y = σ(x): dy/dx = y·(1 − y)
    kernelName: "Sigmoid",
    outputsToSave: [true],
    gradFunc: (dy, saved) => {
      const [y] = saved as [tf.Tensor];
      return { x: () => tf.mul(dy as tf.Tensor, tf.mul(y, tf.sub(1, y))) };
    },
  },
  {
    // y = √x: dy/dx = 1/(2y)
    kernelName: "Sqrt",
    outputsToSave: [true],
    gradFunc: (dy, saved) => {
      const [y] = saved as [tf.Tensor];
      return { x: () => tf.div(dy as tf.Tensor, tf.mul(y, 2)) };
    },
  },
  {
    // y = x[indices] along axis 0 (an embedding lookup): each row of x gets
    // the sum of dy over the positions that read it, as onehot(indices)ᵀ · dy.
    kernelName: "GatherV2",
    inputsToSave: ["x", "indices"],
    gradFunc: (dy, saved, attrs) => {
      const [x, indices] = saved as [tf.Tensor, tf.Tensor];
      if (axes(attrs.axis, x.rank)[0] !== 0 || (attrs.batchDims as number | undefined ?? 0) !== 0) {
        throw new Error("GatherV2 gradient: only a gather along axis 0 without batch dimensions is supported");
      }
      const rows = x.shape[0]!;
      const rest = shapeOf(x).slice(1);
      const width = rest.reduce((a, b) => a * b, 1);
      return {
        x: () => {
          const hot = tf.oneHot(tf.reshape(tf.cast(indices, "int32"), [-1]), rows);
          return tf.reshape(tf.matMul(hot, tf.reshape(dy as tf.Tensor, [-1, width]), true, false), shapeOf(x));
        },
        indices: () => tf.zerosLike(indices),
      };
    },
  },
  {
    kernelName: "Exp",
    outputsToSave: [true],
    gradFunc: (dy, saved) => {
      const [y] = saved as [tf.Tensor];
      return { x: () => tf.mul(dy as tf.Tensor, y) };
    },
  },
  {
    // y = softmax(x): dx = y · (dy − Σ dy·y)
    kernelName: "Softmax",
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [y] = saved as [tf.Tensor];
      const dim = axes(attrs.dim, y.rank);
      const g = dy as tf.Tensor;
      return { logits: () => tf.mul(y, tf.sub(g, tf.sum(tf.mul(g, y), dim, true))) };
    },
  },
  {
    kernelName: "Sum",
    inputsToSave: ["x"],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved as [tf.Tensor];
      return { x: () => expandReduced(dy as tf.Tensor, x, attrs) };
    },
  },
  {
    kernelName: "Mean",
    inputsToSave: ["x"],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved as [tf.Tensor];
      const shape = shapeOf(x);
      const count = axes(attrs.axis, shape.length).reduce((n, a) => n * shape[a]!, 1);
      return { x: () => tf.div(expandReduced(dy as tf.Tensor, x, attrs), count) };
    },
  },
  {
    kernelName: "Reshape",
    inputsToSave: ["x"],
    gradFunc: (dy, saved) => {
      const [x] = saved as [tf.Tensor];
      return { x: () => tf.reshape(dy as tf.Tensor, shapeOf(x)) };
    },
  },
  {
    kernelName: "ExpandDims",
    inputsToSave: ["input"],
    gradFunc: (dy, saved) => {
      const [x] = saved as [tf.Tensor];
      return { input: () => tf.reshape(dy as tf.Tensor, shapeOf(x)) };
    },
  },
  {
    kernelName: "Transpose",
    gradFunc: (dy, _saved, attrs) => {
      const perm = attrs.perm as number[];
      const inverse = new Array<number>(perm.length);
      perm.forEach((p, i) => (inverse[p] = i));
      return { x: () => tf.transpose(dy as tf.Tensor, inverse) };
    },
  },
  {
    // y[..., r·s + j, ...] = x[..., j, ...]: sum dy over the repetitions.
    kernelName: "Tile",
    inputsToSave: ["x"],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved as [tf.Tensor];
      const reps = attrs.reps as number[];
      const shape = shapeOf(x);
      const split = shape.flatMap((s, i) => [reps[i]!, s]);
      const repAxes = shape.map((_, i) => 2 * i);
      return { x: () => tf.reshape(tf.sum(tf.reshape(dy as tf.Tensor, split), repAxes), shape) };
    },
  },
  {
    kernelName: "Slice",
    inputsToSave: ["x"],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved as [tf.Tensor];
      const shape = shapeOf(x);
      const g = dy as tf.Tensor;
      const beginAttr = attrs.begin as number | number[];
      const begin = shape.map((_, i) => (Array.isArray(beginAttr) ? beginAttr[i] ?? 0 : i === 0 ? beginAttr : 0));
      const size = shapeOf(g);
      const padding = shape.map((d, i) => [begin[i]!, d - begin[i]! - size[i]!] as [number, number]);
      return { x: () => tf.pad(g, padding) };
    },
  },
  {
    kernelName: "Concat",
    saveAllInputs: true,
    gradFunc: (dy, saved, attrs) => {
      const inputs = saved as tf.Tensor[];
      const axis = axes(attrs.axis, inputs[0]!.rank)[0]!;
      const sizes = inputs.map((t) => t.shape[axis]!);
      const out: Record<string, () => tf.Tensor> = {};
      // Each input's slice of dy, computed when asked for.
      let offset = 0;
      inputs.forEach((t, i) => {
        const begin = shapeOf(t).map((_, k) => (k === axis ? offset : 0));
        out[String(i)] = () => tf.slice(dy as tf.Tensor, begin, shapeOf(t));
        offset += sizes[i]!;
      });
      return out;
    },
  },
  {
    // tf.split: dx is the pieces' gradients concatenated back.
    kernelName: "SplitV",
    gradFunc: (dy, _saved, attrs) => ({ x: () => tf.concat(dy as tf.Tensor[], attrs.axis as number) }),
  },
  {
    kernelName: "BatchMatMul",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const ta = attrs.transposeA === true;
      const tb = attrs.transposeB === true;
      const g = dy as tf.Tensor;
      if (a.rank !== b.rank || shapeOf(a).slice(0, -2).some((d, i) => d !== b.shape[i])) {
        throw new Error(
          `BatchMatMul gradient: operands [${a.shape.join(", ")}] and [${b.shape.join(", ")}] broadcast their batch dimensions, which this rule does not support`,
        );
      }
      // C = op(A)·op(B). dA = dC·op(B)ᵀ (transposed back if A was), likewise dB.
      return {
        a: () => (ta ? tf.matMul(b, g, tb, true) : tf.matMul(g, b, false, !tb)),
        b: () => (tb ? tf.matMul(g, a, true, ta) : tf.matMul(a, g, !ta, false)),
      };
    },
  },
];

/** The kernels `registerGradients()` covers. */
export const gradientKernels: readonly string[] = rules.map((r) => r.kernelName);

/** Registers the rules above for every kernel that has no gradient yet. Idempotent. */
export function registerGradients(): void {
  for (const rule of rules) {
    if (tf.getGradient(rule.kernelName) === undefined) tf.registerGradient(rule);
  }
}
