"""Many PDQ queries at once against the multi-index's tables (``classifiers.pdq_index``): each table's
probes of all queries radix-sorted by key, so the table is read in one forward sweep, and all
candidates binned and sorted by row, so the hashes are too. At 10M hashes on 2 cores, 10,000
queries a call: 10.7-11.6k lookups/s, against 4.4-5.2k/s query by query (``bench/hashes.py``); it
only pays when many queries share a sweep."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numba
import numpy as np

from classifiers.pdq_bits import distance, flipped, key_of, keys_per_table

if TYPE_CHECKING:
    from classifiers.pdq_index import MultiIndex

BATCH_FROM = 64  # queries: from here on, ``MultiIndex.search`` sweeps (``Batches.search``)
QUERY_BITS = 12
QUERY_MASK = (1 << QUERY_BITS) - 1
BATCH_CHUNK = 1 << QUERY_BITS  # queries a sweep takes at once (~13M candidates at 10M hashes: ~210 MB)
ROW_BIN_BITS = 12  # candidates are checked in 4,096 bins of rows (128 KB of hashes at 10M) ...
LOCAL_SORT_BITS = 10  # ... and within a bin sorted by row to 1/1024th of it (4 rows at 10M)
POSITION_BITS = 32  # a candidate's place among a chunk's candidates


@numba.njit(cache=True, nogil=True)
def _counting_sort(values: np.ndarray, shift: int, bits: int, out: np.ndarray) -> np.ndarray:
    """Write ``values`` stably sorted by their bits [shift, shift + bits) to ``out``; return where
    each bin starts."""
    starts = np.zeros((1 << bits) + 1, np.int64)
    mask = (1 << bits) - 1
    for v in values:
        starts[((v >> shift) & mask) + 1] += 1
    starts = np.cumsum(starts)
    fill = starts[:-1].copy()
    for v in values:
        b = (v >> shift) & mask
        out[fill[b]] = v
        fill[b] += 1
    return starts


@numba.njit(cache=True, nogil=True)
def _radix_sort(values: np.ndarray, shift: int, bits: int, swap: np.ndarray) -> np.ndarray:
    """``values`` sorted by their bits [shift, shift + bits) in passes of at most 8 bits (a wider
    digit scatters to more places than the caches follow: 3x slower a pass); returns whichever of
    ``values`` and ``swap`` holds the result."""
    passes = -(-bits // 8)
    for i in range(passes):
        digit = bits * (i + 1) // passes - bits * i // passes
        _counting_sort(values, shift + bits * i // passes, digit, swap)
        values, swap = swap, values
    return values


@numba.njit(cache=True, nogil=True)
def _table_candidates(offsets: np.ndarray, ids: np.ndarray, base: int, queries: np.ndarray, start: int, width: int,
                      flips: int, probes: np.ndarray, swap: np.ndarray, found: np.ndarray, binned: np.ndarray,
                      low_bits: int, high_bits: int, bin_starts: np.ndarray) -> int:
    """One table's candidates (row << QUERY_BITS | query) for a batch of queries, written to
    ``binned`` sorted into bins by the row's ``high_bits`` bits above ``low_bits`` (``bin_starts``:
    where each starts). Returns how many, negated (nothing written) where the buffers are too small.

    The probed keys of all queries are first sorted by their high 16 bits, so that bucket bounds and
    row ids are read in one forward sweep through the table, which the CPU prefetches, instead of at
    random (the low bits only move within a kilobyte)."""
    n = 0  # probes: key << QUERY_BITS | query
    for q in range(len(queries)):
        first = n
        n = flipped(key_of(queries[q], start, width), width, flips, probes, n)
        for i in range(first, n):
            probes[i] = probes[i] << QUERY_BITS | q
    sort_bits = min(16, width)
    # sorted into one of the two arrays, and each probe's bucket into the other: first row << 32 | rows
    bounds = probes[:n] if -(-sort_bits // 8) % 2 else swap[:n]
    probes = _radix_sort(probes[:n], QUERY_BITS + width - sort_bits, sort_bits, swap[:n])
    total = 0
    for i in range(n):
        k = base + (probes[i] >> QUERY_BITS)
        bounds[i] = np.int64(offsets[k]) << 32 | (offsets[k + 1] - offsets[k])
        total += offsets[k + 1] - offsets[k]
    if total + 4 > len(found):
        return -(total + 4)
    c, last = 0, len(ids) - 1
    for i in range(n):
        lo, rows, q = bounds[i] >> 32, bounds[i] & 0xFFFFFFFF, probes[i] & QUERY_MASK
        if rows <= 4:  # most buckets: four fixed writes, no loop exit for the CPU to mispredict
            for j in range(4):
                found[c + j] = np.int64(ids[min(lo + j, last)]) << QUERY_BITS | q
        else:
            for j in range(rows):
                found[c + j] = np.int64(ids[lo + j]) << QUERY_BITS | q
        c += rows
    bin_starts[:] = _counting_sort(found[:total], QUERY_BITS + low_bits, high_bits, binned[:total])
    return total


@numba.njit(cache=True, parallel=True)
def _check_candidates(db: np.ndarray, queries: np.ndarray, radius: int, found: np.ndarray, bin_starts: np.ndarray,
                      low_bits: int, dist: np.ndarray) -> None:
    """Write to ``dist`` the distance of every candidate (``found``: the tables' candidates one after
    the other, each table's binned by the high bits of the row; ``bin_starts``: (tables, bins + 1)
    into it), or 255 where it exceeds ``radius``. Bins run in parallel; within a bin the candidates
    of all tables are sorted by row first (to blocks of a few rows), so the hashes are read in one
    forward sweep."""
    tables, n_bins = bin_starts.shape[0], bin_starts.shape[1] - 1
    shift, low_mask = max(0, low_bits - LOCAL_SORT_BITS), (1 << low_bits) - 1
    low_at = QUERY_BITS + POSITION_BITS
    for b in numba.prange(n_bins):
        n = 0
        for t in range(tables):
            n += bin_starts[t, b + 1] - bin_starts[t, b]
        local, k = np.empty(n, np.int64), 0  # row's low bits << low_at | position << QUERY_BITS | query
        for t in range(tables):
            for c in range(bin_starts[t, b], bin_starts[t, b + 1]):
                local[k] = ((found[c] >> QUERY_BITS) & low_mask) << low_at | c << QUERY_BITS | (found[c] & QUERY_MASK)
                k += 1
        ordered = np.empty_like(local)
        _counting_sort(local, low_at + shift, low_bits - shift, ordered)
        for v in ordered:
            d = distance(db[b << low_bits | v >> low_at], queries[v & QUERY_MASK])
            dist[(v >> QUERY_BITS) & ((1 << POSITION_BITS) - 1)] = d if d <= radius else 255


class Batches:
    """The batched search of one index, with its work arrays: grown as needed and kept between calls,
    because on this VM a fresh page costs more than the sweep that fills it (the first call runs at
    about half speed). One batch runs at a time; each takes every core."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.probes: list[tuple[np.ndarray, np.ndarray]] = []  # per worker thread: probes, swap
        self.found: list[np.ndarray] = []  # per table: candidates, and a second array to sort them with
        self.binned: list[np.ndarray] = []
        self._all, self._dist = np.empty(0, np.int64), np.empty(0, np.uint8)

    def search(self, index: MultiIndex, queries: np.ndarray, radius: int,
               flips: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, row, distance) of every pair within ``radius``, once each, ordered by query: in chunks
        of queries, each table's candidates (``_table_candidates``, tables on parallel threads), then
        every candidate checked bin by bin of rows (``_check_candidates``)."""
        row_bits = max(1, math.ceil(math.log2(len(index.db))))
        low_bits = max(0, row_bits - ROW_BIN_BITS)
        high_bits = row_bits - low_bits
        tables, workers = len(index.starts), numba.get_num_threads()
        per_query = max(keys_per_table(index.widths, flips))
        bin_starts = np.zeros((tables, (1 << high_bits) + 1), np.int64)
        counts = np.zeros(tables, np.int64)
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        with self.lock, ThreadPoolExecutor(workers) as pool:
            self.ready(tables, workers, min(len(queries), BATCH_CHUNK) * per_query)

            def table(t: int, w: int, q: np.ndarray) -> None:
                while (n := _table_candidates(index.offsets, index.ids[t], index.bases[t], q, index.starts[t],
                                              int(index.widths[t]), int(flips[t]), *self.probes[w],
                                              self.found[t], self.binned[t], low_bits, high_bits,
                                              bin_starts[t])) < 0:
                    self.grow(t, -n)
                counts[t] = n

            for chunk in range(0, len(queries), BATCH_CHUNK):
                q = queries[chunk:chunk + BATCH_CHUNK]
                list(pool.map(lambda w, q=q: [table(t, w, q) for t in range(w, tables, workers)], range(workers)))
                sizes = np.concatenate([[0], np.cumsum(counts)])
                candidates, dist = self.all(int(sizes[-1]))
                np.concatenate([p[:c] for p, c in zip(self.binned, counts, strict=True)], out=candidates)
                _check_candidates(index.db, q, radius, candidates, bin_starts + sizes[:-1, None], low_bits, dist)
                near = np.flatnonzero(dist != 255)
                found.append(((candidates[near] & QUERY_MASK) + chunk, candidates[near] >> QUERY_BITS, dist[near]))
        qs, rows, dist = (np.concatenate(a) for a in zip(*found, strict=True))
        # a row near a query in several tables was found once per table: keep one, ordered by query
        _, first = np.unique(qs * len(index.db) + rows, return_index=True)
        return qs[first], rows[first], dist[first]

    def ready(self, tables: int, workers: int, probes: int) -> None:
        if len(self.probes) != workers or len(self.probes[0][0]) < probes:
            self.probes = [(np.empty(probes, np.int64), np.empty(probes, np.int64)) for _ in range(workers)]
        if len(self.found) != tables:
            self.found = [np.empty(0, np.int64) for _ in range(tables)]
            self.binned = [np.empty(0, np.int64) for _ in range(tables)]

    def grow(self, table: int, n: int) -> None:
        self.found[table], self.binned[table] = np.empty(n * 5 // 4, np.int64), np.empty(n * 5 // 4, np.int64)

    def all(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Room for every table's candidates one after the other, and for their distances."""
        if len(self._all) < n:
            self._all, self._dist = np.empty(n * 5 // 4, np.int64), np.empty(n * 5 // 4, np.uint8)
        return self._all[:n], self._dist[:n]
