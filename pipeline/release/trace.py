"""Trace any copy back to its release, through three layers, strongest first:

1. the C2PA manifest, if the copy still carries one (its moderation assertion names the job);
2. the invisible watermark (survives a strip, a re-encode, a rescale);
3. fingerprints: the PDQ hashes of the copy's frames (and of their mirror), black bars trimmed,
   against every release's (each frame also hashed centre-cropped to 90% and 80%), kept only where
   they agree on one time offset; and the Chromaprint fingerprint of its sound (survives any change
   to the picture, a new picture included).

Every release is indexed the same way by ``index_release``, whichever path made it. A tenant
traces only its own releases; ``tenant=None`` (an admin) traces all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from classifiers import chromaprint
from classifiers.pdq import MIN_QUALITY, pdq, pdq_mirrored, to_words
from classifiers.pdq_index import MultiIndex
from pipeline.media import Limits, MediaError, decode
from pipeline.records import Job
from pipeline.release import provenance
from pipeline.release.verify import watermark_report
from pipeline.release.wmkeys import Keyring
from pipeline.store.releases import ReleaseRecord, ReleaseStore

INDEX_FPS = 4.0  # releases are hashed at 4 frames a second ...
QUERY_FPS = 2.0  # ... copies at 2, so every copy frame has a release frame at most 0.125 s away
MAX_DISTANCE = 31  # PDQ bits
OFFSET_BIN_S = 0.5  # matched frames must agree on where the copy sits in the release, to this
MIN_FRAMES = 3  # matched copy frames (on one offset) before a fingerprint trace is claimed
CROPS = (0.9, 0.8)  # releases are also hashed centre-cropped to these shares: PDQ does not survive a crop
BAR_LUMA, BAR_SPREAD = 28, 8  # a border row or column this dark and this flat may be a letterbox or pillarbox bar


FRAME_SIDE = 320  # releases and copies are hashed at one size, whatever size the copy was rescaled to
MAX_FRAMES = 1200  # 5 minutes at 4 a second; a longer video is sampled more thinly


def _inside(flat: np.ndarray) -> slice:
    """The span between bars along one axis: dark, flat lines at both ends, about as wide (a letterbox is
    centred; dark picture at one edge is not a bar)."""
    keep = np.flatnonzero(~flat)
    if len(keep) < len(flat) // 4:
        return slice(None)  # a dark picture, not bars
    before, after = keep[0], len(flat) - 1 - keep[-1]
    return slice(keep[0], keep[-1] + 1) if abs(before - after) <= 0.05 * len(flat) else slice(None)


def without_bars(image: np.ndarray) -> np.ndarray:
    """The picture inside any black bars (a letterboxed excerpt, a screen recording's padding)."""
    luma = image.mean(axis=2)
    rows = _inside((luma.mean(axis=1) < BAR_LUMA) & (luma.std(axis=1) < BAR_SPREAD))
    cols = _inside((luma.mean(axis=0) < BAR_LUMA) & (luma.std(axis=0) < BAR_SPREAD))
    return image[rows, cols]


def centre_crop(image: np.ndarray, share: float) -> np.ndarray:
    h, w = image.shape[:2]
    dh, dw = round(h * (1 - share) / 2), round(w * (1 - share) / 2)
    return image[dh:h - dh, dw:w - dw]


def _frames(path: Path, fps: float, limits: Limits) -> tuple[list[tuple[float, np.ndarray]], float]:
    media = decode(path, dataclasses.replace(limits, sample_fps=fps, max_frames=MAX_FRAMES, frame_side=FRAME_SIDE))
    return [(f.t, without_bars(f.image)) for f in media.frames], media.probe.duration_s


def index_release(store: ReleaseStore, job: Job, released: Path, manifest: bytes | None, anchors: bytes | None,
                  limits: Limits | None = None) -> ReleaseRecord:
    """Fingerprint a released file and keep it with its manifest, as validated against ``anchors``
    (called by every path that releases)."""
    limits = limits or Limits(max_bytes=1 << 40, max_duration_s=4 * 3600)
    frames, duration = _frames(released, INDEX_FPS, limits)
    hashed = [(round(t, 3), *pdq(view)) for t, image in frames
              for view in (image, *(centre_crop(image, share) for share in CROPS))]
    audio = chromaprint.fingerprint(released)
    read = provenance.read(released, anchors)
    record = ReleaseRecord(
        job_id=job.job_id, tenant=job.tenant, released_at=datetime.now(UTC).isoformat(),
        sha256=hashlib.sha256(released.read_bytes()).hexdigest(), watermark=job.watermark,
        watermark_key=job.watermark_key, duration_s=round(duration, 3),
        frames=[(t, h) for t, h, q in hashed if q >= MIN_QUALITY],
        audio=[int(w) for w in audio] if audio is not None else None,
        manifest={"state": read.state, "signer": read.signer, "assertions": read.assertions})
    store.put(record, manifest)
    return record


@dataclass(slots=True)
class _Index:
    records: dict[str, ReleaseRecord]
    frame_job: np.ndarray  # per indexed frame: the job's position in ``jobs``
    frame_t: np.ndarray
    jobs: list[str]
    frames: MultiIndex
    by_watermark: dict[str, str]


class ReleaseIndex:
    """The releases' fingerprints in memory: new releases are read as the store's log names them, and
    the frame index is rebuilt then (1.8 s at a million frame hashes, see bench/hashes.py)."""

    def __init__(self, store: ReleaseStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._records: dict[str, ReleaseRecord] = {}
        self._offset = 0
        self._built: _Index | None = None

    def current(self) -> _Index:
        with self._lock:
            new, self._offset = self.store.written_since(self._offset)
            for job_id in new:
                if (record := self.store.get(job_id)) is not None:
                    self._records[job_id] = record
            if self._built is None or new:
                records = dict(self._records)
                jobs = list(records)
                rows = [(k, t, h) for k, j in enumerate(jobs) for t, h in records[j].frames]
                words = to_words([h for _, _, h in rows]) if rows else np.zeros((0, 4), np.uint64)
                self._built = _Index(
                    records, np.array([k for k, _, _ in rows], np.int64), np.array([t for _, t, _ in rows]), jobs,
                    MultiIndex(words), {r.watermark: j for j, r in records.items() if r.watermark})
            return self._built


def video_match(index: _Index, copy: list[tuple[float, list[str]]], tenant: str | None) -> dict[str, Any] | None:
    """The release whose frames most copy frames match on one consistent offset (vPDQ-style: the share
    of the copy matched, and where)."""
    if not copy or not len(index.jobs):
        return None
    queries = [(t, h) for t, variants in copy for h in variants]
    pairs: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for hit in index.frames.search(to_words([h for _, h in queries]), MAX_DISTANCE):
        k = int(index.frame_job[hit.row])
        if tenant is None or index.records[index.jobs[k]].tenant == tenant:
            pairs[k].append((queries[hit.query][0], float(index.frame_t[hit.row])))
    best: tuple[int, int, list[float]] | None = None
    for k, found in pairs.items():
        offsets = np.round(np.array([r - q for q, r in found]) / OFFSET_BIN_S).astype(int)
        values, counts = np.unique(offsets, return_counts=True)
        centre = values[counts.argmax()]
        matched = sorted({q for (q, _), o in zip(found, offsets, strict=True) if abs(o - centre) <= 1})
        if len(matched) >= MIN_FRAMES and (best is None or len(matched) > len(best[2])):
            best = (k, int(centre), matched)
    if best is None:
        return None
    k, centre, matched = best
    ranges: list[list[float]] = []
    for t in matched:
        if ranges and t - ranges[-1][1] <= 1.5 / QUERY_FPS:
            ranges[-1][1] = t
        else:
            ranges.append([t, t])
    return {"job_id": index.jobs[k], "frames_matched": len(matched), "frames_in_copy": len(copy),
            "copy_share": round(len(matched) / len(copy), 3), "offset_s": centre * OFFSET_BIN_S,
            "ranges": [[round(a, 2), round(b + 1 / QUERY_FPS, 2)] for a, b in ranges],
            "confidence": round(min(1.0, len(matched) / (2 * MIN_FRAMES)), 3)}


def audio_match(index: _Index, words: np.ndarray | None, tenant: str | None) -> dict[str, Any] | None:
    best: tuple[str, chromaprint.AudioMatch] | None = None
    if words is None:
        return None
    for job_id, record in index.records.items():
        if record.audio is None or (tenant is not None and record.tenant != tenant):
            continue
        found = chromaprint.align(words, np.array(record.audio, np.uint32))
        if found is not None and (best is None or found.bit_error < best[1].bit_error):
            best = (job_id, found)
    if best is None:
        return None
    job_id, found = best
    return {"job_id": job_id, "offset_s": found.offset_s, "ranges": [[found.start_s, found.end_s]],
            "bit_error": round(found.bit_error, 3), "confidence": found.confidence}


def fingerprints(path: Path, limits: Limits) -> tuple[list[tuple[float, list[str]]], np.ndarray | None]:
    """The copy's frame hashes (each with its mirror's, low-quality frames left out) and its audio."""
    frames, _ = _frames(path, QUERY_FPS, limits)
    hashed = [(t, *pdq_mirrored(image)) for t, image in frames]
    copy = [(t, variants) for t, variants, quality in hashed if quality >= MIN_QUALITY]
    return copy, chromaprint.fingerprint(path)


async def fingerprint_layers(path: Path, current: _Index, limits: Limits, tenant: str | None) -> dict[str, Any]:
    """The frames and audio layers alone (``genguard verify`` reads the other two itself)."""
    try:
        copy, words = await asyncio.to_thread(fingerprints, path, limits)
        return {"frames": await asyncio.to_thread(video_match, current, copy, tenant),
                "audio": await asyncio.to_thread(audio_match, current, words, tenant)}
    except (MediaError, chromaprint.FingerprintError) as e:  # nothing to fingerprint: said, never raised
        return {"frames": None, "audio": None, "fingerprint_error": f"{getattr(e, 'code', 'fingerprint_failed')}: {e}"}


def release_match(record: ReleaseRecord, via: str, confidence: float | None,
                  ranges: list[list[float]] | None) -> dict[str, Any]:
    """What a trace answers about the release it found: which, how, where in the copy, and the original manifest."""
    return {"job_id": record.job_id, "tenant": record.tenant, "via": via, "confidence": confidence,
            "ranges": ranges if ranges is not None else [[0.0, record.duration_s]],
            "released_at": record.released_at, "manifest": record.manifest,
            "manifest_url": f"/v1/releases/{record.job_id}/manifest"}


async def trace(path: Path, index: ReleaseIndex, keyring: Keyring, anchors: bytes | None, limits: Limits,
                tenant: str | None) -> dict[str, Any]:
    """Every layer's answer for ``path``, and the release it traces to (the strongest layer's), with the
    stored manifest of that release. A layer that points at another tenant's release says nothing."""
    current = await asyncio.to_thread(index.current)

    def visible(job_id: str | None) -> str | None:
        record = current.records.get(job_id or "")
        return job_id if record is not None and (tenant is None or record.tenant == tenant) else None

    found = await asyncio.to_thread(provenance.read, path, anchors)
    moderation = found.assertions.get(provenance.MODERATION_LABEL) or {}
    manifest = {"present": found.present, "state": found.state, "signer": found.signer,
                "job_id": visible(moderation.get("job_id")), "error": found.error}
    mark = await watermark_report(path, None, keyring, limits)
    if mark.get("present"):
        mark["job_id"] = visible(current.by_watermark.get(mark["payload"]))
    layers = {"manifest": manifest, "watermark": mark, **await fingerprint_layers(path, current, limits, tenant)}
    match = None
    for via, job_id, confidence in (
            ("manifest", manifest["job_id"], 1.0 if found.state in ("Valid", "Trusted") else 0.5),
            ("watermark", mark.get("job_id"), 0.99),
            ("frames", (layers["frames"] or {}).get("job_id"), (layers["frames"] or {}).get("confidence")),
            ("audio", (layers["audio"] or {}).get("job_id"), (layers["audio"] or {}).get("confidence"))):
        if job_id:
            match = release_match(current.records[job_id], via, confidence, (layers.get(via) or {}).get("ranges")
                                  if via in ("frames", "audio") else None)
            break
    return {"traced": match is not None, "match": match, "layers": layers}
