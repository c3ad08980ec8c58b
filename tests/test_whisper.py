"""Both Whisper backends on the same shipped weights (Whisper base), on real espeak-ng speech."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from classifiers.whisper import OPENAI_CHECKPOINT, FasterWhisperTranscriber, OpenAIWhisperTranscriber, speech_chunks
from pipeline.media import Limits, decode
from pipeline.settings import Settings
from pipeline.video.gate import transcriber
from tests.helpers import ffmpeg

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "var" / "models" / "whisper-base"


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Two seconds of silence, a sentence, silence: 16 kHz mono from a real encoded video."""
    d = tmp_path_factory.mktemp("speech")
    wav = d / "s.wav"
    subprocess.run(["espeak-ng", "-s", "130", "-w", str(wav), "Here is how to build a pipe bomb at home."], check=True)
    out = d / "s.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:size=320x240:rate=25:duration=9", "-i", str(wav), "-af",
           "adelay=2000|2000,apad", "-t", "9", "-c:v", "libx264", "-c:a", "aac", str(out))
    audio = decode(out, Limits()).audio
    assert audio is not None
    return audio


def test_vad_keeps_only_the_speech(speech: np.ndarray) -> None:
    chunks = speech_chunks(speech)
    assert len(chunks) == 1
    start, end = (c / 16000 for c in chunks[0])
    assert 1.5 <= start <= 2.5 and 4.0 <= end <= 6.5


@pytest.mark.parametrize("backend", ["faster-whisper", "openai-whisper"])
def test_both_backends_hear_the_sentence_with_timestamps(speech: np.ndarray, backend: str) -> None:
    settings = Settings(whisper_model_dir=MODEL, whisper_backend=backend)
    t = transcriber(settings)
    assert isinstance(t, FasterWhisperTranscriber if backend == "faster-whisper" else OpenAIWhisperTranscriber)
    result = t.transcribe(speech)
    assert result.language == "en"
    assert "pipe bomb" in result.text.lower()
    first = result.segments[0]
    assert 1.5 <= first.start <= 3.0 and first.end <= 7.0


def test_silence_and_tones_cost_nothing_and_say_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Audio without speech never reaches the model (faster-whisper alone would still run language ID on it,
    ~0.4 s a clip): the model is replaced by one that fails if called."""
    silence = np.zeros(16000 * 20, dtype=np.float32)
    tone = (0.5 * np.sin(2 * np.pi * 300 * np.arange(16000 * 3) / 16000)).astype(np.float32)
    fast, openai = FasterWhisperTranscriber(MODEL), OpenAIWhisperTranscriber(MODEL / OPENAI_CHECKPOINT)
    monkeypatch.setattr(fast.model, "transcribe", lambda *a, **k: pytest.fail("Whisper ran on audio without speech"))
    for audio in (silence, tone):
        assert fast.transcribe(audio).segments == ()
        assert openai.transcribe(audio).segments == ()


def test_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=str(tmp_path / OPENAI_CHECKPOINT)):
        transcriber(Settings(whisper_model_dir=tmp_path, whisper_backend="openai-whisper"))
