"""The audit stage: consume ``genguard.audit``, append to the hash-chained sink, then commit.

A plain aiokafka consumer rather than a faust agent: it commits an offset only after the
records are fsync'd (design.md saw faust on Tansu skip records on failover), and it skips
audit ids already in the sink, so a redelivery never adds a second record.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from pydantic import ValidationError

from pipeline.audit.chain import AuditSink
from pipeline.records import AuditRecord, DeadLetter, Topics
from pipeline.settings import Settings
from pipeline.store.state import State

log = logging.getLogger("genguard.audit")


def stream_of(partition: int) -> str:
    return f"p{partition}"


async def append_batch(sink: AuditSink, state: State, partition: int, values: list[bytes],
                       dead: list[DeadLetter]) -> list[str]:
    """Parse, chain, append and fsync one partition's batch; unparseable values go to ``dead``."""
    records = []
    for raw in values:
        try:
            records.append(AuditRecord.model_validate_json(raw))
        except ValidationError as e:
            dead.append(DeadLetter(topic=Topics.AUDIT, error=str(e), payload=raw.decode("utf-8", "replace")))
    stream = stream_of(partition)
    written = sink.append(stream, records)
    seq, head = sink.head(stream)
    await state.set_audit_head(stream, seq, head)
    return written


class _Reassign(ConsumerRebalanceListener):
    def __init__(self, sink: AuditSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self.sink.forget(stream_of(tp.partition))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self.sink.forget(stream_of(tp.partition))  # another writer may have appended meanwhile


async def run(settings: Settings, stop: asyncio.Event) -> None:
    sink = AuditSink(settings.audit_dir, settings.audit_segment_records)
    state = State(settings)
    quick = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000} if settings.embedded_broker else {}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                group_id=f"{settings.worker_name}-audit-writer", enable_auto_commit=False,
                                auto_offset_reset="earliest", **quick)
    consumer.subscribe([Topics.AUDIT], listener=_Reassign(sink))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    log.info("audit writer appending to %s", settings.audit_dir)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, msgs in batches.items():
                dead: list[DeadLetter] = []
                written = await append_batch(sink, state, tp.partition, [m.value for m in msgs], dead)
                for letter in dead:
                    await producer.send_and_wait(Topics.DLQ, letter.model_dump_json().encode())
                await consumer.commit({tp: msgs[-1].offset + 1})
                log.info("audit %s: %d appended, %d duplicates skipped, %d dead-lettered", stream_of(tp.partition),
                         len(written), len(msgs) - len(written) - len(dead), len(dead))
    finally:
        await consumer.stop()
        await producer.stop()
        await state.close()
