"""The benchmark's reference ONNX graph: a Hugging Face-layout ViT built in
plain PyTorch from a safetensors file, exported with torch.onnx.export.

    python3 bench/torch_vit_export.py WEIGHTS.safetensors OUT.onnx \
        --image 224 --patch 16 --channels 3 --dim 384 --depth 12 --heads 6 \
        --mlp-ratio 4 --classes 1000 --eps 1e-12

`bench/onnx.ts` writes the weights (turbograph's random weights, renamed to
the Hugging Face layout by runtime/weights/hf_vit.ts), runs this script, and
checks that the exported graph's logits agree with turbograph's own ONNX
graph before timing either. Needs Debian's python3-torch (1.13) and nothing
else: the safetensors file is parsed here (a JSON header and raw float32s).
The model is the standard pre-norm ViT (what ViTForImageClassification
computes): patch conv, class token, position embedding, blocks of
LN -> multi-head attention -> residual, LN -> MLP with exact GELU ->
residual, final LN, linear head on the class token.
"""

import argparse
import json
import math
import struct
import sys

import numpy as np
import torch
from torch import nn


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {meta['dtype']}, only F32 is read")
        start, end = meta["data_offsets"]
        array = np.frombuffer(body[start:end], dtype="<f4").reshape(meta["shape"])
        out[name] = torch.from_numpy(array.copy())
    return out


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, eps):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim, eps=eps)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        b, n, d = x.shape
        h = self.heads
        y = self.ln1(x)
        split = lambda t: t.reshape(b, n, h, d // h).transpose(1, 2)
        q, k, v = split(self.q(y)), split(self.k(y)), split(self.v(y))
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), dim=-1)
        x = x + self.out((p @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class Vit(nn.Module):
    def __init__(self, a):
        super().__init__()
        tokens = (a.image // a.patch) ** 2 + 1
        self.patch = nn.Conv2d(a.channels, a.dim, a.patch, stride=a.patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, a.dim))
        self.pos = nn.Parameter(torch.zeros(1, tokens, a.dim))
        self.blocks = nn.ModuleList(Block(a.dim, a.heads, a.dim * a.mlp_ratio, a.eps) for _ in range(a.depth))
        self.norm = nn.LayerNorm(a.dim, eps=a.eps)
        self.head = nn.Linear(a.dim, a.classes)

    def forward(self, pixels):
        x = self.patch(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def load_hf(model, w, depth):
    """Copies Hugging Face ViTForImageClassification tensors into the model."""
    take = lambda name: w.pop(name)
    sd = {
        "patch.weight": take("vit.embeddings.patch_embeddings.projection.weight"),
        "patch.bias": take("vit.embeddings.patch_embeddings.projection.bias"),
        "cls": take("vit.embeddings.cls_token"),
        "pos": take("vit.embeddings.position_embeddings"),
        "norm.weight": take("vit.layernorm.weight"),
        "norm.bias": take("vit.layernorm.bias"),
        "head.weight": take("classifier.weight"),
        "head.bias": take("classifier.bias"),
    }
    names = {
        "ln1": "layernorm_before",
        "q": "attention.attention.query",
        "k": "attention.attention.key",
        "v": "attention.attention.value",
        "out": "attention.output.dense",
        "ln2": "layernorm_after",
        "fc1": "intermediate.dense",
        "fc2": "output.dense",
    }
    for i in range(depth):
        for ours, hf in names.items():
            for kind in ("weight", "bias"):
                sd[f"blocks.{i}.{ours}.{kind}"] = take(f"vit.encoder.layer.{i}.{hf}.{kind}")
    if w:
        sys.exit(f"unused tensors in the weights: {sorted(w)[:5]}")
    model.load_state_dict(sd, strict=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("weights")
    p.add_argument("out")
    for name in ("image", "patch", "channels", "dim", "depth", "heads", "mlp-ratio", "classes"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--eps", type=float, required=True)
    p.add_argument("--opset", type=int, default=17)
    a = p.parse_args()
    torch.manual_seed(0)
    model = Vit(a).eval()
    load_hf(model, read_safetensors(a.weights), a.depth)
    example = torch.zeros(2, a.channels, a.image, a.image)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            a.out,
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_axes={"pixels": {0: "B"}, "logits": {0: "B"}},
            opset_version=a.opset,
            do_constant_folding=True,
        )
    print(f"torch {torch.__version__}: exported {a.out} at opset {a.opset}")


if __name__ == "__main__":
    main()
