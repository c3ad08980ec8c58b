"""What tests share, as plain functions (no test module imports another): servers and keys,
real media made with Debian's ffmpeg, worker processes, job polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import uvicorn

from pipeline.prompt.gate import PromptGate
from pipeline.settings import Settings
from pipeline.store.state import State
from pipeline.video.gate import VideoGate

ROOT = Path(__file__).resolve().parent.parent
# Every Unicode general category, surrogates (Cs) included: hypothesis leaves Cs out unless asked.
EVERY_CATEGORY = ("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf",
                  "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn")
# Text that has broken text pipelines: a lone surrogate, NUL, a bidi override, 3,900 emoji, zalgo marks,
# Cyrillic look-alikes in Latin words next to Russian and Chinese.
HOSTILE = ("\ud800 bomb", "a\x00b", "\u202eb\u202cmob mrof", "😀" * 3900, "z̷̢̛a̶l̵g̴o̸ b̶o̷m̸b̵", "bоmb аnd ракета 炸弹")
SINTEL = ROOT / "var" / "testdata" / "sintel.mp4"
FACES = ROOT.parent / "shared" / "faces"  # photos of two public officials: test fixtures only, never shipped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_or_none(raw: bytes) -> dict | None:
    """Topics are shared by the session's tests, and some write junk on purpose."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


@contextlib.contextmanager
def serve_api(s: Settings, gate: PromptGate, frames: VideoGate | None = None) -> Iterator[str]:
    """The real API (uvicorn) on a free loopback port, in a thread of this process."""
    from pipeline.api.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(s, gate, frames), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def make_key(settings: Settings, tenant: str, scopes: list[str]) -> str:
    async def run() -> str:
        state = State(settings)
        try:
            return (await state.create_key(tenant, scopes, "test"))[0]  # type: ignore[arg-type]
        finally:
            await state.close()
    return asyncio.run(run())


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def pan_clip(photo: Path, out: Path, seconds: float = 10, size: str = "960x540") -> Path:
    """A real video made from one photo: fitted into the frame, slowly zoomed and panned, with a tone."""
    w, h = size.split("x")
    fit = f"scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2"
    move = f"zoompan=z='min(zoom+0.0012,1.3)':x='iw/2-(iw/zoom/2)+on':y='ih/3-(ih/zoom/3)':d={int(seconds * 25)}"
    ffmpeg("-loop", "1", "-i", str(photo), "-f", "lavfi", "-i", f"sine=frequency=220:duration={seconds}",
           "-filter_complex", f"[0:v]{fit},{move}:s={size}:fps=25[v]", "-map", "[v]", "-map", "1:a",
           "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac",
           "-shortest", str(out))
    return out


def clip(path: Path, seconds: float = 4, size: str = "640x360", codec: str = "libx264", extra: Sequence[str] = (),
         source: str = "testsrc2") -> Path:
    ffmpeg("-f", "lavfi", "-i", f"{source}=size={size}:rate=25", "-f", "lavfi", "-i",
           f"sine=frequency=300:duration={seconds}", "-t", str(seconds), "-c:v", codec, *extra, "-pix_fmt", "yuv420p",
           "-shortest", str(path))
    return path


def env_of(s: Settings) -> dict[str, str]:
    """The environment a `genguard` process needs to see what these settings say."""
    return {**os.environ, "GENGUARD_EMBEDDED_KAFKA_ADDR": s.embedded_kafka_addr, "GENGUARD_REDIS_URL": s.redis_url,
            "GENGUARD_REDIS_PREFIX": s.redis_prefix, "GENGUARD_VAR_DIR": str(s.var_dir),
            "GENGUARD_WORKER_NAME": s.worker_name, "GENGUARD_TEXT_MODEL_DIR": str(s.text_model),
            "GENGUARD_WHISPER_MODEL_DIR": str(s.whisper_model), "GENGUARD_ENVIRONMENT": s.environment,
            "GENGUARD_JOB_LEASE_S": str(s.job_lease_s), "GENGUARD_RECONCILE_EVERY_S": "1"}


def genguard(s: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `genguard` command line, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, env=env_of(s), capture_output=True,
                          text=True, timeout=180)


def start_worker(s: Settings, *stages: str) -> subprocess.Popen[bytes]:
    """A real `genguard worker` process; its log is var_dir/worker-<ns>.log (``log_of``)."""
    env = env_of(s)
    log = open(s.var_dir / f"worker-{time.time_ns()}.log", "wb")  # noqa: SIM115
    args = ["--stages", ",".join(stages)] if stages else []
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker", *args], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    proc.log = Path(log.name)  # type: ignore[attr-defined]
    return proc


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def upload(api: str, key: str, path: Path, prompt: str | None = None, job_id: str | None = None) -> httpx.Response:
    data = {k: v for k, v in (("prompt", prompt), ("job_id", job_id)) if v}
    with path.open("rb") as f:
        return httpx.post(f"{api}/v1/videos", headers={"Authorization": f"Bearer {key}"},
                          files={"video": (path.name, f, "video/mp4")}, data=data, timeout=30)


def audit_records(settings: Settings, subjects: set[str], timeout: float = 15, want: int | None = None) -> list[dict]:
    """The records on ``genguard.audit`` about ``subjects``, read from the start for ``timeout`` seconds
    (or until ``want`` of them were found: a test that expects no more need not wait for them)."""
    from aiokafka import AIOKafkaConsumer

    from pipeline.records import Topics

    async def run() -> list[dict]:
        consumer = AIOKafkaConsumer(Topics.AUDIT, bootstrap_servers=settings.kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        found: list[dict] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and (want is None or len(found) < want):
                batch = await consumer.getmany(timeout_ms=500)
                for msgs in batch.values():
                    found += [r for m in msgs if (r := json_or_none(m.value)) and r.get("subject") in subjects]
        finally:
            await consumer.stop()
        return found
    return asyncio.run(run())


def wait_for(api: str, key: str, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{api}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()
        if job["status"] in ("allowed", "released", "review", "blocked", "failed"):  # allowed may pass unseen
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not decided in {timeout}s: {job}")
