"""Where observations are kept for replay: append-only JSONL, one file per process per day.

An interface with one local implementation, so an object-store backend is one more class.
Holds prompt text (replay re-runs rules on it): keep this directory under the same access
controls and retention as the media store.
"""

from __future__ import annotations

import abc
import os
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pipeline.records import StoredSignals


class SignalStore(abc.ABC):
    @abc.abstractmethod
    def append(self, record: StoredSignals) -> None: ...

    @abc.abstractmethod
    def scan(self, since: datetime | None = None, tenant: str | None = None) -> Iterator[StoredSignals]: ...


class LocalSignalStore(SignalStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = f"{socket.gethostname()}-{os.getpid()}.jsonl"
        self.lock = threading.Lock()  # the API appends from its worker threads; one line must stay one line

    def append(self, record: StoredSignals) -> None:
        path = self.root / record.time.strftime("%Y-%m-%d") / self.name
        line = record.model_dump_json() + "\n"
        with self.lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                f.write(line)

    def scan(self, since: datetime | None = None, tenant: str | None = None) -> Iterator[StoredSignals]:
        if not self.root.exists():
            return
        for day in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if since is not None and day.name < since.strftime("%Y-%m-%d"):
                continue
            for path in sorted(day.glob("*.jsonl")):
                for line in path.read_text(encoding="utf-8").splitlines():
                    rec = StoredSignals.model_validate_json(line)
                    if (since is None or rec.time >= since) and (tenant is None or rec.tenant == tenant):
                        yield rec
