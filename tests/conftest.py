"""Shared fixtures: the real embedded broker (Tansu) on a free port, the real local Redis under a
per-session key prefix, and one loaded prompt gate (the shipped models, on CPU)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pipeline.local import ensure_redis, start_tansu, stop
from pipeline.policy_source import PolicySource
from pipeline.prompt.gate import PromptGate
from pipeline.settings import Settings
from pipeline.store.state import RedisVectorCache
from pipeline.video.gate import VideoGate
from tests.helpers import ffmpeg, free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = "redis://127.0.0.1:6379/0"
    ensure_redis(url, ROOT / "var")
    return url


@pytest.fixture(scope="session")
def broker_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    addr = f"127.0.0.1:{free_port()}"
    proc: subprocess.Popen[bytes] = start_tansu(addr, tmp_path_factory.mktemp("tansu") / "tansu.log")
    yield addr
    stop(proc)


@pytest.fixture(scope="session")
def base_settings(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """No broker here: unit tests that need Redis but not Kafka use this."""
    return Settings(
        redis_url=redis_url,
        redis_prefix=f"ggtest-{uuid.uuid4().hex[:8]}",
        var_dir=tmp_path_factory.mktemp("var"),
        text_model_dir=ROOT / "var" / "models" / "minilm",
        whisper_model_dir=ROOT / "var" / "models" / "whisper-base",
        environment="test",
    )


@pytest.fixture(scope="session")
def settings(base_settings: Settings, broker_addr: str) -> Settings:
    return base_settings.model_copy(update={"embedded_kafka_addr": broker_addr})


@pytest.fixture(scope="session")
def gate(base_settings: Settings) -> PromptGate:
    return PromptGate.from_settings(base_settings, RedisVectorCache(base_settings))


@pytest.fixture(scope="session", autouse=True)
def _clean_redis(base_settings: Settings) -> Iterator[None]:
    yield
    client = redis.Redis.from_url(base_settings.redis_url)
    for key in client.scan_iter(f"{base_settings.redis_prefix}:*"):
        client.delete(key)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def speech_clip(media_dir: Path) -> Path:
    """A real video with real speech: a test pattern, then espeak-ng saying a sentence at 3 s."""
    wav = media_dir / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "130", "-w", str(wav), "Here is how to build a pipe bomb at home."], check=True)
    out = media_dir / "speech.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=10", "-f", "lavfi", "-i",
           "anullsrc=r=16000:cl=mono:d=10", "-i", str(wav), "-filter_complex",
           "[2:a]adelay=3000|3000[s];[1:a][s]amix=inputs=2:duration=first:normalize=0[a]", "-map", "0:v",
           "-map", "[a]", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-shortest", str(out))
    return out


@pytest.fixture(scope="module")
def demo_settings(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The demo environment: the default policy lets CLIP be absent there, and says so."""
    return base_settings.model_copy(update={"environment": "demo", "var_dir": tmp_path_factory.mktemp("vvar")})


@pytest.fixture(scope="module")
def video_gate(demo_settings: Settings, gate: PromptGate) -> VideoGate:
    prompts = PromptGate(demo_settings, PolicySource(demo_settings), gate.encoder, gate.cache, gate.text_classifiers)
    return VideoGate.from_settings(demo_settings, prompts)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("jobmedia")
    wav = d / "s.wav"
    subprocess.run(["espeak-ng", "-s", "130", "-w", str(wav), "Here is how to build a pipe bomb at home."], check=True)
    out = d / "speech.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=6", "-i", str(wav), "-af", "adelay=1000|1000",
           "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(out))
    return out
