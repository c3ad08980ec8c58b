"""Known-content lists: the multi-index answers exactly what a flat scan answers, lists keep their
labels and quality rule, and a running worker's index follows imports and enable/disable."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from classifiers import pdq_batch
from classifiers.pdq import to_hex, to_words
from classifiers.pdq_index import FLAT_BELOW, MultiIndex
from pipeline.store.hashes import HashStore, LiveLists


def _near(rng: np.random.Generator, words: np.ndarray, flips: int) -> np.ndarray:
    bits = np.unpackbits(words.astype(">u8").view(np.uint8))
    bits[rng.choice(256, flips, replace=False)] ^= 1
    return np.packbits(bits).view(">u8").astype(np.uint64)


def _flat(db: np.ndarray, queries: np.ndarray, radius: int) -> set[tuple[int, int, int]]:
    xor = db[None, :, :] ^ queries[:, None, :]
    dist = np.bitwise_count(xor).sum(axis=2)
    return {(int(q), int(r), int(dist[q, r])) for q, r in zip(*np.nonzero(dist <= radius), strict=True)}


@pytest.mark.parametrize("radius", [31, 40, 8])  # two and three bit flips a table, and exact keys
def test_multi_index_returns_exactly_what_a_flat_scan_returns(radius: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdq_batch, "BATCH_CHUNK", 70)  # the batched sweep's chunks, without 4,096 queries
    rng = np.random.default_rng(radius)
    db = to_words(rng.integers(0, 256, (40_000, 32), dtype=np.uint8))
    db[1000] = db[7]  # a duplicate entry is reported twice (once per row), never once per table
    index = MultiIndex(db)
    assert len(index.starts) > 1, "this size must use the tables, not the flat scan"
    queries = np.stack([_near(rng, db[rng.integers(len(db))], int(k)) for k in rng.integers(0, radius + 12, 150)]
                       + [rng.integers(0, 2**63, 4, dtype=np.int64).astype(np.uint64) for _ in range(50)])
    assert len(queries) >= pdq_batch.BATCH_FROM  # the batched sweep, in three chunks
    found = [(h.query, h.row, h.distance) for h in index.search(queries, radius)]
    expected = _flat(db, queries, radius)
    assert sorted(found) == sorted(expected)  # each pair once, though several tables find it
    assert len(expected) > 50  # the near copies are found
    few = {(h.query, h.row, h.distance) for h in index.search(queries[:10], radius)}  # probed query by query
    assert few == {e for e in expected if e[0] < 10}
    single = {(0, h.row, h.distance) for h in index.search(queries[:1], radius)}
    assert single == {e for e in expected if e[0] == 0}


def test_probed_flips_follow_the_generalised_pigeonhole() -> None:
    index = MultiIndex(to_words(np.random.default_rng(3).integers(0, 256, (40_000, 32), dtype=np.uint8)))
    for radius in (8, 31, 40):
        flips = index.flips(radius)
        assert flips.sum() == max(0, radius - len(flips) + 1)  # enough for exactness, and no more
        assert flips.max() - flips.min() <= 1
    assert index.flips(40).sum() < 40 // len(index.starts) * len(index.starts)  # fewer than plain pigeonhole


def test_small_lists_are_scanned_flat() -> None:
    rng = np.random.default_rng(1)
    db = to_words(rng.integers(0, 256, (FLAT_BELOW - 1, 32), dtype=np.uint8))
    index = MultiIndex(db)
    assert len(index.starts) == 0
    query = _near(rng, db[5], 20)[None]
    assert {(h.row, h.distance) for h in index.search(query, 31)} == {(r, d) for _, r, d in _flat(db, query, 31)}


def test_lists_keep_labels_and_leave_out_low_quality_hashes(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    store = HashStore(tmp_path / "lists")
    hashes = [to_hex(w) for w in to_words(rng.integers(0, 256, (3, 32), dtype=np.uint8))]
    assert store.add("csam", [(hashes[0], "case 17, frame 3", 90), (hashes[1], "flat", 12), (hashes[2], "", None)]) == 2
    source = tmp_path / "import.csv"
    source.write_text(f"pdq,label,quality\n{hashes[1]},ok,77\n{hashes[0]},low,49\n")
    assert store.import_file("csam", source) == (1, 1)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"hash,label\n{hashes[0]},fine\nnot-a-hash,oops\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3"):
        store.import_file("csam", bad)
    lists = store.load()
    hits = lists.search([hashes[0], hashes[1], hashes[2]], {"csam": 31})
    assert sorted((h.query, h.label) for h in hits) == [(0, "case 17, frame 3"), (1, "ok"), (2, hashes[2])]
    assert lists.search([hashes[0]], {"other": 31}) == []  # a list the policy does not name


def test_a_list_written_before_the_packed_sidecars_still_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    hashes = [to_hex(w) for w in to_words(rng.integers(0, 256, (3, 32), dtype=np.uint8))]
    (tmp_path / "old.csv").write_text("hash,label,added_at\n" + "".join(f"{h},entry {i},2026-11-01\n"
                                                                       for i, h in enumerate(hashes)))
    hits = HashStore(tmp_path).load().search([hashes[2]], {"old": 0})
    assert [(h.label, h.distance) for h in hits] == [("entry 2", 0)]
    assert (tmp_path / "old.pdq").stat().st_size == 96 and not (tmp_path / "VERSION").exists()


def test_a_running_index_follows_imports_and_disabling(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    store = HashStore(tmp_path / "lists")
    known = [to_hex(w) for w in to_words(rng.integers(0, 256, (5000, 32), dtype=np.uint8))]
    store.add("terror", [(h, "", None) for h in known[:10]])
    live = LiveLists(store, poll_s=0.2)
    query = to_hex(_near(rng, to_words([known[4000]])[0], 6))
    assert live.search([query], {"terror": 31}) == []
    (tmp_path / "new.csv").write_text("hash\n" + "\n".join(known) + "\n")
    started = time.monotonic()
    store.import_file("terror", tmp_path / "new.csv")
    while not live.search([query], {"terror": 31}) and time.monotonic() - started < 10:
        time.sleep(0.1)
    hits = live.search([query], {"terror": 31})
    assert [h.distance for h in hits] == [6], "an import reaches a running index within 10 s"
    main, delta = live.loaded
    assert main.starts[-1] == 10 and delta is not None and delta.starts[-1] == 5000  # only the new rows indexed
    assert hits[0].label == known[4000]  # the row is numbered as in its file
    store.set_enabled("terror", False)
    while live.search([query], {"terror": 31}) and time.monotonic() - started < 20:
        time.sleep(0.1)
    assert live.search([query], {"terror": 31}) == []
    assert live.loaded[1] is None  # disabling rebuilt the whole index
    assert [i.enabled for i in store.lists()] == [False]
    with pytest.raises(ValueError, match="no hash list"):
        store.set_enabled("nope", True)
