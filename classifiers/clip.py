"""CLIP zero-shot frame scores: open_clip exported to ONNX, run by onnxruntime.

``export`` loads an open_clip model directory (``open_clip_config.json`` plus weights, the
layout of open_clip's hub repos, e.g. laion/CLIP-ViT-B-32-laion2B-s34B-b79K) and writes the
image and text towers as ONNX with the preprocessing settings beside them. At run time only
onnxruntime runs the towers, with open_clip's exact preprocessing (shortest side resized with
bicubic, centre crop, mean/std). Zero-shot scores per category come from the policy's label
prompts against contrast prompts, in the spirit of Stable Diffusion's CLIP safety checker.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from classifiers.base import ModelMissingError, VectorCache, int8_weights

FILES = ("image.onnx", "text.onnx", "preprocess.json", "VERSION")
INT8_IMAGE = "image.int8.onnx"  # the image tower with int8 weights (per channel), for CPUs
LOGIT_SCALE = 100.0


def export(model_dir: Path, out_dir: Path) -> Path:
    """Export both towers (needs torch and open_clip); returns ``out_dir``."""
    import open_clip
    import torch

    if not (model_dir / "open_clip_config.json").exists():
        raise ModelMissingError(f"no open_clip model at {model_dir} (expected open_clip_config.json and weights)")
    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
    model.eval()
    cfg = model.visual.preprocess_cfg
    size = cfg["size"] if isinstance(cfg["size"], int) else cfg["size"][0]
    context = model.context_length

    class Tower(torch.nn.Module):
        def __init__(self, encode: str) -> None:
            super().__init__()
            self.model, self.encode = model, encode

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return getattr(self.model, self.encode)(x, normalize=True)

    out_dir.mkdir(parents=True, exist_ok=True)
    batch = {0: "batch"}
    towers = (("image", "encode_image", torch.zeros(2, 3, size, size), "pixels"),
              ("text", "encode_text", torch.zeros(2, context, dtype=torch.int64), "tokens"))
    with torch.no_grad():
        for name, encode, example, input_name in towers:
            torch.onnx.export(Tower(encode).eval(), (example,), str(out_dir / f"{name}.onnx"), dynamo=True,
                              external_data=False, input_names=[input_name], output_names=["features"],
                              dynamic_axes={input_name: batch, "features": batch})
    (out_dir / "preprocess.json").write_text(json.dumps(
        {"size": size, "mean": list(cfg["mean"]), "std": list(cfg["std"]), "interpolation": cfg["interpolation"],
         "resize_mode": cfg["resize_mode"], "context_length": context}))
    # int8: on CPUs with VNNI about 2x the fp32 tower (bench/video_gate.py), embeddings within cosine
    # 0.999 of fp32 (tests/test_clip.py)
    int8_weights(out_dir / "image.onnx", out_dir / INT8_IMAGE)
    weights = sorted(p for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin", ".pth"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in weights)).hexdigest()[:12]
    shutil.copy(model_dir / "open_clip_config.json", out_dir / "open_clip_config.json")
    (out_dir / "VERSION").write_text(f"open_clip:{model_dir.name}@{digest}\n")
    return out_dir


class ClipModel:
    """The two ONNX towers and open_clip's preprocessing, without torch on the image path. On a CPU
    the image tower runs with int8 weights where the export wrote them (``precision="fp32"`` keeps
    the float tower); on CUDA always in float."""

    def __init__(self, onnx_dir: Path, providers: Sequence[str] | None = None,
                 precision: Literal["int8", "fp32"] = "int8") -> None:
        import onnxruntime as ort

        if missing := [str(onnx_dir / f) for f in FILES if not (onnx_dir / f).exists()]:
            raise ModelMissingError(f"CLIP model missing: {', '.join(missing)}; place an open_clip model directory "
                                    "and run `genguard models export --clip-dir DIR`")
        available = ort.get_available_providers()
        chosen = [p for p in (providers or ("CUDAExecutionProvider", "CPUExecutionProvider")) if p in available]
        int8 = precision == "int8" and chosen[0] == "CPUExecutionProvider" and (onnx_dir / INT8_IMAGE).exists()
        self.precision = "int8" if int8 else "fp32"
        self.image = ort.InferenceSession(str(onnx_dir / (INT8_IMAGE if int8 else "image.onnx")), providers=chosen)
        self.text = ort.InferenceSession(str(onnx_dir / "text.onnx"), providers=chosen)
        self.cfg = json.loads((onnx_dir / "preprocess.json").read_text())
        self.version = (onnx_dir / "VERSION").read_text().strip() + ("+int8" if int8 else "")
        if self.cfg["resize_mode"] != "shortest" or self.cfg["interpolation"] != "bicubic":
            raise ModelMissingError(f"unsupported preprocessing {self.cfg} (shortest side + bicubic only)")

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """Exactly open_clip's eval transform: resize shortest side (bicubic), centre crop, normalise."""
        size = self.cfg["size"]
        img = Image.fromarray(image).convert("RGB")
        w, h = img.size  # torchvision's Resize(int): short side to size, long side truncated
        new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        img = img.resize(new, Image.Resampling.BICUBIC)
        w, h = img.size
        left, top = round((w - size) / 2.0), round((h - size) / 2.0)
        img = img.crop((left, top, left + size, top + size))
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = (arr - np.array(self.cfg["mean"], dtype=np.float32)) / np.array(self.cfg["std"], dtype=np.float32)
        return arr.transpose(2, 0, 1)

    def embed_images(self, images: Sequence[np.ndarray], batch: int = 16) -> np.ndarray:
        out = [self.image.run(None, {"pixels": np.stack([self.preprocess(i) for i in images[s:s + batch]])})[0]
               for s in range(0, len(images), batch)]
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        from open_clip.tokenizer import SimpleTokenizer

        tokens = SimpleTokenizer(context_length=self.cfg["context_length"])(list(texts)).numpy().astype(np.int64)
        return self.text.run(None, {"tokens": tokens})[0]


class ClipZeroShot:
    """Per category: softmax over its label prompts and contrast prompts; the label prompts' share."""

    name = "clip"

    def __init__(self, model: ClipModel, labels: Mapping[str, tuple[Sequence[str], Sequence[str]]],
                 cache: VectorCache | None = None) -> None:
        self.model = model
        self.version = model.version
        self.outputs = tuple(labels)
        self.groups: list[tuple[int, int]] = []
        phrases: list[str] = []
        for prompts, contrast in labels.values():
            self.groups.append((len(phrases), len(prompts)))
            phrases += [*prompts, *contrast]
        self.ends = [*(start for start, _ in self.groups[1:]), len(phrases)]
        key = hashlib.sha256("\n".join([self.version, *phrases]).encode()).hexdigest()
        cached = cache.get(key) if cache is not None else None
        self.text = cached if cached is not None and len(cached) == len(phrases) else model.embed_texts(phrases)
        if cache is not None and cached is None:
            cache.put(key, self.text)

    def score_embeddings(self, emb: np.ndarray) -> np.ndarray:
        logits = LOGIT_SCALE * emb @ self.text.T
        out = np.zeros((len(emb), len(self.outputs)), dtype=np.float32)
        for c, ((start, n), end) in enumerate(zip(self.groups, self.ends, strict=True)):
            group = logits[:, start:end]
            p = np.exp(group - group.max(axis=1, keepdims=True))
            out[:, c] = p[:, :n].sum(axis=1) / p.sum(axis=1)
        return out

    def score(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        return self.score_embeddings(self.model.embed_images(batch))
