"""From per-frame scores to one score per clip, so one noisy frame does not decide, while one
frame of a zero-tolerance category does."""

from __future__ import annotations

import numpy as np

from policies.schema import Temporal


def aggregate(scores: np.ndarray, rule: Temporal, zero_tolerance: bool) -> tuple[float, list[int]]:
    """The clip's score for one category and signal, and the frames (indexes) that produced it."""
    if len(scores) == 0:
        return 0.0, []
    if zero_tolerance or rule.mode == "max":
        i = int(np.argmax(scores))
        return float(scores[i]), [i]
    if rule.mode == "topk_mean":
        top = np.argsort(scores)[::-1][: rule.k]
        return float(scores[top].mean()), sorted(int(i) for i in top)
    n = min(rule.n, len(scores))  # consecutive: the best score held by n sampled frames in a row
    windows = np.lib.stride_tricks.sliding_window_view(scores, n).min(axis=1)
    start = int(np.argmax(windows))
    return float(windows[start]), list(range(start, start + n))
