"""Hash lists on disk, and the live index the judge searches.

Per list: ``NAME.csv`` (hash, label, added_at, quality: the record people read), ``NAME.pdq`` (the
same rows as packed 32-byte hashes, loaded without parsing) and ``NAME.rows`` (each CSV row's byte
offset, so a hit's label is one seek away even in a list of ten million). ``state.json`` names the
disabled lists; ``VERSION`` changes with every write, and running workers reload when it does.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from classifiers.pdq import MIN_QUALITY, to_hex, to_words
from classifiers.pdq_index import MultiIndex, warm

log = logging.getLogger(__name__)

_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
HEADER = ["hash", "label", "added_at", "quality"]


@dataclass(frozen=True, slots=True)
class ListHit:
    query: int
    list_name: str
    hash: str
    label: str
    distance: int


@dataclass(frozen=True, slots=True)
class ListInfo:
    name: str
    hashes: int
    enabled: bool


class HashStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str, suffix: str = ".csv") -> Path:
        if not _NAME.match(name):
            raise ValueError(f"list name {name!r}: use lowercase letters, digits, '-' and '_'")
        return self.root / f"{name}{suffix}"

    @contextlib.contextmanager
    def _writing(self, changes: bool = True) -> Iterator[None]:
        """One writer at a time (CLI, API and workers may share the directory); readers see VERSION move
        last, and only when the lists' content or state changed."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
            if changes:
                (self.root / "VERSION").write_text(uuid.uuid4().hex)

    def version(self) -> str:
        path = self.root / "VERSION"
        return path.read_text() if path.exists() else ""

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.csv")) if self.root.exists() else []

    def _disabled(self) -> set[str]:
        path = self.root / "state.json"
        return set(json.loads(path.read_text())["disabled"]) if path.exists() else set()

    def enabled(self) -> set[str]:
        return set(self.names()) - self._disabled()

    def lists(self) -> list[ListInfo]:
        """Every list with its size and state (and its sidecars brought up to date, where they lag)."""
        with self._writing(changes=False):
            for name in self.names():
                self._sidecars(name)
        enabled = self.enabled()
        return [ListInfo(n, self._path(n, ".pdq").stat().st_size // 32 if self._path(n, ".pdq").exists() else
                         sum(1 for _ in self._path(n).open()) - 1, n in enabled) for n in self.names()]

    def set_enabled(self, name: str, enabled: bool) -> None:
        if name not in self.names():
            raise ValueError(f"no hash list {name!r} (have: {', '.join(self.names()) or 'none'})")
        with self._writing():
            disabled = (self._disabled() - {name}) if enabled else (self._disabled() | {name})
            tmp = self.root / "state.json.tmp"
            tmp.write_text(json.dumps({"disabled": sorted(disabled)}))
            tmp.replace(self.root / "state.json")

    def add(self, name: str, entries: Sequence[tuple[str, str, int | None]]) -> int:
        """Append (hash, label, quality) rows; a hash of known quality below PDQ's 50 is not stored.
        Returns how many were."""
        for h, _, _ in entries:
            if not _HEX.match(h):
                raise ValueError(f"{h!r} is not a PDQ hash (64 hex digits)")
        kept = [(h.lower(), label, q) for h, label, q in entries if q is None or q >= MIN_QUALITY]
        path = self._path(name)
        with self._writing():
            self._sidecars(name)
            now = datetime.now(UTC).isoformat()
            with path.open("ab") as f, self._path(name, ".pdq").open("ab") as raw, \
                    self._path(name, ".rows").open("ab") as rows:
                if f.tell() == 0:
                    f.write(_line(HEADER))
                offsets = []
                for h, label, q in kept:
                    offsets.append(f.tell())
                    f.write(_line([h, label, now, "" if q is None else str(q)]))
                raw.write(bytes.fromhex("".join(h for h, _, _ in kept)))
                rows.write(np.array(offsets, np.int64).tobytes())
        return len(kept)

    def import_file(self, name: str, source: Path) -> tuple[int, int]:
        """CSV with a ``hash`` (or ``pdq``) column and optional ``label`` and ``quality``, or one hash per
        line; a bad row is reported with its line number and nothing is imported. Returns (stored, skipped
        for quality below 50)."""
        entries: list[tuple[str, str, int | None]] = []
        with source.open(newline="") as f:
            rows = list(csv.reader(f))
        header = [c.strip().lower() for c in rows[0]] if rows else []
        col = next((header.index(c) for c in ("hash", "pdq", "pdq_hash") if c in header), None)
        label_col = header.index("label") if "label" in header else None
        quality_col = header.index("quality") if "quality" in header else None
        body = rows[1:] if col is not None else rows
        for n, row in enumerate(body, 2 if col is not None else 1):
            if not row or not "".join(row).strip():
                continue
            h = row[col or 0].strip()
            if not _HEX.match(h):
                raise ValueError(f"{source}:{n}: {h!r} is not a PDQ hash (64 hex digits)")
            quality = row[quality_col].strip() if quality_col is not None and len(row) > quality_col else ""
            if quality and not (quality.isdigit() and int(quality) <= 100):
                raise ValueError(f"{source}:{n}: quality {quality!r} is not a number from 0 to 100")
            entries.append((h, row[label_col].strip() if label_col is not None and len(row) > label_col else "",
                            int(quality) if quality else None))
        stored = self.add(name, entries)
        return stored, len(entries) - stored

    def _sidecars(self, name: str) -> None:
        """(Re)write NAME.pdq and NAME.rows from the CSV where they are missing or short (a list written
        before they existed, or an append cut off mid-way)."""
        path, raw_path, rows_path = self._path(name), self._path(name, ".pdq"), self._path(name, ".rows")
        if not path.exists() or self._in_step(path, raw_path, rows_path):
            return
        hashes, offsets = [], []
        with path.open("rb") as f:
            f.readline()
            for n, line in enumerate(iter(f.readline, b""), 2):
                offsets.append(f.tell() - len(line))
                hashes.append(h := next(csv.reader([line.decode()]))[0])
                if not _HEX.match(h):
                    raise ValueError(f"{path}:{n}: {h!r} is not a PDQ hash (64 hex digits)")
        try:
            raw_path.write_bytes(bytes.fromhex("".join(hashes)))
            rows_path.write_bytes(np.array(offsets, np.int64).tobytes())
        except OSError as e:
            raise RuntimeError(f"hash list {name}: {raw_path.name} is missing or behind {path.name} and "
                               f"{self.root} is not writable here; run `genguard hashes list` where it is") from e

    @staticmethod
    def _in_step(path: Path, raw_path: Path, rows_path: Path) -> bool:
        """Whether the sidecars cover every CSV row, checked without reading the CSV: the last row offset
        recorded must start the CSV's last line."""
        if not (raw_path.exists() and rows_path.exists()):
            return False
        n = rows_path.stat().st_size // 8
        if raw_path.stat().st_size != 32 * n or rows_path.stat().st_size != 8 * n:
            return False
        with path.open("rb") as f:
            if n == 0:
                f.readline()  # the header
                return f.read(1) == b""
            f.seek(int(np.fromfile(rows_path, np.int64, count=1, offset=8 * (n - 1))[0]))
            f.readline()
            return f.read(1) == b""

    def label(self, name: str, row: int) -> str:
        offset = int(np.fromfile(self._path(name, ".rows"), np.int64, count=1, offset=8 * row)[0])
        with self._path(name).open("rb") as f:
            f.seek(offset)
            fields = next(csv.reader([f.readline().decode()]))
        return fields[1] or fields[0]

    def load(self, after: dict[str, int] | None = None) -> LoadedLists:
        """Every enabled list in one index (rows of list after list); with ``after``, only each list's rows
        past that many (what an import appended since)."""
        lock_path = self.root / ".lock"  # read-only is enough for a shared lock: workers mount the lists read-only
        with lock_path.open("rb") if lock_path.exists() else contextlib.nullcontext() as lock:
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_SH)  # never half an append
            disabled, names, firsts, parts = self._disabled(), [], [], []
            for name in self.names():
                if name in disabled:
                    continue
                self._sidecars(name)
                first = (after or {}).get(name, 0)
                names.append(name)
                firsts.append(first)
                parts.append(np.fromfile(self._path(name, ".pdq"), np.uint8, offset=32 * first).reshape(-1, 32))
        raw = np.concatenate(parts) if parts else np.zeros((0, 32), np.uint8)
        return LoadedLists(self, names, np.cumsum([0, *(len(p) for p in parts)]), np.array(firsts),
                           MultiIndex(to_words(raw)))


