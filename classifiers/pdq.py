"""Known-content matching: PDQ hashes of frames (Meta's ``pdqhash``), compared by Hamming distance
against hash lists (``classifiers.pdq_index``) so a re-upload of known content is caught whatever the
classifiers say.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PDQ_BITS = 256
MIN_QUALITY = 50  # PDQ's own guidance: hashes of flat or featureless frames are not comparable


def pdq(image: np.ndarray) -> tuple[str, int]:
    """PDQ hash of an RGB frame as 64 hex digits, and its quality (0-100; below 50 is unreliable)."""
    import pdqhash

    bits, quality = pdqhash.compute(np.ascontiguousarray(image))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def pdq_mirrored(image: np.ndarray) -> tuple[list[str], int]:
    """The hashes of ``image`` and of its horizontal mirror (PDQ's dihedral variants, one pass), so a
    flipped copy matches; and their quality."""
    import pdqhash

    variants, quality = pdqhash.compute_dihedral(np.ascontiguousarray(image))
    return [np.packbits(v.astype(np.uint8)).tobytes().hex() for v in (variants[0], variants[5])], int(quality)


def to_words(hashes: Sequence[str] | np.ndarray) -> np.ndarray:
    """Hashes (64 hex digits each, or rows of 32 bytes) as an (n, 4) uint64 array."""
    if isinstance(hashes, np.ndarray):
        raw = np.ascontiguousarray(hashes, dtype=np.uint8)
    else:
        if any(len(h) != PDQ_BITS // 4 for h in hashes):
            raise ValueError("a PDQ hash has 64 hex digits")
        raw = np.frombuffer(bytes.fromhex("".join(hashes)), dtype=np.uint8).reshape(-1, PDQ_BITS // 8)
    return raw.view(">u8").astype(np.uint64).reshape(-1, 4)


def to_hex(words: np.ndarray) -> str:
    return words.astype(">u8").tobytes().hex()
