"""The faust app: topics and agents. Each agent is a thin loop over a stage function.

Backpressure: each stage runs at most ``worker_concurrency`` jobs at once and buffers only a few
more (faust pauses the partitions when its stream buffer is full), so a busy worker leaves the
backlog in Kafka where another replica can take it. Shutdown (SIGTERM): faust stops fetching,
lets the stages in flight finish (each bounded by the stage timeout), commits, then exits; a
worker killed before that leaves leases that run out, and the reconciler re-publishes its jobs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import faust
from pydantic import ValidationError
from redis.exceptions import RedisError

from pipeline import audit_writer, jobs
from pipeline.gate import PromptGate
from pipeline.media_store import LocalMediaStore
from pipeline.metrics import DEAD_LETTERS
from pipeline.prompts import announce_policy, handle_prompt
from pipeline.records import DeadLetter, JobMessage, Topics
from pipeline.settings import Settings
from pipeline.signal_store import LocalSignalStore
from pipeline.state import JobLedger, RedisVectorCache, State
from pipeline.video import VideoGate

log = logging.getLogger("genguard.worker")


def broker_options(settings: Settings) -> dict[str, Any]:
    """Tansu needs short session timeouts and one record per batch (see design.md); Kafka needs neither."""
    if not settings.embedded_broker:
        return {}
    return {"broker_session_timeout": 6, "broker_heartbeat_interval": 1, "producer_max_batch_size": 64}


VIDEO_STAGES: dict[str, tuple[str, Callable[[jobs.Stages, JobMessage], Awaitable[object]]]] = {
    "media": (Topics.MEDIA, jobs.sample),
    "frames": (Topics.FRAMES, jobs.score_frames),
    "audio": (Topics.AUDIO, jobs.transcribe),
    "decide": (Topics.DECIDE, jobs.decide),
    "release": (Topics.ALLOWED, jobs.release),
}
ALL_STAGES = ("prompt", *VIDEO_STAGES, "audit")
DEFAULT_STAGES = ALL_STAGES[:-1]  # the audit writer runs as its own process unless asked for


def heartbeat_path(settings: Settings, group: str) -> Path:
    return settings.run_dir / f"{group}.alive"


def group_id(settings: Settings, stages: Iterable[str]) -> str:
    """The consumer group of a worker: ``<name>`` for the default set, else ``<name>-<stages>``."""
    chosen = set(stages)
    if chosen == set(DEFAULT_STAGES):
        return settings.worker_name
    return f"{settings.worker_name}-{'-'.join(s for s in ALL_STAGES if s in chosen)}"


def build_app(settings: Settings, gate: PromptGate | None = None, stages: Iterable[str] = DEFAULT_STAGES) -> faust.App:
    """The stages this worker runs. A worker with a subset of them is its own consumer group
    (``<name>-<stages>``), so each role scales on its own and replicas of a role share partitions."""
    chosen = set(stages)
    if unknown := chosen - set(ALL_STAGES):
        raise ValueError(f"unknown stages {sorted(unknown)}; choose from {', '.join(ALL_STAGES)}")
    if not chosen:
        raise ValueError(f"no stages chosen; choose from {', '.join(ALL_STAGES)}")
    group = group_id(settings, chosen)
    settings.var_dir.mkdir(parents=True, exist_ok=True)  # faust makes only the last level of its datadir
    app = faust.App(
        group,
        broker=[f"kafka://{a}" for a in settings.kafka_bootstrap.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        datadir=str(settings.var_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        stream_buffer_maxsize=4 * settings.worker_concurrency,
        **broker_options(settings),
    )
    topics = {name: app.topic(name, value_type=bytes, key_type=bytes) for name in Topics.all()}
    cache = RedisVectorCache(settings)
    state = State(settings)
    store = LocalSignalStore(settings.signals_dir)

    async def publish(topic: str, key: str, value: bytes) -> None:
        fut = await topics[topic].send(key=key.encode(), value=value)
        await fut  # acknowledged before the ledger marks the work done

    if chosen - {"audit"}:  # the audit writer alone needs no models
        loaded = gate = gate or PromptGate.from_settings(settings, cache)
        loaded.warm()

        @app.task
        async def record_policy() -> None:
            await announce_policy(loaded, state, publish, f"worker:{settings.worker_name}")

        if "prompt" in chosen:
            async def check_prompts(stream: faust.StreamT[bytes]) -> None:
                async for raw in stream:
                    await handle_prompt(raw, loaded, state, publish, store)

            app.agent(topics[Topics.PROMPTS], name="genguard.check_prompts",
                      concurrency=settings.worker_concurrency)(check_prompts)

    video = VideoGate.from_settings(settings, gate, cache) if gate and chosen & set(VIDEO_STAGES) else None
    ctx = jobs.Stages(settings, state, JobLedger(state), LocalMediaStore(settings.media_dir), video, publish, store)

    async def dead_letter(topic: str, raw: bytes, error: str) -> None:
        DEAD_LETTERS.labels(topic).inc()
        letter = DeadLetter(topic=topic, error=error, payload=raw.decode("utf-8", "replace")[:65536])
        await publish(Topics.DLQ, "", letter.model_dump_json().encode())

    def job_agent(topic: str, stage: Callable[[jobs.Stages, JobMessage], Awaitable[object]]) -> None:
        async def run(stream: faust.StreamT[bytes]) -> None:
            async for raw in stream:
                try:
                    msg = JobMessage.model_validate_json(raw)
                except ValidationError as e:
                    await dead_letter(topic, raw, str(e))
                    continue
                try:
                    await stage(ctx, msg)
                except Exception as e:  # the lease runs out and the reconciler re-publishes the job
                    log.exception("%s failed for %s", stage.__name__, msg.job_id)
                    await dead_letter(topic, raw, f"{type(e).__name__}: {e}")

        run.__name__ = stage.__name__
        app.agent(topics[topic], name=f"genguard.{stage.__name__}", concurrency=settings.worker_concurrency)(run)

    for name, (topic, stage) in VIDEO_STAGES.items():
        if name in chosen:
            job_agent(topic, stage)
    if "audit" in chosen:
        @app.task
        async def write_audit() -> None:
            await audit_writer.run(settings, asyncio.Event())  # runs until the worker stops and cancels it

    alive = heartbeat_path(settings, group)

    @app.timer(interval=settings.heartbeat_every_s)
    async def heartbeat() -> None:
        """Touched while the event loop turns and Redis answers: `genguard health worker` reads it."""
        try:
            await state.ping()
        except RedisError as e:  # stale heartbeat: the probe fails if Redis stays away
            log.warning("heartbeat: redis unavailable: %s", e)
            return
        alive.parent.mkdir(parents=True, exist_ok=True)
        alive.write_text(f"{time.time():.0f}\n")

    async def reconcile() -> None:
        try:
            await jobs.reconcile(ctx)
        except Exception:  # Redis or the broker away: try again next round (a timer that raised stops the worker)
            log.exception("reconciler round failed")

    if video is not None:
        app.timer(interval=settings.reconcile_every_s)(reconcile)
    return app