def _line(fields: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(fields)
    return out.getvalue().encode()


@dataclass(frozen=True, slots=True)
class LoadedLists:
    store: HashStore
    names: list[str]
    starts: np.ndarray  # row where each list begins, and the total
    firsts: np.ndarray  # each list's first row here, as numbered in its file
    index: MultiIndex

    def sizes(self) -> dict[str, int]:
        """Rows per list, as numbered in its file, up to the last one loaded."""
        return {n: int(self.firsts[k] + self.starts[k + 1] - self.starts[k]) for k, n in enumerate(self.names)}

    def search(self, hashes: Sequence[str], max_distance: dict[str, int]) -> list[ListHit]:
        """Hits of ``hashes`` in the lists named in ``max_distance``, each within its own distance."""
        wanted = [n for n in self.names if n in max_distance]
        if not hashes or not wanted:
            return []
        hits = []
        for hit in self.index.search(to_words(list(hashes)), max(max_distance[n] for n in wanted)):
            k = int(np.searchsorted(self.starts, hit.row, side="right")) - 1
            name, row = self.names[k], hit.row - int(self.starts[k]) + int(self.firsts[k])
            if name in max_distance and hit.distance <= max_distance[name]:
                hits.append(ListHit(hit.query, name, to_hex(self.index.db[hit.row]), self.store.label(name, row),
                                    hit.distance))
        return hits


DELTA_SHARE = 0.1  # appended rows indexed apart, up to this share of the whole, before one full rebuild


class LiveLists:
    """The lists a running worker matches against, followed in a background thread within ``poll_s`` of
    any write. An import only appends, so only its rows are indexed (a delta beside the main index:
    seconds, however long the lists); enabling or disabling, or a delta past 10% of the whole,
    rebuilds everything while the old index keeps serving."""

    def __init__(self, store: HashStore, poll_s: float = 2.0) -> None:
        self.store, self.poll_s = store, poll_s
        self.version = store.version()
        self.loaded: tuple[LoadedLists, LoadedLists | None] = (store.load(), None)  # main, delta: swapped as one
        threading.Thread(target=self._watch, name="hash-lists", daemon=True).start()

    def _reload(self) -> None:
        started, main = time.perf_counter(), self.loaded[0]
        sizes = main.sizes()
        if set(sizes) <= self.store.enabled():  # only appends (or new lists) since the main index was built
            delta = self.store.load(after=sizes)
            if delta.starts[-1] <= max(100_000, DELTA_SHARE * main.starts[-1]):
                self.loaded = (main, delta)
                log.info("hash lists: %s appended rows indexed in %.1f s", delta.starts[-1],
                         time.perf_counter() - started)
                return
        main = self.store.load()
        self.loaded = (main, None)
        log.info("hash lists reloaded (%s rows) in %.1f s", main.starts[-1], time.perf_counter() - started)

    def _watch(self) -> None:
        warm()  # the first job after a start should not wait for the kernels to compile
        while True:
            time.sleep(self.poll_s)
            try:
                if (version := self.store.version()) != self.version:
                    self._reload()
                    self.version = version
            except Exception:  # keep matching against the lists already loaded
                log.exception("hash lists could not be reloaded; the previous ones stay in force")

    def search(self, hashes: Sequence[str], max_distance: dict[str, int]) -> list[ListHit]:
        main, delta = self.loaded
        return main.search(hashes, max_distance) + (delta.search(hashes, max_distance) if delta else [])
