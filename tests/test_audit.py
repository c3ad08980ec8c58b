"""The audit trail: chain, tamper detection, idempotent writer on the real broker, export, API paging."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.api.audit import audit_page
from pipeline.audit import writer as audit_writer
from pipeline.audit.chain import AuditSink, verify
from pipeline.audit.export import export
from pipeline.records import AuditRecord, Topics
from pipeline.settings import Settings
from pipeline.store.state import State

ROOT = Path(__file__).resolve().parent.parent


def rec(i: int, tenant: str = "acme", when: datetime | None = None) -> AuditRecord:
    return AuditRecord(event="prompt.verdict", actor="test", tenant=tenant, subject=f"req-{i}",
                       content_sha256="ab" * 32, policy_id="p", policy_version="v1", action="allow",
                       time=when or datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i))


@pytest.fixture
def sink(tmp_path: Path) -> AuditSink:
    s = AuditSink(tmp_path / "audit", segment_records=4)
    s.append("p0", [rec(i) for i in range(10)])
    s.append("p1", [rec(i, tenant="globex") for i in range(10, 13)])
    return s


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_chain_verifies_and_rotates(sink: AuditSink) -> None:
    assert [p.name for p in sink.segments("p0")] == ["000000000001.jsonl", "000000000005.jsonl", "000000000009.jsonl"]
    report = verify(sink, {"p0": sink.head("p0"), "p1": sink.head("p1")})
    assert report.ok and report.records == 13
    assert report.streams["p0"][0] == 10


def test_edited_record_is_named(sink: AuditSink) -> None:
    seg = sink.segments("p0")[1]
    lines = lines_of(seg)
    lines[2] = lines[2].replace('"action":"allow"', '"action":"block"')
    seg.write_text("".join(lines))
    brk = verify(AuditSink(sink.root)).first_break
    assert brk is not None and (brk.file, brk.line, brk.seq) == (str(seg), 3, 7)
    assert "altered" in brk.reason


def test_deleted_record_is_named(sink: AuditSink) -> None:
    seg = sink.segments("p0")[0]
    lines = lines_of(seg)
    del lines[1]
    seg.write_text("".join(lines))
    brk = verify(AuditSink(sink.root)).first_break
    assert brk is not None and (brk.line, brk.seq) == (2, 3)
    assert "expected seq 2" in brk.reason


def test_reordered_records_are_named(sink: AuditSink) -> None:
    seg = sink.segments("p0")[0]
    lines = lines_of(seg)
    lines[1], lines[2] = lines[2], lines[1]
    seg.write_text("".join(lines))
    brk = verify(AuditSink(sink.root)).first_break
    assert brk is not None and brk.line == 2 and "removed or reordered" in brk.reason


def test_deleted_segment_is_named(sink: AuditSink) -> None:
    sink.segments("p0")[1].unlink()
    brk = verify(AuditSink(sink.root)).first_break
    assert brk is not None and brk.seq == 9 and "expected seq 5" in brk.reason


def test_cut_tail_is_caught_by_the_recorded_head(sink: AuditSink) -> None:
    heads = {"p0": sink.head("p0"), "p1": sink.head("p1")}
    seg = sink.segments("p1")[0]
    seg.write_text("".join(lines_of(seg)[:2]))
    fresh = AuditSink(sink.root)
    assert verify(fresh).ok  # a cut at a record boundary leaves a valid chain...
    brk = verify(fresh, heads).first_break  # ...which only the head recorded in Redis exposes
    assert brk is not None and brk.stream == "p1" and "removed from the end" in brk.reason


def test_append_is_idempotent_by_audit_id(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path)
    first = rec(1)
    assert len(sink.append("p0", [first, rec(2)])) == 2
    assert sink.append("p0", [first]) == []
    assert AuditSink(tmp_path).append("p0", [first]) == []  # after a restart too (ids reloaded from disk)
    assert sum(1 for _ in sink.lines("p0")) == 2


def test_export_formats_and_filters(sink: AuditSink, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    since = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert export(sink.records(since, "acme"), tmp_path / "a.jsonl", "jsonl") == 5
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["subject"] for r in rows] == [f"req-{i}" for i in range(5, 10)]
    assert export(sink.records(tenant="globex"), tmp_path / "g.csv", "csv") == 3
    with (tmp_path / "g.csv").open() as f:
        assert {r["tenant"] for r in csv.DictReader(f)} == {"globex"}
    assert export(sink.records(), tmp_path / "all.parquet", "parquet") == 13
    table = pq.read_table(tmp_path / "all.parquet")
    assert table.num_rows == 13 and table.column("seq").to_pylist()[:2] == [1, 2]


def test_api_pages_only_the_callers_tenant(sink: AuditSink) -> None:
    first = audit_page(sink, "acme", None, None, 4)
    assert [r.subject for r in first.records] == ["req-0", "req-1", "req-2", "req-3"]
    second = audit_page(sink, "acme", None, first.next, 4)
    last = audit_page(sink, "acme", None, second.next, 4)
    assert [r.subject for r in last.records] == ["req-8", "req-9"] and last.next is None
    assert {r.tenant for r in audit_page(sink, "globex", None, None, 100).records} == {"globex"}
    assert audit_page(sink, "initech", None, None, 100).records == []


def test_cli_verify_exit_codes(sink: AuditSink, tmp_path: Path) -> None:
    env = {**os.environ, "GENGUARD_VAR_DIR": str(sink.root.parent), "GENGUARD_REDIS_PREFIX": "ggtest-none"}
    cmd = [sys.executable, "-m", "pipeline.cli", "audit", "verify"]
    ok = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and "OK: 13 records" in ok.stdout
    seg = sink.segments("p1")[0]
    seg.write_text(seg.read_text().replace("globex", "initech", 1))
    bad = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and f"{seg}:1:" in bad.stderr


def test_writer_on_the_real_broker_skips_redeliveries(settings: Settings, tmp_path: Path) -> None:
    """Records published twice (a redelivered decision) land once, chained, and the head is in Redis."""
    cfg = settings.model_copy(update={"var_dir": tmp_path, "worker_name": f"audit-{time.time_ns()}"})
    records = [rec(i) for i in range(5)]

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(audit_writer.run(cfg, stop))
        producer = AIOKafkaProducer(bootstrap_servers=cfg.kafka_bootstrap, max_batch_size=64)
        await producer.start()
        for r in [*records, records[1], records[3]]:
            await producer.send_and_wait(Topics.AUDIT, r.model_dump_json().encode(), key=b"one", partition=0)
        await producer.send_and_wait(Topics.AUDIT, b"not json", key=b"one", partition=0)
        await producer.stop()
        sink = AuditSink(cfg.audit_dir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ids = [json.loads(line)["audit_id"] for _, _, line in sink.lines("p0")]
            if {r.audit_id for r in records} <= set(ids):
                break
            await asyncio.sleep(0.3)
        await asyncio.sleep(2)  # time for the duplicates to arrive, were they going to be written
        stop.set()
        await asyncio.wait_for(task, 20)

    asyncio.run(run())
    sink = AuditSink(cfg.audit_dir)
    ours = [json.loads(line) for _, _, line in sink.lines("p0")]
    ours = [r for r in ours if r["audit_id"] in {x.audit_id for x in records}]
    assert sorted(r["subject"] for r in ours) == [f"req-{i}" for i in range(5)]

    async def head() -> dict[str, tuple[int, str]]:
        state = State(cfg)
        try:
            return await state.audit_heads()
        finally:
            await state.close()

    heads = asyncio.run(head())
    assert verify(sink, heads).ok
    assert heads["p0"] == sink.head("p0")
