"""Bit-level kernels shared by the PDQ index's query-by-query and batched paths (numba, inlined)."""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def popcount(x: np.uint64) -> int:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@numba.njit(cache=True, inline="always")
def distance(a: np.ndarray, b: np.ndarray) -> int:
    return popcount(a[0] ^ b[0]) + popcount(a[1] ^ b[1]) + popcount(a[2] ^ b[2]) + popcount(a[3] ^ b[3])


@numba.njit(cache=True, inline="always")
def key_of(row: np.ndarray, start: int, width: int) -> int:
    word, bit = start >> 6, start & 63
    v = row[word] >> np.uint64(bit)
    if bit + width > 64:
        v |= row[word + 1] << np.uint64(64 - bit)
    return int(v & np.uint64((1 << width) - 1))


@numba.njit(cache=True, inline="always")
def flipped(key: int, width: int, flips: int, out: np.ndarray, n: int) -> int:
    """Write ``key`` and every key within ``flips`` (at most three) bit flips of it to ``out`` from
    ``n`` on; return the new end."""
    out[n] = key
    n += 1
    for a in range(width if flips >= 1 else 0):
        ka = key ^ (1 << a)
        out[n] = ka
        n += 1
        for b in range(a + 1, width if flips >= 2 else 0):
            kb = ka ^ (1 << b)
            out[n] = kb
            n += 1
            for c in range(b + 1, width if flips >= 3 else 0):
                out[n] = kb ^ (1 << c)
                n += 1
    return n


def keys_per_table(widths: np.ndarray, flips: np.ndarray) -> list[int]:
    """How many keys ``flipped`` writes for one query in each table: its size of the probe buffers."""
    return [sum(math.comb(int(w), f) for f in range(int(t) + 1)) for w, t in zip(widths, flips, strict=True)]
