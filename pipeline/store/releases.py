"""Every release, kept so a copy can be traced back to it: one JSON record per job (tenant, invisible
payload and key id, the PDQ hashes of the released picture over time, its audio fingerprint, the
manifest as read back) and the signed manifest store's own bytes (``JOB.c2pa``).

Files, not Redis: this is the durable record a trace answers from years later. ``releases.log``
names each job as its record is written, so a reader learns what is new from one stat and reads
only the new records.
"""

from __future__ import annotations

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
        with (self.root / "releases.log").open("a") as log:  # one short append: whole lines only
            log.write(record.job_id + "\n")

    def get(self, job_id: str) -> ReleaseRecord | None:
        path = self._path(job_id, ".json")
        return ReleaseRecord.model_validate_json(path.read_bytes()) if path.exists() else None

    def manifest_bytes(self, job_id: str) -> bytes | None:
        path = self._path(job_id, ".c2pa")
        return path.read_bytes() if path.exists() else None

    def written_since(self, offset: int) -> tuple[list[str], int]:
        """Jobs whose records were written after ``offset`` bytes of the log, and the log's new end."""
        path = self.root / "releases.log"
        if not path.exists() or path.stat().st_size == offset:
            return [], offset
        with path.open("rb") as log:
            log.seek(offset)
            lines = log.read().split(b"\n")
        complete = lines[:-1]  # a line still being written waits for the next look
        return [line.decode() for line in complete], offset + sum(len(line) + 1 for line in complete)

