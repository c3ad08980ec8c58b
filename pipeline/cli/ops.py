"""Running genguard: the embedded broker and Redis, workers, the API, probes, topics, and ``up``/``down``
for everything on one machine."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import click

from pipeline.cli.common import settings
from pipeline.stages import DEFAULT_STAGES

PROCESSES = ("broker", "worker", "audit-writer", "api")


@click.command()
def broker() -> None:
    """Run the embedded Tansu broker (memory storage) until interrupted."""
    from pipeline.local import start_tansu, stop

    s = settings()
    if not s.embedded_broker:
        click.echo(f"GENGUARD_KAFKA_URL={s.kafka_url}: using that cluster, no embedded broker started")
        return
    proc = start_tansu(s.embedded_kafka_addr)
    click.echo(f"Tansu broker listening on {s.embedded_kafka_addr} (pid {proc.pid}, memory storage)")
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping and proc.poll() is None:
        time.sleep(0.2)
    stop(proc)
    click.echo("broker stopped")


@click.command("redis")
def redis_cmd() -> None:
    """Make sure Redis answers at GENGUARD_REDIS_URL; start a local redis-server if not."""
    from pipeline.local import ensure_redis

    s = settings()
    started = ensure_redis(s.redis_url, s.var_dir)
    click.echo(f"redis {'started' if started else 'already running'} at {s.redis_url}")


@click.command()
@click.option("--stages", default=",".join(DEFAULT_STAGES), show_default=True,
              help="Comma-separated stages this worker runs (add 'audit' for the audit writer); "
                   "each subset is its own consumer group and scales on its own.")
def worker(stages: str) -> None:
    """Run the stream worker (faust agents) against the configured broker."""
    from faust.worker import Worker

    from pipeline.worker import build_app

    try:
        app = build_app(settings(), stages=stages.split(","))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--stages") from e
    Worker(app, loglevel="info").execute_from_commandline()


@click.group()
def health() -> None:
    """Probes for containers: exit 0 when healthy, 1 (with the reason) when not."""


@health.command("api")
@click.option("--url", default=None, help="Default: http://<GENGUARD_API_HOST>:<GENGUARD_API_PORT>/readyz")
def health_api(url: str | None) -> None:
    """The API answers /readyz with 200 (broker and Redis reachable)."""
    import httpx

    s = settings()
    url = url or f"http://{s.api_host}:{s.api_port}/readyz"
    try:
        r = httpx.get(url, timeout=4)
    except httpx.HTTPError as e:
        raise click.ClickException(f"{url}: {type(e).__name__}: {e}") from e
    if r.status_code != 200:
        raise click.ClickException(f"{url}: {r.status_code} {r.text[:200]}")
    click.echo(f"ok: {r.text[:200]}")


@health.command("worker")
@click.option("--stages", default=None, help="The worker's --stages; default: the freshest worker heartbeat here.")
@click.option("--max-age", default=30.0, show_default=True, help="Seconds since the last heartbeat.")
def health_worker(stages: str | None, max_age: float) -> None:
    """A worker's heartbeat is fresh: its event loop turns and Redis answers."""
    from pipeline.stages import group_id, parse
    from pipeline.worker import heartbeat_path

    s = settings()
    files = [heartbeat_path(s, group_id(s, parse(stages)))] if stages else \
        sorted(s.run_dir.glob("*.alive"), key=lambda p: p.stat().st_mtime)[-1:]
    if not files or not files[0].exists():
        raise click.ClickException(f"no worker heartbeat under {s.run_dir}")
    age = time.time() - files[0].stat().st_mtime
    if age > max_age:
        raise click.ClickException(f"{files[0].name}: last heartbeat {age:.0f}s ago (limit {max_age:g}s)")
    click.echo(f"ok: {files[0].stem} beat {age:.1f}s ago")


@click.group()
def topics() -> None:
    """The Kafka topics genguard uses."""


