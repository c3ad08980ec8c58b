"""The three model families on a CUDA device next to this machine's CPU figures, same inputs:
the CLIP image tower (ViT-B-32 sized, random weights: speed does not depend on them), the MiniLM
text encoder, and Whisper base (faster-whisper, float16 on CUDA, int8 on CPU). Needs
onnxruntime-gpu and ctranslate2 with CUDA; not part of `make test` or `make bench`.

    .venv/bin/python bench/gpu.py [--batch 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import record  # noqa: E402
from bench.video_gate import speech_clip, vit_b32  # noqa: E402
from classifiers.clip import ClipModel, export  # noqa: E402
from classifiers.text_embedding import TextEncoder  # noqa: E402
from classifiers.whisper import FasterWhisperTranscriber  # noqa: E402
from pipeline.media import Limits, decode  # noqa: E402

CUDA = ("CUDAExecutionProvider", "CPUExecutionProvider")
CPU = ("CPUExecutionProvider",)


def missing_cuda() -> str | None:
    """Why this machine cannot run the GPU bench, or None."""
    import ctranslate2
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: "
                f"{', '.join(ort.get_available_providers())}): install onnxruntime-gpu on a host with a CUDA GPU")
    if ctranslate2.get_cuda_device_count() == 0:
        return "ctranslate2 sees no CUDA device (faster-whisper would run on the CPU)"
    return None


def rate(fn: Callable[[], object], items: float, rounds: int) -> float:
    fn()  # warm-up (CUDA kernels, memory arenas)
    best = min(_timed(fn) for _ in range(rounds))
    return items / best


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if why := missing_cuda():
        raise SystemExit(f"bench/gpu.py: nothing to measure here: {why}")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        frames = [f.image for f in decode(ROOT / "var/testdata/sintel.mp4", Limits(sample_fps=8)).frames]
        frames = (frames * (args.batch // len(frames) + 1))[: args.batch]
        onnx_dir = export(vit_b32(tmp), tmp / "clip-onnx")
        texts = [line.split("\t")[-1] for line in (ROOT / "classifiers/data/t2v/en.tsv").read_text().splitlines()[1:]]
        texts = texts[: args.batch * 4]
        clip = speech_clip(tmp)
        audio = decode(clip, Limits()).audio
        assert audio is not None
        seconds = len(audio) / 16000
        minilm, whisper = ROOT / "var/models/minilm", ROOT / "var/models/whisper-base"
        clip_cpu, clip_cuda = ClipModel(onnx_dir, CPU), ClipModel(onnx_dir, CUDA)
        text_cpu, text_cuda = TextEncoder(minilm, providers=CPU), TextEncoder(minilm, providers=CUDA)
        speech_cpu = FasterWhisperTranscriber(whisper)
        speech_cuda = FasterWhisperTranscriber(whisper, "float16", device="cuda")
        runs: dict[str, tuple[float, dict[str, Callable[[], object]]]] = {
            "CLIP image tower (frames/s)": (len(frames), {
                "cpu": lambda: clip_cpu.embed_images(frames, args.batch),
                "cuda": lambda: clip_cuda.embed_images(frames, args.batch)}),
            "MiniLM text encoder (texts/s)": (len(texts), {
                "cpu": lambda: text_cpu.embed(texts),
                "cuda": lambda: text_cuda.embed(texts)}),
            "Whisper base (audio s per s)": (seconds, {
                "cpu": lambda: speech_cpu.transcribe(audio),
                "cuda": lambda: speech_cuda.transcribe(audio)}),
        }
        print(f"{'':<32} {'CPU':>10} {'CUDA':>10} {'ratio':>7}")
        for name, (items, fns) in runs.items():
            cpu, cuda = (rate(fns[k], items, args.rounds) for k in ("cpu", "cuda"))
            print(f"{name:<32} {cpu:10.1f} {cuda:10.1f} {cuda / cpu:6.1f}x")
            record("gpu", name, cuda, "per s", ("CPU", cpu))
        smi = shutil.which("nvidia-smi")
        gpu = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True).stdout.strip() if smi else ""
        print(f"(GPU: {gpu or 'unknown'}; CLIP on the CPU in {clip_cpu.precision}, on CUDA in {clip_cuda.precision})")


if __name__ == "__main__":
    main()
