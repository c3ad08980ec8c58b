"""Shared fixtures: the real embedded broker (Tansu) on a free port, the real local Redis under a
per-session key prefix, and one loaded prompt gate (the shipped models, on CPU)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import uvicorn

from pipeline.gate import PromptGate
from pipeline.services import ensure_redis, start_tansu, stop
from pipeline.settings import Settings
from pipeline.state import RedisVectorCache

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@contextlib.contextmanager
def serve_api(s: Settings, gate: PromptGate) -> Iterator[str]:
    """The real API (uvicorn) on a free loopback port, in a thread of this process."""
    from pipeline.api import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(s, gate), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def json_or_none(raw: bytes) -> dict | None:
    """Topics are shared by the session's tests, and some write junk on purpose."""
    try:
        return json.loads(raw)
    except ValueError:
        return None
