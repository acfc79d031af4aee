import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  encodeSafetensors,
  fromHfVit,
  isHfVit,
  parseSafetensors,
  randomWeights,
  toHfVit,
  WeightsError,
} from "../../../runtime/weights/mod.ts";
import type { ParamSpec, WeightTensor } from "../../../runtime/weights/mod.ts";

interface VitConfig {
  dim: number;
  channels: number;
  patch: number;
  image: number;
  hidden: number;
  classes: number;
  layers: number;
}

const SMALL: VitConfig = { dim: 8, channels: 1, patch: 2, image: 4, hidden: 16, classes: 3, layers: 2 };

/** Turbograph's ViT parameters and shapes, per the compiler contract. */
function vitParams(c: VitConfig): ParamSpec[] {
  const { dim: D, channels: C, patch: p, hidden: H, classes: K } = c;
  const T = (c.image / p) ** 2 + 1;
  const params: ParamSpec[] = [
    { name: "embeddings.patch.weight", shape: [C * p * p, D] },
    { name: "embeddings.patch.bias", shape: [D] },
    { name: "embeddings.cls", shape: [1, D] },
    { name: "embeddings.pos", shape: [T, D] },
  ];
  for (let n = 0; n < c.layers; n++) {
    const l = `layer.${n}`;
    params.push(
      { name: `${l}.ln1.weight`, shape: [D] },
      { name: `${l}.ln1.bias`, shape: [D] },
    );
    for (const x of ["q", "k", "v", "out"]) {
      params.push(
        { name: `${l}.attn.${x}.weight`, shape: [D, D] },
        { name: `${l}.attn.${x}.bias`, shape: [D] },
      );
    }
    params.push(
      { name: `${l}.ln2.weight`, shape: [D] },
      { name: `${l}.ln2.bias`, shape: [D] },
      { name: `${l}.mlp.fc1.weight`, shape: [D, H] },
      { name: `${l}.mlp.fc1.bias`, shape: [H] },
      { name: `${l}.mlp.fc2.weight`, shape: [H, D] },
      { name: `${l}.mlp.fc2.bias`, shape: [D] },
    );
  }
  params.push(
    { name: "norm.weight", shape: [D] },
    { name: "norm.bias", shape: [D] },
    { name: "head.weight", shape: [D, K] },
    { name: "head.bias", shape: [K] },
  );
  return params;
}

function tensor(shape: number[], values?: ArrayLike<number>): WeightTensor {
  const size = shape.reduce((a, b) => a * b, 1);
  return {
    shape,
    data: values === undefined
      ? Float32Array.from({ length: size }, (_, i) => i)
      : new Float32Array(values),
  };
}

/** Asserts that `fn` throws a WeightsError whose message contains each part. */
function throwsWeights(fn: () => unknown, parts: readonly string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.instance(caught, WeightsError, "expected a WeightsError");
  const message = (caught as WeightsError).message;
  for (const part of parts) {
    assert.ok(message.includes(part), `message should mention ${part}: ${message}`);
  }
}

function assertSameTensors(
  actual: ReadonlyMap<string, WeightTensor>,
  expected: ReadonlyMap<string, WeightTensor>,
): void {
  assert.equal([...actual.keys()].sort(), [...expected.keys()].sort());
  for (const [name, want] of expected) {
    const got = actual.get(name)!;
    assert.equal(got.shape, want.shape, `shape of ${name}`);
    assert.equal(Array.from(got.data), Array.from(want.data), `data of ${name}`);
  }
}

