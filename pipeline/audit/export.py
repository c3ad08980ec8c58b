"""Export audit records for compliance tools: JSONL, CSV or Parquet."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

from pipeline.records import AuditRecord

COLUMNS = list(AuditRecord.model_fields)


def _flat(rec: AuditRecord) -> dict[str, object]:
    """Nested fields become JSON strings so every format has the same flat columns."""
    row = rec.model_dump(mode="json")
    return {k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for k, v in row.items()}


def export(records: Iterable[AuditRecord], out: Path, fmt: str) -> int:
    rows = [_flat(r) for r in records]
    if fmt == "jsonl":
        out.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    elif fmt == "csv":
        with out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(c, pa.int64() if c == "seq" else pa.string()) for c in COLUMNS])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), out)
    else:
        raise ValueError(f"unknown format {fmt!r}: jsonl, csv or parquet")
    return len(rows)

