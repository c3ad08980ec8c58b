"""Known-content matching: PDQ hashes of frames (Meta's ``pdqhash``) and a Hamming-range index
over hash lists (faiss binary index), so a re-upload of known content is caught whatever the
classifiers say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PDQ_BITS = 256


def pdq(image: np.ndarray) -> tuple[str, int]:
    """PDQ hash of an RGB frame as 64 hex digits, and its quality (0-100; below ~50 is unreliable)."""
    import pdqhash

    bits, quality = pdqhash.compute(np.ascontiguousarray(image))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def to_bytes(hex_hash: str) -> np.ndarray:
    raw = bytes.fromhex(hex_hash)
    if len(raw) != PDQ_BITS // 8:
        raise ValueError(f"a PDQ hash has 64 hex digits, got {len(hex_hash)}")
    return np.frombuffer(raw, dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class HashHit:
    query: int
    list_name: str
    entry: str
    distance: int


class HashIndex:
    """All entries of all hash lists in one faiss binary index; a query returns every entry within
    each list's own maximum distance."""

    def __init__(self) -> None:
        import faiss

        self.index = faiss.IndexBinaryFlat(PDQ_BITS)
        self.lists: list[str] = []
        self.entries: list[str] = []

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, list_name: str, hashes: Sequence[str], labels: Sequence[str] | None = None) -> None:
        if not hashes:
            return
        self.index.add(np.stack([to_bytes(h) for h in hashes]))
        self.lists += [list_name] * len(hashes)
        self.entries += list(labels) if labels is not None else list(hashes)

    def search(self, hashes: Sequence[str], max_distance: dict[str, int]) -> list[HashHit]:
        if not hashes or not len(self):
            return []
        radius = max(max_distance.values(), default=31) + 1  # faiss range search is strict (<)
        lims, dist, ids = self.index.range_search(np.stack([to_bytes(h) for h in hashes]), radius)
        hits = []
        for q in range(len(hashes)):
            for d, i in zip(dist[lims[q]:lims[q + 1]], ids[lims[q]:lims[q + 1]], strict=True):
                name = self.lists[i]
                if name in max_distance and d <= max_distance[name]:
                    hits.append(HashHit(q, name, self.entries[i], int(d)))
        return hits
