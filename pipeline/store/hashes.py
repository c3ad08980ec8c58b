"""Hash lists on disk: one CSV per list (hash,label,added_at), imported and added by the CLI,
loaded into one faiss index by the frame stage."""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime
from pathlib import Path

from classifiers.pdq import HashIndex

_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class HashStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ValueError(f"list name {name!r}: use lowercase letters, digits, '-' and '_'")
        return self.root / f"{name}.csv"

    def lists(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.csv")) if self.root.exists() else []

    def add(self, name: str, entries: list[tuple[str, str]]) -> int:
        for h, _ in entries:
            if not _HEX.match(h):
                raise ValueError(f"{h!r} is not a PDQ hash (64 hex digits)")
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        now = datetime.now(UTC).isoformat()
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["hash", "label", "added_at"])
            writer.writerows([h.lower(), label, now] for h, label in entries)
        return len(entries)

    def import_file(self, name: str, source: Path) -> int:
        """CSV with a ``hash`` (or ``pdq``) column and optional ``label``, or one hash per line;
        a bad row is reported with its line number and nothing is imported."""
        entries: list[tuple[str, str]] = []
        with source.open(newline="") as f:
            rows = list(csv.reader(f))
        header = [c.strip().lower() for c in rows[0]] if rows else []
        col = next((header.index(c) for c in ("hash", "pdq", "pdq_hash") if c in header), None)
        label_col = header.index("label") if "label" in header else None
        body = rows[1:] if col is not None else rows
        for n, row in enumerate(body, 2 if col is not None else 1):
            if not row or not "".join(row).strip():
                continue
            h = row[col or 0].strip()
            if not _HEX.match(h):
                raise ValueError(f"{source}:{n}: {h!r} is not a PDQ hash (64 hex digits)")
            entries.append((h, row[label_col].strip() if label_col is not None and len(row) > label_col else ""))
        return self.add(name, entries)

    def index(self) -> HashIndex:
        index = HashIndex()
        for name in self.lists():
            with self._path(name).open(newline="") as f:
                rows = list(csv.DictReader(f))
            index.add(name, [r["hash"] for r in rows], [r["label"] or r["hash"] for r in rows])
        return index