test("`toHfVit()` and `fromHfVit()` round-trip a 2-block ViT through a safetensors file", () => {
  const ours = randomWeights(vitParams(SMALL), 7);
  const hf = toHfVit(ours, { channels: SMALL.channels });
  const expectedHfShapes: Record<string, number[]> = {
    "vit.embeddings.patch_embeddings.projection.weight": [8, 1, 2, 2],
    "vit.embeddings.patch_embeddings.projection.bias": [8],
    "vit.embeddings.cls_token": [1, 1, 8],
    "vit.embeddings.position_embeddings": [1, 5, 8],
    "vit.encoder.layer.1.attention.attention.query.weight": [8, 8],
    "vit.encoder.layer.1.attention.output.dense.bias": [8],
    "vit.encoder.layer.0.intermediate.dense.weight": [16, 8],
    "vit.encoder.layer.0.output.dense.weight": [8, 16],
    "vit.encoder.layer.0.layernorm_before.weight": [8],
    "vit.encoder.layer.1.layernorm_after.bias": [8],
    "vit.layernorm.weight": [8],
    "classifier.weight": [3, 8],
    "classifier.bias": [3],
  };
  for (const [name, shape] of Object.entries(expectedHfShapes)) {
    assert.ok(hf.has(name), `missing ${name}`);
    assert.equal(hf.get(name)!.shape, shape, `shape of ${name}`);
  }
  assert.is(hf.size, ours.size);

  const file = encodeSafetensors(hf, { format: "pt" });
  const loaded = parseSafetensors(file, "vit.safetensors");
  assert.ok(isHfVit(loaded.keys()));
  assertSameTensors(fromHfVit(loaded), ours);
});

test("`fromHfVit()` maps every HF name to the turbograph name", () => {
  const hf = toHfVit(randomWeights(vitParams(SMALL)), { channels: 1 });
  const back = fromHfVit(hf);
  const names = vitParams(SMALL).map((p) => p.name).sort();
  assert.equal([...back.keys()].sort(), names);
  assert.ok(hf.has("vit.encoder.layer.1.attention.attention.value.bias"));
  assert.ok(hf.has("vit.encoder.layer.1.intermediate.dense.bias"));
  assert.ok(hf.has("vit.encoder.layer.1.output.dense.bias"));
  assert.ok(hf.has("vit.encoder.layer.1.attention.attention.key.weight"));
});

test("`fromHfVit()` lays the conv weight [d, c, i, j] at row c*p*p + i*p + j, column d", () => {
  const D = 3, C = 2, p = 2;
  const values: number[] = [];
  for (let d = 0; d < D; d++) {
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < p; i++) {
        for (let j = 0; j < p; j++) values.push(1000 * d + 100 * c + 10 * i + j);
      }
    }
  }
  const out = fromHfVit(new Map([
    ["vit.embeddings.patch_embeddings.projection.weight", tensor([D, C, p, p], values)],
  ])).get("embeddings.patch.weight")!;
  assert.equal(out.shape, [C * p * p, D]);
  // A hand-picked element: d=2, c=1, i=0, j=1 → row 5, column 2.
  assert.is(out.data[5 * D + 2], 2101);
  for (let d = 0; d < D; d++) {
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < p; i++) {
        for (let j = 0; j < p; j++) {
          const row = c * p * p + i * p + j;
          assert.is(out.data[row * D + d], 1000 * d + 100 * c + 10 * i + j, `d=${d} c=${c} i=${i} j=${j}`);
        }
      }
    }
  }
  const back = toHfVit(new Map([["embeddings.patch.weight", out]]), { channels: C });
  const conv = back.get("vit.embeddings.patch_embeddings.projection.weight")!;
  assert.equal(conv.shape, [D, C, p, p]);
  assert.equal(Array.from(conv.data), values);
});

test("`fromHfVit()` transposes linear weights from [out, in] to [in, out]", () => {
  const out = fromHfVit(new Map([
    ["vit.encoder.layer.3.attention.attention.query.weight", tensor([3, 2], [1, 2, 3, 4, 5, 6])],
    ["classifier.weight", tensor([2, 3], [1, 2, 3, 4, 5, 6])],
  ]));
  const q = out.get("layer.3.attn.q.weight")!;
  assert.equal(q.shape, [2, 3]);
  assert.equal(Array.from(q.data), [1, 3, 5, 2, 4, 6]);
  const head = out.get("head.weight")!;
  assert.equal(head.shape, [3, 2]);
  assert.equal(Array.from(head.data), [1, 4, 2, 5, 3, 6]);
});

