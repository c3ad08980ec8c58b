"""Figures for a text scorer on labelled rows: thresholds chosen on dev for a target precision, then
per category precision/recall/F1 (only rows whose source labels the category count), anything-flagged
F1 per language, and the share of benign text-to-video prompts wrongly stopped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.owner.labelled import Counts
from pipeline.owner.train_text import Rows


def threshold_for(y: np.ndarray, p: np.ndarray, target_precision: float, min_positives: int = 5) -> float | None:
    """The lowest score threshold whose precision on (y, p) is at least the target: the most recall at
    that precision. None when there are too few positives to say."""
    if y.sum() < min_positives:
        return None
    order = np.argsort(-p)
    tp = np.cumsum(y[order])
    precision = tp / np.arange(1, len(y) + 1)
    ok = np.nonzero(precision >= target_precision)[0]
    return float(p[order][ok.max()]) if len(ok) else None


@dataclass(frozen=True, slots=True)
class Figures:
    per_category: dict[str, Counts]
    any_flagged: Counts
    per_language: dict[str, Counts]
    benign_t2v_stopped: tuple[int, int]  # (stopped, benign text-to-video prompts)


def counts(truth: np.ndarray, pred: np.ndarray) -> Counts:
    return Counts(tp=int((truth & pred).sum()), fp=int((~truth & pred).sum()), fn=int((truth & ~pred).sum()))


def figures(rows: Rows, flagged: Sequence[set[str]], categories: Sequence[str], t2v_sources: set[str]) -> Figures:
    """``flagged``: the categories a scorer (or a whole policy) flags on each row."""
    per_category = {}
    for c in categories:
        mask, y = rows.target(c)
        pred = np.array([c in f for f in flagged])
        per_category[c] = counts(y[mask].astype(bool), pred[mask])
    full = np.array([len(lab) == len(categories) for lab in rows.labelled])  # rows that label everything
    truth_any = np.array([bool(y) for y in rows.y])
    pred_any = np.array([bool(f) for f in flagged])
    any_flagged = counts(truth_any[full | truth_any], pred_any[full | truth_any])
    langs = np.array(rows.lang)
    per_language = {lang: counts(truth_any[(full | truth_any) & (langs == lang)],
                                 pred_any[(full | truth_any) & (langs == lang)]) for lang in sorted(set(rows.lang))}
    benign_t2v = [i for i, (s, y) in enumerate(zip(rows.source, rows.y, strict=True))
                  if not y and (s in t2v_sources)]
    return Figures(per_category, any_flagged, per_language,
                   (sum(pred_any[i] for i in benign_t2v), len(benign_t2v)))


def table(columns: dict[str, Figures], categories: Sequence[str], langs: Sequence[str] | None = None) -> str:
    """Side by side: per category P/R/F1 for each column, then anything-flagged F1 per language."""
    names = list(columns)
    head = f"{'category':<20} {'support':>7} " + " ".join(f"{n[:22]:>22}" for n in names)
    lines = [head, f"{'':<20} {'':>7} " + " ".join(f"{'P    R    F1':>22}" for _ in names)]

    def row(label: str, get: object) -> str:
        cells = [get(f) for f in columns.values()]  # type: ignore[operator]
        support = cells[0].tp + cells[0].fn
        return f"{label:<20} {support:>7} " + " ".join(
            f"{c.precision:>10.2f} {c.recall:.2f} {c.f1:.2f}" for c in cells)

    for c in categories:
        lines.append(row(c, lambda f, c=c: f.per_category[c]))
    lines.append(row("anything flagged", lambda f: f.any_flagged))
    for lang in langs or sorted(next(iter(columns.values())).per_language):
        lines.append(row(f"  lang {lang}", lambda f, lang=lang: f.per_language.get(lang, Counts(0, 0, 0))))
    stopped = " ".join(f"{f.benign_t2v_stopped[0]:>16}/{f.benign_t2v_stopped[1]:<5}" for f in columns.values())
    lines.append(f"{'benign t2v stopped':<20} {'':>7} {stopped}")
    return "\n".join(lines)
