"""The faust app: topics and agents. Each agent is a thin loop over a stage function."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust
from pydantic import ValidationError

from pipeline import jobs
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
TOPICS = (Topics.PROMPTS, Topics.VERDICTS, Topics.MEDIA, Topics.FRAMES, Topics.AUDIO, Topics.DECIDE, Topics.ALLOWED,
          Topics.RELEASED, Topics.REVIEW, Topics.BLOCKED, Topics.AUDIT, Topics.DLQ)


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
ALL_STAGES = ("prompt", *VIDEO_STAGES)


def build_app(settings: Settings, gate: PromptGate | None = None, stages: Iterable[str] = ALL_STAGES) -> faust.App:
    """The stages this worker runs. A worker with a subset of them is its own consumer group
    (``<name>-<stages>``), so each role scales on its own and replicas of a role share partitions."""
    chosen = set(stages)
    if unknown := chosen - set(ALL_STAGES):
        raise ValueError(f"unknown stages {sorted(unknown)}; choose from {', '.join(ALL_STAGES)}")
    group = settings.worker_name if chosen == set(ALL_STAGES) else \
        f"{settings.worker_name}-{'-'.join(s for s in ALL_STAGES if s in chosen)}"
    app = faust.App(
        group,
        broker=[f"kafka://{a}" for a in settings.kafka_bootstrap.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        datadir=str(settings.var_dir / "faust"),
        topic_partitions=4,
        **broker_options(settings),
    )
    topics = {name: app.topic(name, value_type=bytes, key_type=bytes) for name in TOPICS}
    cache = RedisVectorCache(settings)
    gate = gate or PromptGate.from_settings(settings, cache)
    gate.warm()
    state = State(settings)
    store = LocalSignalStore(settings.signals_dir)

    async def publish(topic: str, key: str, value: bytes) -> None:
        fut = await topics[topic].send(key=key.encode(), value=value)
        await fut  # acknowledged before the ledger marks the work done

    video = VideoGate.from_settings(settings, gate, cache) if chosen & set(VIDEO_STAGES) else None
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
        app.agent(topics[topic], name=f"genguard.{stage.__name__}")(run)

    @app.task
    async def record_policy() -> None:
        await announce_policy(gate, state, publish, f"worker:{settings.worker_name}")

    async def check_prompts(stream: faust.StreamT[bytes]) -> None:
        async for raw in stream:
            await handle_prompt(raw, gate, state, publish, store)

    if "prompt" in chosen:
        app.agent(topics[Topics.PROMPTS], name="genguard.check_prompts")(check_prompts)
    for name, (topic, stage) in VIDEO_STAGES.items():
        if name in chosen:
            job_agent(topic, stage)

    async def reconcile() -> None:
        await jobs.reconcile(ctx)

    if video is not None:
        app.timer(interval=settings.reconcile_every_s)(reconcile)
    return app