test("`fromHfVit()` squeezes the leading 1 of the class token and position embeddings", () => {
  const out = fromHfVit(new Map([
    ["vit.embeddings.cls_token", tensor([1, 1, 4])],
    ["vit.embeddings.position_embeddings", tensor([1, 5, 4])],
  ]));
  assert.equal(out.get("embeddings.cls")!.shape, [1, 4]);
  assert.equal(Array.from(out.get("embeddings.cls")!.data), [0, 1, 2, 3]);
  assert.equal(out.get("embeddings.pos")!.shape, [5, 4]);
  assert.is(out.get("embeddings.pos")!.data[19], 19);
});

test("`fromHfVit()` accepts ViTModel names without the `vit.` prefix and ignores the pooler", () => {
  const hf = toHfVit(randomWeights(vitParams(SMALL), 3), { channels: 1, prefix: "" });
  assert.ok(hf.has("embeddings.cls_token"));
  assert.ok(hf.has("encoder.layer.0.attention.attention.query.weight"));
  assert.ok(hf.has("layernorm.bias"));
  assert.ok(hf.has("classifier.weight"));
  hf.delete("classifier.weight");
  hf.delete("classifier.bias");
  hf.set("pooler.dense.weight", tensor([8, 8]));
  hf.set("pooler.dense.bias", tensor([8]));
  assert.ok(isHfVit(hf.keys()));
  const back = fromHfVit(hf);
  assert.not.ok(back.has("head.weight"));
  assert.ok(back.has("layer.1.mlp.fc2.weight"));
  assert.ok(back.has("norm.bias"));
  assert.is(back.size, vitParams(SMALL).length - 2);
  const ours = randomWeights(vitParams(SMALL), 3);
  assert.equal(Array.from(back.get("layer.1.attn.v.weight")!.data), Array.from(ours.get("layer.1.attn.v.weight")!.data));
});

test("`fromHfVit()` ignores `vit.pooler.*`", () => {
  const out = fromHfVit(new Map([
    ["vit.pooler.dense.weight", tensor([4, 4])],
    ["vit.pooler.dense.bias", tensor([4])],
    ["vit.layernorm.weight", tensor([4])],
  ]));
  assert.equal([...out.keys()], ["norm.weight"]);
});

test("`fromHfVit()` rejects an unknown name naming the tensor", () => {
  throwsWeights(
    () => fromHfVit(new Map([["vit.encoder.layer.0.attention.attention.qkv.weight", tensor([4, 4])]])),
    ['"vit.encoder.layer.0.attention.attention.qkv.weight"', "Unknown tensor"],
  );
  throwsWeights(() => fromHfVit(new Map([["vit.classifier.weight", tensor([3, 4])]])), ['"vit.classifier.weight"']);
  throwsWeights(() => fromHfVit(new Map([["distillation_classifier.weight", tensor([3, 4])]])), ['"distillation_classifier.weight"']);
});

test("`fromHfVit()` rejects a tensor of the wrong rank naming it and the shape", () => {
  throwsWeights(
    () => fromHfVit(new Map([["vit.encoder.layer.1.intermediate.dense.weight", tensor([16])]])),
    ['"vit.encoder.layer.1.intermediate.dense.weight"', "[16]", "rank 2"],
  );
  throwsWeights(
    () => fromHfVit(new Map([["vit.embeddings.patch_embeddings.projection.weight", tensor([8, 4])]])),
    ['"vit.embeddings.patch_embeddings.projection.weight"', "[8, 4]", "rank 4"],
  );
  throwsWeights(
    () => fromHfVit(new Map([["vit.layernorm.bias", tensor([1, 8])]])),
    ['"vit.layernorm.bias"', "[1, 8]", "rank 1"],
  );
  throwsWeights(
    () => fromHfVit(new Map([["vit.embeddings.cls_token", tensor([2, 1, 8])]])),
    ['"vit.embeddings.cls_token"', "[2, 1, 8]"],
  );
});

test("`fromHfVit()` rejects two names that map to the same parameter", () => {
  throwsWeights(
    () => fromHfVit(new Map([["vit.layernorm.weight", tensor([4])], ["layernorm.weight", tensor([4])]])),
    ['"vit.layernorm.weight"', '"layernorm.weight"', '"norm.weight"'],
  );
});

