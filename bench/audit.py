"""Audit trail throughput: records/s appended with the hash chain and fsync, and `audit verify`
records/s, over one million records; a plain JSONL append (no chain, same batching and fsync)
runs side by side as the floor.

    .venv/bin/python bench/audit.py [--n 1000000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.audit.chain import AuditSink, verify  # noqa: E402
from pipeline.records import AuditRecord  # noqa: E402


def records(n: int) -> list[AuditRecord]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [AuditRecord(event="prompt.verdict", actor="key_bench", tenant=f"t{i % 7}", subject=f"req_{i:09d}",
                        content_sha256=f"{i:064x}", policy_id="genguard-default", policy_version="d2c0fa7e7edc1d35",
                        model_versions={"embedding": "all-MiniLM-L6-v2@53aa51172d14"}, action="allow",
                        categories={"violence": 0.12}, reason="no category fired", time=t0) for i in range(n)]


def plain(path: Path, recs: list[AuditRecord], batch: int) -> float:
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    for i in range(0, len(recs), batch):
        os.write(fd, "".join(json.dumps(r.model_dump(mode="json")) + "\n" for r in recs[i:i + batch]).encode())
        os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1000, help="records per fsync (the writer's poll batch)")
    args = ap.parse_args()
    print(f"audit benchmark: {args.n:,} records, fsync every {args.batch}, {os.cpu_count()} cores")
    t = time.perf_counter()
    recs = records(args.n)
    print(f"  (built records in {time.perf_counter() - t:.1f}s)")
    with tempfile.TemporaryDirectory(dir=ROOT / "var" if (ROOT / "var").exists() else None) as tmp:
        base = plain(Path(tmp) / "plain.jsonl", recs, args.batch)
        print(f"{'baseline: plain JSONL append + fsync':<42} {args.n / base:>10,.0f} records/s  ({base:.1f}s)")
        sink = AuditSink(Path(tmp) / "audit")
        start = time.perf_counter()
        for i in range(0, args.n, args.batch):
            sink.append("p0", recs[i:i + args.batch])
            if i and i % (args.n // 10) < args.batch:
                print(f"    ... {i:,} written", file=sys.stderr)
        took = time.perf_counter() - start
        print(f"{'genguard audit write (chain + fsync)':<42} {args.n / took:>10,.0f} records/s  ({took:.1f}s)")
        start = time.perf_counter()
        report = verify(AuditSink(Path(tmp) / "audit"), {"p0": sink.head("p0")})
        took = time.perf_counter() - start
        assert report.ok and report.records == args.n, report.first_break
        print(f"{'genguard audit verify':<42} {args.n / took:>10,.0f} records/s  ({took:.1f}s)")
        size = sum(p.stat().st_size for p in (Path(tmp) / "audit" / "p0").iterdir())
        print(f"  sink: {size / 1e6:,.0f} MB in {len(sink.segments('p0'))} segments")


if __name__ == "__main__":
    main()
