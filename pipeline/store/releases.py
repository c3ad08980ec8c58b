"""Every release, kept so a copy can be traced back to it: one JSON record per job (tenant, invisible
payload and key id, the PDQ hashes of the released picture over time, its audio fingerprint, the
manifest as read back) and the signed manifest store's own bytes (``JOB.c2pa``).

Files, not Redis: this is the durable record a trace answers from years later; the serving copy of
the index is rebuilt from it whenever a release is added.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_JOB = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class ReleaseRecord(BaseModel):
    job_id: str
    tenant: str
    released_at: str
    sha256: str
    watermark: str | None = None
    watermark_key: str | None = None
    duration_s: float
    frames: list[tuple[float, str]]  # (seconds, PDQ hex) of the released picture and its centre crops, quality >= 50
    audio: list[int] | None = None  # Chromaprint words, None where the release is silent
    manifest: dict[str, Any] = {}  # the manifest store as c2pa read it from the released file


class ReleaseStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, job_id: str, suffix: str) -> Path:
        if not _JOB.match(job_id):
            raise ValueError(f"bad job id {job_id!r}")
        return self.root / f"{job_id}{suffix}"

    def put(self, record: ReleaseRecord, manifest: bytes | None) -> None:
        """Written atomically (bytes first, record last): a record on disk always has what it names."""
        self.root.mkdir(parents=True, exist_ok=True)
        for suffix, data in ((".c2pa", manifest), (".json", record.model_dump_json().encode())):
            if data is None:
                continue
            tmp = self._path(record.job_id, suffix + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, self._path(record.job_id, suffix))

    def get(self, job_id: str) -> ReleaseRecord | None:
        path = self._path(job_id, ".json")
        return ReleaseRecord.model_validate_json(path.read_bytes()) if path.exists() else None

    def manifest_bytes(self, job_id: str) -> bytes | None:
        path = self._path(job_id, ".c2pa")
        return path.read_bytes() if path.exists() else None

    def version(self) -> tuple[int, int]:
        """Changes whenever a record is added or rewritten (the trace index is rebuilt then)."""
        if not self.root.exists():
            return (0, 0)
        stats = [p.stat().st_mtime_ns for p in self.root.glob("*.json")]
        return (len(stats), max(stats, default=0))

    def all(self) -> list[ReleaseRecord]:
        return [ReleaseRecord.model_validate_json(p.read_bytes()) for p in sorted(self.root.glob("*.json"))] \
            if self.root.exists() else []


def as_json(record: ReleaseRecord) -> dict[str, Any]:
    return json.loads(record.model_dump_json(exclude={"frames", "audio"}))