test("`toHfVit()` rejects unknown names and a patch weight that does not fit the channels", () => {
  throwsWeights(
    () => toHfVit(new Map([["layer.0.attn.qkv.weight", tensor([4, 4])]]), { channels: 1 }),
    ['"layer.0.attn.qkv.weight"'],
  );
  throwsWeights(() => toHfVit(new Map([["blocks.w", tensor([4])]]), { channels: 3 }), ['"blocks.w"']);
  throwsWeights(
    () => toHfVit(new Map([["embeddings.patch.weight", tensor([4, 8])]]), { channels: 3 }),
    ['"embeddings.patch.weight"', "[4, 8]", "3 channels"],
  );
});

test("`isHfVit()` tells HF ViT names from turbograph names", () => {
  assert.ok(isHfVit(["vit.embeddings.cls_token"]));
  assert.ok(isHfVit(["classifier.bias", "encoder.layer.0.layernorm_before.weight"]));
  assert.ok(isHfVit(new Set(["embeddings.patch_embeddings.projection.weight"])));
  assert.not.ok(isHfVit(vitParams(SMALL).map((p) => p.name)));
  assert.not.ok(isHfVit(["classifier.weight", "classifier.bias"]));
  assert.not.ok(isHfVit([]));
});

test("`randomWeights()` is deterministic and independent of parameter order", () => {
  const params = vitParams(SMALL);
  const a = randomWeights(params, 11);
  const b = randomWeights(params, 11);
  const reversed = randomWeights([...params].reverse(), 11);
  const alone = randomWeights([{ name: "layer.1.attn.k.weight", shape: [8, 8] }], 11);
  assertSameTensors(a, b);
  assertSameTensors(a, reversed);
  assert.equal(Array.from(alone.get("layer.1.attn.k.weight")!.data), Array.from(a.get("layer.1.attn.k.weight")!.data));
  const other = randomWeights(params, 12);
  assert.not.equal(Array.from(other.get("layer.1.attn.k.weight")!.data), Array.from(a.get("layer.1.attn.k.weight")!.data));
  assert.not.equal(Array.from(a.get("layer.0.attn.k.weight")!.data), Array.from(a.get("layer.1.attn.k.weight")!.data));
});

test("`randomWeights()` uses the initialisation rule for each kind of parameter", () => {
  const w = randomWeights([
    { name: "layer.0.ln1.weight", shape: [64] },
    { name: "norm.weight", shape: [64] },
    { name: "layer.0.ln2.bias", shape: [4096] },
    { name: "layer.0.mlp.fc1.bias", shape: [4096] },
    { name: "embeddings.pos", shape: [64, 64] },
    { name: "layer.0.mlp.fc1.weight", shape: [64, 256] },
  ]);
  const stats = (name: string) => {
    const data = w.get(name)!.data;
    const mean = data.reduce((s, x) => s + x, 0) / data.length;
    const std = Math.sqrt(data.reduce((s, x) => s + (x - mean) ** 2, 0) / data.length);
    return { mean, std };
  };
  assert.ok(w.get("layer.0.ln1.weight")!.data.every((x) => x === 1));
  assert.ok(w.get("norm.weight")!.data.every((x) => x === 1));
  for (const [name, std] of [
    ["layer.0.ln2.bias", 0.02],
    ["layer.0.mlp.fc1.bias", 0.02],
    ["embeddings.pos", 0.02],
    ["layer.0.mlp.fc1.weight", 1 / 8],
  ] as const) {
    const s = stats(name);
    assert.ok(Math.abs(s.std / std - 1) < 0.06, `${name}: std ${s.std}, expected about ${std}`);
    assert.ok(Math.abs(s.mean) < 0.1 * std, `${name}: mean ${s.mean}`);
  }
  assert.equal(w.get("layer.0.mlp.fc1.weight")!.shape, [64, 256]);
});

test("`randomWeights()` rejects a repeated name", () => {
  throwsWeights(
    () => randomWeights([{ name: "head.bias", shape: [3] }, { name: "head.bias", shape: [3] }]),
    ['"head.bias"', "twice"],
  );
});

test.run();
