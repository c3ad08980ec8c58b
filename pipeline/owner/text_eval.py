"""Figures for a text scorer on labelled rows: thresholds chosen on dev for a target precision, then
per category precision/recall/F1 (only rows whose source labels the category count), anything-flagged
F1 per language, and the share of benign text-to-video prompts wrongly stopped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.owner.train_text import CATEGORIES, Rows

if TYPE_CHECKING:
    from pipeline.owner.labelled import Labelled

PROMPT_DOMAINS = ("t2v-prompt", "t2i-prompt")  # the corpus's benign generation prompts


@dataclass(frozen=True, slots=True)
class Counts:
    """Confusion counts and the figures policy owners read from them."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def threshold_for(y: np.ndarray, p: np.ndarray, target_precision: float, min_positives: int = 5,
                  recall_first: bool = False) -> float | None:
    """The threshold with the most recall at the target precision on (y, p), placed halfway between the
    last positive it needs and the next score below: going lower adds no recall on dev, only rows that
    keep precision above the target (with 9 sexual/minors positives at 0.56 and up, a benign child at
    0.073 was where the lowest such threshold sat). ``recall_first``: the lowest threshold that still
    keeps the target precision, for a category where an unseen positive below the dev ones is the worse
    mistake. None when there are too few positives to say."""
    if y.sum() < min_positives:
        return None
    order = np.argsort(-p, kind="stable")
    ranked, tp = p[order], np.cumsum(y[order])
    ok = np.nonzero(tp / np.arange(1, len(y) + 1) >= target_precision)[0]
    if not len(ok):
        return None
    if recall_first:
        return float(ranked[ok.max()])
    last = ok[tp[ok] == tp[ok].max()].min()  # the first cut with that recall ends on a positive
    below = ranked[last + 1] if last + 1 < len(ranked) else 0.0
    return float((ranked[last] + below) / 2)


@dataclass(frozen=True, slots=True)
class Figures:
    per_category: dict[str, Counts]
    any_flagged: Counts
    per_language: dict[str, Counts]
    benign_t2v_stopped: tuple[int, int]  # (stopped, benign text-to-video prompts)


def counts(truth: np.ndarray, pred: np.ndarray) -> Counts:
    return Counts(tp=int((truth & pred).sum()), fp=int((~truth & pred).sum()), fn=int((truth & ~pred).sum()))


@dataclass(frozen=True, slots=True)
class Truth:
    """What the labels say, row by row: categories, the categories each row's source decides, the
    language, and whether it is a benign generation prompt (t2v/t2i)."""

    categories: list[set[str]]
    labelled: list[set[str]]
    lang: list[str]
    benign_prompt: list[bool]

    @classmethod
    def of_rows(cls, rows: Rows, prompt_sources: set[str]) -> Truth:
        return cls(rows.y, rows.labelled, rows.lang, [not y and s in prompt_sources
                                                      for y, s in zip(rows.y, rows.source, strict=True)])

    @classmethod
    def of_labelled(cls, rows: Sequence[Labelled], categories: Sequence[str]) -> Truth:
        """Labelled JSONL rows; a row without a mask labels every category."""
        every = set(CATEGORIES) | set(categories)
        return cls([set(r.categories) for r in rows], [set(r.labelled) if r.labelled is not None else every
                                                       for r in rows], [r.lang for r in rows],
                   [not r.categories and (r.domain in PROMPT_DOMAINS or r.source == "genguard-t2v") for r in rows])


def figures(truth: Truth, flagged: Sequence[set[str]], categories: Sequence[str]) -> Figures:
    """``flagged``: the categories a scorer (or a whole policy) flags on each row. Per category only the
    rows whose source labels it count."""
    per_category = {}
    for c in categories:
        mask = np.array([c in lab for lab in truth.labelled])
        y = np.array([c in cats for cats in truth.categories])
        pred = np.array([c in f for f in flagged])
        per_category[c] = counts(y[mask], pred[mask])
    truth_any = np.array([bool(y) for y in truth.categories])
    # "anything flagged" counts the rows whose source decides every category, and every positive: a
    # hate-only source's negative says nothing about the other categories
    decided = np.array([set(CATEGORIES) <= lab for lab in truth.labelled]) | truth_any
    pred_any = np.array([bool(f) for f in flagged])
    langs = np.array(truth.lang)
    per_language = {lang: counts(truth_any[decided & (langs == lang)], pred_any[decided & (langs == lang)])
                    for lang in sorted(set(truth.lang))}
    benign = np.array(truth.benign_prompt)
    return Figures(per_category, counts(truth_any[decided], pred_any[decided]), per_language,
                   (int(pred_any[benign].sum()), int(benign.sum())))


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


def plot_reliability(ax: Any, scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray, signal: str,
                     bins: int = 10) -> None:
    """Calibration on a matplotlib axis: the observed rate of the category per bin of the score. On the
    diagonal, a score of 0.7 means 70% of such rows carry the category (what ``text_model`` promises)."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    which = np.clip((s * bins).astype(int), 0, bins - 1)
    kept = [b for b in range(bins) if (which == b).any()]
    xs, ys, ns = ([s[which == b].mean() for b in kept], [y[which == b].mean() for b in kept],
                  [int((which == b).sum()) for b in kept])
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.plot(xs, ys, "o-")
    for x, y, n in zip(xs, ys, ns, strict=True):
        ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)
    ax.set(xlabel=f"{signal} score (mean in bin)", ylabel="observed rate", xlim=(0, 1), ylim=(0, 1.05))
    ax.grid(alpha=0.3)
