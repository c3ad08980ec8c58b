"""The faust app: topics and agents. Each agent is a thin loop over a stage function."""

from __future__ import annotations

from typing import Any

import faust

from pipeline.gate import PromptGate
from pipeline.prompts import announce_policy, handle_prompt
from pipeline.records import Topics
from pipeline.settings import Settings
from pipeline.signal_store import LocalSignalStore
from pipeline.state import RedisVectorCache, State


def broker_options(settings: Settings) -> dict[str, Any]:
    """Tansu needs short session timeouts and one record per batch (see design.md); Kafka needs neither."""
    if not settings.embedded_broker:
        return {}
    return {"broker_session_timeout": 6, "broker_heartbeat_interval": 1, "producer_max_batch_size": 64}


def build_app(settings: Settings, gate: PromptGate | None = None) -> faust.App:
    app = faust.App(
        settings.worker_name,
        broker=[f"kafka://{a}" for a in settings.kafka_bootstrap.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        datadir=str(settings.var_dir / "faust"),
        topic_partitions=4,
        **broker_options(settings),
    )
    topics = {name: app.topic(name, value_type=bytes, key_type=bytes)
              for name in (Topics.PROMPTS, Topics.VERDICTS, Topics.AUDIT, Topics.DLQ)}
    gate = gate or PromptGate.from_settings(settings, RedisVectorCache(settings))
    gate.warm()
    state = State(settings)
    store = LocalSignalStore(settings.signals_dir)

    async def publish(topic: str, key: str, value: bytes) -> None:
        fut = await topics[topic].send(key=key.encode(), value=value)
        await fut  # acknowledged before the ledger marks the request done

    @app.task
    async def record_policy() -> None:
        await announce_policy(gate, state, publish, f"worker:{settings.worker_name}")

    @app.agent(topics[Topics.PROMPTS])
    async def check_prompts(stream: faust.StreamT[bytes]) -> None:
        async for raw in stream:
            await handle_prompt(raw, gate, state, publish, store)

    return app
