"""The faust app: one agent per chosen stage, each a thin loop over the stage's function.

A worker loads only what its stages need (``models`` in the stage table): ``--stages media`` or
``release`` loads no model at all, ``prompt`` the text models, ``frames`` the frame models.

Backpressure: each stage runs at most ``worker_concurrency`` jobs at once and buffers only a few
more (faust pauses the partitions when its stream buffer is full), so a busy worker leaves the
backlog in Kafka where another replica can take it. Shutdown (SIGTERM): faust stops fetching,
lets the stages in flight finish (each bounded by the stage timeout), commits, then exits; a
worker killed before that leaves leases that run out, and the reconciler re-publishes its jobs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as aiokafka_driver
from pydantic import ValidationError
from redis.exceptions import RedisError

from pipeline import stages as table
from pipeline.audit import writer as audit_writer
from pipeline.metrics import DEAD_LETTERS
from pipeline.policy_source import PolicySource
from pipeline.records import DeadLetter, JobMessage, Topics
from pipeline.settings import Settings
from pipeline.stages import JOB_STAGES, STAGES, VIDEO_MODELS, Stage, StageContext
from pipeline.store.media import LocalMediaStore
from pipeline.store.signals import LocalSignalStore
from pipeline.store.state import JobLedger, RedisVectorCache, State
from pipeline.video.stages import reconcile

if TYPE_CHECKING:
    from pipeline.prompt.gate import PromptGate
    from pipeline.video.gate import VideoGate

log = logging.getLogger("genguard.worker")


def broker_options(settings: Settings) -> dict[str, Any]:
    """Tansu needs short session timeouts and one record per batch (see design.md); Kafka needs neither."""
    if not settings.embedded_broker:
        return {}
    return {"broker_session_timeout": 6, "broker_heartbeat_interval": 1, "producer_max_batch_size": 64}


def heartbeat_path(settings: Settings, group: str) -> Path:
    return settings.run_dir / f"{group}.alive"


def load_models(settings: Settings, chosen: Iterable[str], policies: PolicySource,
                prompts: PromptGate | None = None) -> tuple[PromptGate | None, VideoGate | None]:
    """The text and video models the chosen stages use, and nothing else (``prompts``: already loaded).
    The gates are imported here, so a role without models imports no model code either."""
    needs = table.models_for(chosen)
    cache = RedisVectorCache(settings)
    if "text" in needs:
        from pipeline.prompt.gate import PromptGate

        prompts = prompts or PromptGate.from_settings(settings, cache, policies)
        prompts.warm()
    else:
        prompts = None
    if not needs & VIDEO_MODELS:
        return prompts, None
    from pipeline.video.gate import VideoGate

    return prompts, VideoGate.from_settings(settings, prompts, cache, needs & VIDEO_MODELS, policies)


class _ConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """faust fixes aiokafka's ``fetch_max_wait_ms`` at 1500 ms. Kafka answers a fetch as soon as a record
    arrives, but Tansu holds it for the whole wait, so every hop cost 750 ms on average (measured:
    bench/prompt_gate.py). This takes ``GENGUARD_FETCH_MAX_WAIT_MS`` instead."""

    def _create_worker_consumer(self, transport: aiokafka_driver.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = cast(App, self.app).fetch_max_wait_ms  # read by consumer.start()
        return consumer


class _Consumer(aiokafka_driver.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(aiokafka_driver.Transport):
    Consumer = _Consumer


class App(faust.App):
    """faust's app on faust's own aiokafka transport, with the fetch wait set by genguard."""

    fetch_max_wait_ms = 1500

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)


def _app(settings: Settings, group: str, in_flight: int) -> faust.App:
    settings.var_dir.mkdir(parents=True, exist_ok=True)  # faust makes only the last level of its datadir
    app = App(
        group,
        broker=[f"kafka://{a}" for a in settings.kafka_bootstrap.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        datadir=str(settings.var_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        stream_buffer_maxsize=4 * in_flight,
        **broker_options(settings),
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    return app


def _agent(app: faust.App, topic: faust.TopicT, stage: Stage, ctx: StageContext,
           dead_letter: Callable[[str, bytes, str], Awaitable[None]]) -> None:
    """One message at a time per slot: parse (malformed -> DLQ), run the stage; a stage that raises
    is dead-lettered, and a video job's lease runs out so the reconciler re-publishes it."""
    handler = stage.load_handler()

    async def run(stream: faust.StreamT[bytes]) -> None:
        async for raw in stream:
            try:  # the stdlib decoder takes lone surrogates, which the request then replaces (pydantic's refuses)
                msg = stage.message.model_validate(json.loads(raw))
            except (ValueError, ValidationError) as e:
                await dead_letter(stage.topic, raw, str(e))
                continue
            try:
                await handler(ctx, msg)
            except Exception as e:
                log.exception("%s stage failed", stage.name)
                if isinstance(msg, JobMessage) and await _retried(ctx, stage, msg, raw):
                    continue
                await dead_letter(stage.topic, raw, f"{type(e).__name__}: {e}")

    run.__name__ = stage.name
    app.agent(topic, name=f"genguard.{stage.name}", concurrency=stage.concurrency(ctx.settings))(run)


