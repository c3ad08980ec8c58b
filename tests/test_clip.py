"""CLIP: no pretrained weights are reachable here, so a small randomly initialised open_clip
model proves the export, the ONNX/torch parity and the pipeline; the loading code is the one
production uses with a real model directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classifiers.clip import ClipModel, ClipZeroShot, export
from pipeline.policy_source import PolicySource
from pipeline.prompt.gate import PromptGate
from pipeline.settings import Settings
from pipeline.video.gate import VideoGate
from tests.helpers import SINTEL
from tests.helpers import clip as make_clip

ROOT = Path(__file__).resolve().parent.parent
TINY = {"embed_dim": 64, "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32,
                                        "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An open_clip model directory laid out like a hub repo: open_clip_config.json + weights."""
    import open_clip
    import torch

    d = tmp_path_factory.mktemp("tiny-clip")
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY, "preprocess_cfg": {}}))
    torch.manual_seed(0)
    torch.save(open_clip.CLIP(**TINY).state_dict(), d / "open_clip_pytorch_model.bin")
    return d


@pytest.fixture(scope="module")
def onnx_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(model_dir, tmp_path_factory.mktemp("clip-onnx"))


def test_onnx_matches_open_clip_in_torch(model_dir: Path, onnx_dir: Path) -> None:
    import open_clip
    import torch
    from PIL import Image

    ref, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
    ref.eval()
    rng = np.random.default_rng(0)
    images = [(rng.random(shape) * 255).astype(np.uint8) for shape in ((546, 1280, 3), (300, 300, 3), (720, 405, 3))]
    model = ClipModel(onnx_dir, precision="fp32")
    pixels = torch.stack([preprocess(Image.fromarray(i)) for i in images])
    assert float(np.abs(pixels.numpy() - np.stack([model.preprocess(i) for i in images])).max()) == 0.0
    with torch.no_grad():
        want_img = ref.encode_image(pixels, normalize=True).numpy()
        want_txt = ref.encode_text(open_clip.get_tokenizer(f"local-dir:{model_dir}")(["a cat", "gore"]),
                                   normalize=True).numpy()
    img_diff = float(np.abs(model.embed_images(images) - want_img).max())
    txt_diff = float(np.abs(model.embed_texts(["a cat", "gore"]) - want_txt).max())
    print(f"CLIP ONNX vs torch max abs diff: image {img_diff:.2e}, text {txt_diff:.2e}")
    assert img_diff < 1e-4 and txt_diff < 1e-4


def test_int8_image_tower_keeps_the_embeddings_and_the_decisions(onnx_dir: Path) -> None:
    """The CPU default: int8 weights. On real frames (Sintel) its embeddings stay within cosine 0.99 of
    the float tower's and zero-shot picks the same label for every frame."""
    from pipeline.media import Limits, decode

    frames = [f.image for f in decode(SINTEL, Limits()).frames]
    fp32, int8 = ClipModel(onnx_dir, precision="fp32"), ClipModel(onnx_dir)
    assert (fp32.precision, int8.precision) == ("fp32", "int8") and int8.version.endswith("+int8")
    a, b = fp32.embed_images(frames), int8.embed_images(frames)
    cosine = (a * b).sum(axis=1)
    print(f"CLIP int8 vs fp32 on {len(frames)} Sintel frames: cosine min {cosine.min():.5f}")
    assert cosine.min() >= 0.99
    labels = {c: ([f"a photo of {c}"], ["a photo", "a drawing"]) for c in ("violence", "a dragon", "snow")}
    zs = [ClipZeroShot(m, labels) for m in (fp32, int8)]
    sa, sb = (z.score_embeddings(e) for z, e in zip(zs, (a, b), strict=True))
    assert (sa.argmax(axis=1) == sb.argmax(axis=1)).all() and float(np.abs(sa - sb).max()) < 0.02


def test_zero_shot_scores_are_probabilities(onnx_dir: Path) -> None:
    zs = ClipZeroShot(ClipModel(onnx_dir), {"a": (["x", "y"], ["z"]), "b": (["p"], ["q", "r"])})
    scores = zs.score([np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8)])
    assert scores.shape == (2, 2) and ((scores >= 0) & (scores <= 1)).all()


def test_missing_model_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=str(tmp_path / "image.onnx")):
        ClipModel(tmp_path)


def test_export_command(model_dir: Path, tmp_path: Path) -> None:
    env = {"GENGUARD_VAR_DIR": str(tmp_path), "GENGUARD_TEXT_MODEL_DIR": str(ROOT / "var/models/minilm"),
           "GENGUARD_WHISPER_MODEL_DIR": str(ROOT / "var/models/whisper-base"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "models", "export", "--clip-dir", str(model_dir)],
                         env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "models/clip/image.onnx").exists() and "CLIP" in out.stdout


def test_tiny_clip_drives_the_whole_pipeline(base_settings: Settings, gate: PromptGate, onnx_dir: Path,
                                             tmp_path: Path) -> None:
    settings = base_settings.model_copy(update={"environment": "production", "clip_model_dir": onnx_dir,
                                                "var_dir": tmp_path})
    prompts = PromptGate(settings, PolicySource(settings), gate.encoder, gate.cache, gate.text_classifiers)
    vg = VideoGate.from_settings(settings, prompts)
    decision, _, obs = vg.run(make_clip(tmp_path / "c.mp4", seconds=3), None, "default", "job-clip")
    assert "clip" in decision.model_versions and "clip" not in decision.unscored
    assert not any(k.endswith("clip") for k in decision.errors)
    assert obs.clip is not None and len(obs.clip) == len(obs.frames)
    frames, _ = vg.frame_signals(obs, prompts.policies.for_tenant("default"))
    assert set(frames.scores["clip"]) >= {"sexual", "violence", "violence/graphic", "minors"}
