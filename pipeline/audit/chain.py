"""The durable audit trail: hash-chained, fsync'd, rotated segment files, and their verification.

One chain per stream (a partition of ``genguard.audit``). Each record carries the hash of the
one before it, so an edited, removed or reordered record breaks the chain at that point; the
chain head is also kept in Redis, so a truncated tail shows too.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline.records import AuditRecord

GENESIS = "0" * 64


def record_hash(fields: dict) -> str:
    """sha256 of the canonical JSON of a record without its own ``hash``."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(slots=True)
class _Stream:
    seq: int
    head: str
    ids: set[str] = field(default_factory=set)


class AuditSink:
    """Append-only segment files ``<root>/<stream>/<first seq>.jsonl``; one writer per stream."""

    def __init__(self, root: Path, segment_records: int = 100_000) -> None:
        self.root = root
        self.segment_records = segment_records
        self._streams: dict[str, _Stream] = {}

    def streams(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.exists() else []

    def segments(self, stream: str) -> list[Path]:
        return sorted((self.root / stream).glob("*.jsonl"))

    def forget(self, stream: str) -> None:
        """Drop cached state, e.g. when another writer may have appended (partition moved)."""
        self._streams.pop(stream, None)

    def _state(self, stream: str) -> _Stream:
        if stream not in self._streams:
            state = _Stream(seq=0, head=GENESIS)
            for _, _, line in self.lines(stream):
                rec = json.loads(line)
                state.seq, state.head = rec["seq"], rec["hash"]
                state.ids.add(rec["audit_id"])
            self._streams[stream] = state
        return self._streams[stream]

    def head(self, stream: str) -> tuple[int, str]:
        state = self._state(stream)
        return state.seq, state.head

    def append(self, stream: str, records: Iterable[AuditRecord]) -> list[str]:
        """Chain and append records not already in the stream; one fsync for the batch. Returns ids written."""
        state = self._state(stream)
        written: list[str] = []
        by_segment: dict[Path, list[str]] = {}
        for rec in records:
            if rec.audit_id in state.ids:
                continue
            fields = rec.model_dump(mode="json")
            fields.update(stream=stream, seq=state.seq + 1, prev_hash=state.head)
            fields["hash"] = record_hash(fields)
            state.seq, state.head = fields["seq"], fields["hash"]
            state.ids.add(rec.audit_id)
            first = (state.seq - 1) // self.segment_records * self.segment_records + 1
            path = self.root / stream / f"{first:012d}.jsonl"
            by_segment.setdefault(path, []).append(json.dumps(fields, separators=(",", ":")))
            written.append(rec.audit_id)
        for path, lines in by_segment.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, ("\n".join(lines) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        if by_segment:
            dir_fd = os.open(self.root / stream, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # new segment files must survive a crash too
            finally:
                os.close(dir_fd)
        return written

    def lines(self, stream: str) -> Iterator[tuple[Path, int, str]]:
        for path in self.segments(stream):
            with path.open(encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        yield path, n, line

    def records(self, since: datetime | None = None, tenant: str | None = None) -> Iterator[AuditRecord]:
        """All streams merged in time order, filtered."""
        def stream_records(stream: str) -> Iterator[AuditRecord]:
            for _, _, line in self.lines(stream):
                rec = AuditRecord.model_validate_json(line)
                if (since is None or rec.time >= since) and (tenant is None or rec.tenant == tenant):
                    yield rec
        yield from heapq.merge(*(stream_records(s) for s in self.streams()), key=lambda r: r.time)


@dataclass(frozen=True, slots=True)
class Break:
    stream: str
    file: str
    line: int
    seq: int | None
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: stream {self.stream} seq {self.seq}: {self.reason}"


@dataclass(slots=True)
class VerifyReport:
    records: int = 0
    streams: dict[str, tuple[int, str]] = field(default_factory=dict)
    first_break: Break | None = None

    @property
    def ok(self) -> bool:
        return self.first_break is None


def verify(sink: AuditSink, heads: dict[str, tuple[int, str]] | None = None) -> VerifyReport:
    """Recompute every chain; name the first broken record. ``heads`` (from Redis) catch truncation."""
    report = VerifyReport()
    for stream in sink.streams():
        seq, prev = 0, GENESIS
        where = ("", 0)
        for path, n, line in sink.lines(stream):
            where = (str(path), n)
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                report.first_break = Break(stream, str(path), n, None, f"not JSON ({e.msg})")
                return report
            problem = None
            if rec.get("hash") != record_hash(rec):
                problem = "hash mismatch: the record was altered"
            elif rec.get("seq") != seq + 1:
                problem = f"expected seq {seq + 1}, found {rec.get('seq')}: records removed or reordered"
            elif rec.get("prev_hash") != prev:
                problem = "prev_hash does not match the previous record: records removed or reordered"
            if problem:
                report.first_break = Break(stream, str(path), n, rec.get("seq"), problem)
                return report
            seq, prev = rec["seq"], rec["hash"]
            report.records += 1
        report.streams[stream] = (seq, prev)
        if heads and stream in heads and heads[stream] != (seq, prev):
            want = heads[stream][0]
            report.first_break = Break(stream, where[0], where[1], seq,
                                       f"chain ends at seq {seq} but the recorded head is seq {want}: "
                                       "records removed from the end")
            return report
    if heads and (missing := set(heads) - set(report.streams)):
        report.first_break = Break(sorted(missing)[0], str(sink.root), 0, None, "whole stream missing")
    return report
