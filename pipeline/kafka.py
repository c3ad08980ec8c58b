"""Connections to the broker that are not faust's: topic creation, the API's producer, one-off sends."""

from __future__ import annotations

import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pipeline.records import AuditRecord, Topics
from pipeline.settings import Settings

log = logging.getLogger("genguard.kafka")


async def ensure_topics(settings: Settings, names: list[str]) -> list[str]:
    """Create the missing topics (clusters with auto-creation off need this); returns those created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        missing = [n for n in names if n not in set(await admin.list_topics())]
        if missing:
            new = [NewTopic(n, settings.topic_partitions, settings.topic_replication) for n in missing]
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
        return missing
    finally:
        await admin.close()


async def start_producer(settings: Settings) -> AIOKafkaProducer | None:
    """An acks=all producer with the topics in place; None (logged) when the broker is unreachable."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                max_batch_size=64 if settings.embedded_broker else 16384)
    try:
        await producer.start()
        await ensure_topics(settings, Topics.all())
    except KafkaError as e:
        log.error("broker %s unreachable at start-up: %s", settings.kafka_bootstrap, e)
        await producer.stop()
        return None
    return producer


async def publish_audit(settings: Settings, records: list[AuditRecord]) -> None:
    """For one-off events (key operations from the CLI): send and wait for the broker's ack."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for rec in records:
            await producer.send_and_wait(Topics.AUDIT, rec.model_dump_json().encode(), key=rec.subject.encode())
    finally:
        await producer.stop()
