"""Known-content lists at scale: the PDQ multi-index next to faiss's flat binary index, at one and ten
million hashes (random 256-bit hashes: the hardest case for bucket sizes is uniform). For each size:
build time, index memory and process RSS, lookups/s batched (10,000 queries a call, after a first
call that allocates the work buffers), 12 a call (one job's sampled frames) and one at a time, and
recall against flat search on the same queries (half near copies at 0-40 bits, half unrelated).

    .venv/bin/python bench/hashes.py [--sizes 1000000,10000000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import record  # noqa: E402
from classifiers.pdq import to_words  # noqa: E402
from classifiers.pdq_index import MultiIndex  # noqa: E402

RADIUS = 31
BATCH = 10_000  # queries a batched call takes: a re-scan of releases after a list import


def queries(rng: np.random.Generator, raw: np.ndarray, n: int) -> np.ndarray:
    bits = np.unpackbits(raw[rng.integers(0, len(raw), n)], axis=1)
    for i in range(n // 2):
        bits[i, rng.choice(256, rng.integers(0, 41), replace=False)] ^= 1
    bits[n // 2:] = rng.integers(0, 2, (n - n // 2, 256))
    return np.packbits(bits, axis=1)


def rate(fn, n: int) -> float:
    started = time.perf_counter()
    fn()
    return n / (time.perf_counter() - started)


def bench(n: int, rng: np.random.Generator) -> None:
    import faiss

    raw = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    q = queries(rng, raw, BATCH)
    words = to_words(q)
    started = time.perf_counter()
    index = MultiIndex(to_words(raw))
    built = time.perf_counter() - started
    index.search(words[:8], RADIUS)  # compiled (or loaded from numba's cache) before timing
    first = rate(lambda: index.search(words, RADIUS), len(q))  # the batch buffers are allocated here
    batched = float(np.median([rate(lambda: index.search(words, RADIUS), len(q)) for _ in range(3)]))
    few = rate(lambda: [index.search(words[i:i + 12], RADIUS) for i in range(0, 1200, 12)], 1200)
    single = rate(lambda: [index.search(words[i:i + 1], RADIUS) for i in range(300)], 300)
    flat = faiss.IndexBinaryFlat(256)
    started = time.perf_counter()
    flat.add(raw)
    flat_built = time.perf_counter() - started
    k = 200  # at least BATCH_FROM, so that the batched path is what is checked
    flat_rate = rate(lambda: flat.range_search(q[:k], RADIUS + 1), k)  # faiss's radius is strict
    lims, dist, ids = flat.range_search(q[:k], RADIUS + 1)
    truth = {(i, int(ids[j]), int(dist[j])) for i in range(k) for j in range(lims[i], lims[i + 1])}
    mine = {(h.query, h.row, h.distance) for h in index.search(words[:k], RADIUS)}
    recall = len(truth & mine) / max(1, len(truth))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    label = f"{n / 1e6:g}M hashes"
    print(f"{label:>12}: multi-index built in {built:.1f} s, {index.nbytes / 1e9:.2f} GB ({len(index.starts)} tables), "
          f"process peak RSS {rss:.2f} GB; faiss flat built in {flat_built:.1f} s")
    print(f"{'':>12}  batched ({BATCH:,} a call) {batched:,.0f} lookups/s (median of 3; the first call, which "
          f"allocates the buffers, {first:,.0f}/s), 12 a call {few:,.0f}/s, one at a time {single:,.0f}/s; "
          f"flat {flat_rate:,.1f}/s")
    print(f"{'':>12}  recall vs flat {recall:.3f} ({len(truth)} pairs within {RADIUS} on {k} queries), extra pairs "
          f"{len(mine - truth)}")
    record("hashes", f"PDQ lookups/s at {label}, batched ({BATCH:,} a call)", batched, "lookups/s",
           ("faiss flat", flat_rate), ">= 10,000 at 10M" if n >= 10_000_000 else "")
    record("hashes", f"PDQ lookups/s at {label}, 12 a call (one job's frames)", few, "lookups/s",
           ("faiss flat", flat_rate))
    record("hashes", f"PDQ lookups/s at {label}, one at a time", single, "lookups/s", ("faiss flat", flat_rate))
    record("hashes", f"recall vs flat search at {label}", recall, "", None, "1.0")
    record("hashes", f"index memory at {label}", index.nbytes / 1e9, "GB", ("flat", raw.nbytes / 1e9), "< 4 GB")
    record("hashes", f"index build at {label} (a full reload)", built, "s", ("faiss flat", flat_built))


def delta_bench(rng: np.random.Generator, rows: int = 100_000) -> None:
    """What a running worker does after an import: index only the appended rows."""
    started = time.perf_counter()
    MultiIndex(to_words(rng.integers(0, 256, (rows, 32), dtype=np.uint8)))
    took = time.perf_counter() - started
    print(f"an import of {rows:,} hashes reaches a running worker's index in {took:.2f} s (+ up to 2 s polling)")
    record("hashes", f"reload after an import of {rows:,} hashes (delta index)", took, "s", None, "<= 10 s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000,10000000")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"known-content lists: radius {RADIUS}, 2 cores")
    for n in (int(s) for s in args.sizes.split(",")):
        bench(n, rng)
    delta_bench(rng)


if __name__ == "__main__":
    main()
