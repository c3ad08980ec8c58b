"""What a file says about where it came from: its C2PA manifest and its invisible watermark, read
with the same limits as an upload (a file from outside is never trusted), for `genguard verify`
and ``POST /v1/verify`` alike."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from pipeline.media import Limits, MediaError, decode
from pipeline.release import provenance
from pipeline.release.invisible import Detection, detect
from pipeline.release.wmkeys import Keyring
from pipeline.store.state import JobLedger


def find_watermark(path: Path, keyring: Keyring, limits: Limits | None = None) -> tuple[Detection, str | None]:
    """The invisible payload and the id of the key it was found with, pooled over up to 64 frames
    sampled at 4 per second, at full size (the pattern's grid follows the picture's size); every key
    of the keyring is tried, so releases made before a rotation stay readable. ``limits`` bound what
    is decoded (size, duration, dimensions) like an upload's."""
    limits = limits or Limits()
    limits = dataclasses.replace(limits, sample_fps=4, max_frames=64, frame_side=max(limits.max_width,
                                                                                     limits.max_height))
    frames = [f.image for f in decode(path, limits).frames]
    found = Detection(None, ())
    for key_id in [keyring.current, *(k for k in keyring.keys if k != keyring.current)]:
        if (found := detect(frames, keyring.keys[key_id])).payload is not None:
            return found, key_id
    return found, None


async def watermark_report(path: Path, jobs: JobLedger | None, keyring: Keyring,
                           limits: Limits | None = None) -> dict[str, Any]:
    """What the invisible watermark says, and which job it points to (from the ledger). A file that is no
    decodable video within the limits (an image, a bomb) carries no readable watermark: said, not raised."""
    try:
        found, key_id = await asyncio.to_thread(find_watermark, path, keyring, limits)
    except MediaError as e:
        return {"present": False, "unreadable": f"{e.code}: {e}"}
    if found.payload is None:
        return {"present": False}
    payload = f"{found.payload:08x}"
    job_id = await jobs.job_for_watermark(payload) if jobs is not None else None
    return {"present": True, "payload": payload, "key_id": key_id, "job_id": job_id}


async def report(path: Path, anchors: bytes | None, jobs: JobLedger | None, keyring: Keyring,
                 limits: Limits) -> dict[str, Any]:
    """Both layers in one report: the manifest's fields plus ``watermark``."""
    found = await asyncio.to_thread(provenance.read, path, anchors)
    return {**dataclasses.asdict(found), "watermark": await watermark_report(path, jobs, keyring, limits)}