async def _retried(ctx: StageContext, stage: Stage, msg: JobMessage, raw: bytes) -> bool:
    """A failed video stage is tried again (claim released, message re-sent) before it is dead-lettered."""
    try:
        return await ctx.retry(stage.name, msg, raw)
    except Exception:  # the retry needs Redis and the broker too; without them the lease is the fallback
        log.exception("%s: could not retry %s", stage.name, msg.job_id)
        return False


def build_app(settings: Settings, prompts: PromptGate | None = None,
              stages: Iterable[str] = table.DEFAULT_STAGES) -> faust.App:
    """The stages this worker runs. A worker with a subset of them is its own consumer group
    (``<name>-<stages>``), so each role scales on its own and replicas of a role share partitions."""
    chosen = table.parse(stages)
    group = table.group_id(settings, chosen)
    app = _app(settings, group, max(STAGES[n].concurrency(settings) for n in chosen))
    topics = {name: app.topic(name, value_type=bytes, key_type=bytes) for name in Topics.all()}
    state = State(settings)

    async def publish(topic: str, key: str, value: bytes) -> None:
        fut = await topics[topic].send(key=key.encode(), value=value)
        await fut  # acknowledged before the ledger marks the work done

    async def dead_letter(topic: str, raw: bytes, error: str) -> None:
        DEAD_LETTERS.labels(topic).inc()
        letter = DeadLetter(topic=topic, error=error, payload=raw.decode("utf-8", "replace")[:65536])
        await publish(Topics.DLQ, "", letter.model_dump_json().encode())

    policies = PolicySource(settings)
    text, video = load_models(settings, chosen, policies, prompts)
    ctx = StageContext(settings, state, JobLedger(state), LocalMediaStore(settings.media_dir), policies, publish,
                       gate=video, prompts=text, signals=LocalSignalStore(settings.signals_dir))
    for name in chosen:
        if STAGES[name].handler:
            _agent(app, topics[STAGES[name].topic], STAGES[name], ctx, dead_letter)
    _timers(app, ctx, heartbeat_path(settings, group), reconciles=bool(set(chosen) & set(JOB_STAGES)))
    if set(chosen) - {"audit"}:
        @app.task
        async def record_policy() -> None:
            await policies.announce(state, publish, f"worker:{settings.worker_name}")
    if "audit" in chosen:
        @app.task
        async def write_audit() -> None:
            await audit_writer.run(settings, asyncio.Event())  # runs until the worker stops and cancels it
    return app


def _timers(app: faust.App, ctx: StageContext, alive: Path, reconciles: bool) -> None:
    """The heartbeat probes read, and (for job stages) the reconciler; neither may raise (a faust timer
    that raised would stop the worker)."""
    @app.timer(interval=ctx.settings.heartbeat_every_s)
    async def heartbeat() -> None:
        """Touched while the event loop turns and Redis answers: `genguard health worker` reads it."""
        try:
            await ctx.state.ping()
        except RedisError as e:  # stale heartbeat: the probe fails if Redis stays away
            log.warning("heartbeat: redis unavailable: %s", e)
            return
        alive.parent.mkdir(parents=True, exist_ok=True)
        alive.write_text(f"{time.time():.0f}\n")

    async def reconciler() -> None:
        try:
            await reconcile(ctx)
        except Exception:  # Redis or the broker away: try again next round
            log.exception("reconciler round failed")

    if reconciles:
        app.timer(interval=ctx.settings.reconcile_every_s)(reconciler)