@topics.command("create")
def topics_create() -> None:
    """Create the missing topics with GENGUARD_TOPIC_PARTITIONS and GENGUARD_TOPIC_REPLICATION."""
    from pipeline.kafka import ensure_topics
    from pipeline.records import Topics

    s = settings()
    made = asyncio.run(ensure_topics(s, Topics.all()))
    click.echo(f"created {len(made)} topics ({s.topic_partitions} partitions, replication "
               f"{s.topic_replication}) on {s.kafka_bootstrap}: {', '.join(made) or 'none missing'}")


@click.command()
@click.option("--host", default=None)
@click.option("--port", default=None, type=int)
def serve(host: str | None, port: int | None) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from pipeline.api.app import create_app

    s = settings()
    uvicorn.run(create_app(s), host=host or s.api_host, port=port or s.api_port, log_level="info")


def _wait_ready(url: str, timeout: int, log_dir: str) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise click.ClickException(f"API not ready after {timeout}s; see {log_dir}/api.log")
        time.sleep(0.5)


def _try_it(url: str, key: str) -> str:
    return f"""Try:
  .venv/bin/genguard check "a cinematic shot of a cat surfing at sunset"
  .venv/bin/genguard check "step-by-step video showing how to make a pipe bomb"
  curl -s -X POST {url}/v1/prompts:check -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' -d '{{"prompt": "a dog running on a beach", "tenant": "acme"}}'
  curl -s -H 'Authorization: Bearer {key}' -F video=@var/testdata/sintel.mp4 -F prompt="an animated short" \\
       {url}/v1/videos                      # then GET {url}/v1/jobs/<job_id>
  .venv/bin/genguard moderate var/testdata/sintel.mp4 --contact-sheet evidence.png
Stop everything with: make down"""


@click.command()
@click.option("--timeout", default=120, show_default=True, help="Seconds to wait for readiness.")
def up(timeout: int) -> None:
    """Start broker (embedded), Redis, worker and API in the background; print a dev key and how to call them."""
    from pipeline.cli.keys import keys_create
    from pipeline.local import ensure_redis, port_open, running, spawn, split_addr, wait_port

    s = settings()
    exe = [sys.executable, "-m", "pipeline.cli"]
    s.var_dir.mkdir(parents=True, exist_ok=True)
    click.echo(f"[1/5] redis: {'started' if ensure_redis(s.redis_url, s.var_dir) else 'running'} at {s.redis_url}")
    if s.embedded_broker:
        host, port = split_addr(s.embedded_kafka_addr)
        if not port_open(host, port):
            spawn("broker", [*exe, "broker"], s.var_dir)
            wait_port(host, port, 30, "Tansu")
        click.echo(f"[2/5] broker: Tansu on {s.embedded_kafka_addr} (memory storage)")
    else:
        click.echo(f"[2/5] broker: {s.kafka_url}")
    secret_file = s.var_dir / "dev-api-key"
    click.echo("[3/5] dev API key (tenant acme, all scopes):")
    click.get_current_context().invoke(keys_create, tenant="acme", scopes="all", name="dev", secret_file=secret_file)
    for name, args in (("worker", [*exe, "worker"]), ("audit-writer", [*exe, "audit", "writer"]),
                       ("api", [*exe, "serve"])):
        if running(name, s.var_dir) is None:
            spawn(name, args, s.var_dir)
    url = f"http://{s.api_host}:{s.api_port}"
    click.echo(f"[4/5] worker, audit writer and API starting (logs in {s.var_dir}/log/) ...")
    _wait_ready(url, timeout, f"{s.var_dir}/log")
    click.echo(f"[5/5] ready: API {url} (OpenAPI at {url}/docs), worker consuming genguard.prompts\n")
    click.echo(_try_it(url, secret_file.read_text().strip()))


@click.command()
def down() -> None:
    """Stop what ``genguard up`` started (Redis is left alone)."""
    from pipeline.local import terminate

    s = settings()
    for name in reversed(PROCESSES):
        click.echo(f"{name}: {'stopped' if terminate(name, s.var_dir) else 'not running'}")
