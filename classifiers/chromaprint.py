"""Audio fingerprints (Chromaprint, through Debian's ``fpcalc``) and their alignment, so a copy whose
picture was cropped, mirrored or replaced is still traced by its sound.

A fingerprint is one 32-bit word per ~0.124 s of audio. Two recordings of the same sound, aligned,
differ in few bits; unrelated audio differs in about half. Alignment tries every offset.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ITEM_S = 4096 / 3 / 11025  # seconds per fingerprint word (Chromaprint's default algorithm)
MIN_OVERLAP = 16  # words (~2 s) an alignment must cover
MAX_BIT_ERROR = 0.25  # unrelated audio sits near 0.5
MIN_DISTINCT = 0.3  # share of distinct words: a tone or silence says nothing about where it came from


class FingerprintError(RuntimeError):
    pass


def fingerprint(path: Path, timeout_s: float = 60) -> np.ndarray | None:
    """The whole file's fingerprint, or None where it has no audio."""
    if shutil.which("fpcalc") is None:
        raise FingerprintError("fpcalc not found: install Debian's libchromaprint-tools (make debian)")
    done = subprocess.run(["fpcalc", "-raw", "-json", "-length", "0", str(path)], capture_output=True, text=True,
                          timeout=timeout_s)
    try:
        words = json.loads(done.stdout)["fingerprint"] if done.stdout.strip() else []
    except (ValueError, KeyError) as e:
        raise FingerprintError(f"fpcalc gave no fingerprint for {path.name}: {done.stderr.strip()[:200]}") from e
    return np.array(words, dtype=np.uint32) if words else None


def informative(words: np.ndarray) -> bool:
    return len(words) >= MIN_OVERLAP and len(np.unique(words)) >= MIN_DISTINCT * len(words)


@dataclass(frozen=True, slots=True)
class AudioMatch:
    offset_s: float  # where the query's start falls in the reference
    start_s: float  # matched span, in the query's time
    end_s: float
    bit_error: float

    @property
    def confidence(self) -> float:
        return round(float(np.clip((0.5 - self.bit_error) / 0.5, 0, 1)), 3)


def align(query: np.ndarray, ref: np.ndarray) -> AudioMatch | None:
    """The best alignment of ``query`` within ``ref`` (either may be the longer), if one is close enough."""
    if not (informative(query) and informative(ref)):
        return None
    q_bits = np.unpackbits(query.astype(">u4").view(np.uint8)).reshape(len(query), 32)
    r_bits = np.unpackbits(ref.astype(">u4").view(np.uint8)).reshape(len(ref), 32)
    best: AudioMatch | None = None
    for shift in range(-(len(query) - MIN_OVERLAP), len(ref) - MIN_OVERLAP + 1):
        q0, r0 = max(0, -shift), max(0, shift)
        n = min(len(query) - q0, len(ref) - r0)
        ber = float((q_bits[q0:q0 + n] != r_bits[r0:r0 + n]).mean())
        if ber <= MAX_BIT_ERROR and (best is None or ber < best.bit_error):
            best = AudioMatch(round(shift * ITEM_S, 2), round(q0 * ITEM_S, 2), round((q0 + n) * ITEM_S, 2), ber)
    return best
