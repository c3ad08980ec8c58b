"""Training the learned text classifier (``genguard models train-text``): reproducible from a seed.

Data: the labelled corpus (``train/dev/test.jsonl.gz``: text, categories, labelled, lang, source)
plus any extra JSONL sources of the same shape with a ``split`` field (genguard's own text-to-video
prompts in ``classifiers/data/t2v``). Each category gets its own logistic head, trained only on the
rows whose source labels that category (a hate-only source says nothing about sexual content);
positives are up-weighted to balance each head, and every source's weight is damped by the square
root of its size so that the big hate corpora do not drown the rest. Dev decides the epoch count
(best mean average precision), the Platt scaling and the thresholds; test is only read by
``evaluate``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from classifiers.normalize import normalize
from classifiers.text_model import featurize, pack

IN_DOMAIN = Path(__file__).resolve().parents[2] / "classifiers" / "data" / "t2v"
STYLE = ("make a video of {}", "{}, cinematic, 4k, realistic", "video: {}")  # training-only variants
CATEGORIES = ("sexual", "sexual/minors", "violence", "violence/graphic", "self-harm", "hate", "harassment",
              "illicit/weapons", "extremism", "public-figures", "political/deceptive")


@dataclass(slots=True)
class Rows:
    texts: list[str] = field(default_factory=list)
    y: list[set[str]] = field(default_factory=list)
    labelled: list[set[str]] = field(default_factory=list)
    lang: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)

    def add(self, r: dict) -> None:
        self.texts.append(normalize(r["text"]).text)
        self.y.append(set(r["categories"]))
        self.labelled.append(set(r.get("labelled", CATEGORIES)))
        self.lang.append(r.get("lang", "en"))
        self.source.append(r.get("source", "unknown"))

    def __len__(self) -> int:
        return len(self.texts)

    def target(self, category: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows that label ``category``, their 0/1 targets)."""
        mask = np.array([category in lab for lab in self.labelled])
        y = np.array([category in cats for cats in self.y], dtype=np.int8)
        return mask, y

    def average_precision(self, category: str, scores: np.ndarray,
                          where: np.ndarray | None = None) -> tuple[int, float]:
        """(positives, average precision of ``scores``) over the rows that label ``category`` (and are
        in ``where``); nan without positives."""
        mask, y = self.target(category)
        keep = mask if where is None else mask & where
        return int(y[keep].sum()), average_precision(y[keep], scores[keep])


def split_of(seed_id: str) -> str:
    """70/15/15 by a hash of the seed id: a prompt and its translations share a split; reported
    examples (ids ``rp..``, quoted from sets kept apart from us) are test only."""
    if seed_id.startswith("rp"):
        return "test"
    bucket = int(hashlib.sha1(seed_id.encode()).hexdigest(), 16) % 100
    return "train" if bucket < 70 else "dev" if bucket < 85 else "test"


def t2v_rows(split: str, root: Path = IN_DOMAIN) -> list[dict]:
    """genguard's own text-to-video prompts (see its CARD.md): English seeds with categories, their
    translations by seed id, and the reported examples. Every category is labelled on every row."""
    def tsv(path: Path) -> list[list[str]]:
        return [ln.split("\t") for ln in path.read_text(encoding="utf-8").splitlines() if ln and ln[0] != "#"]

    cats = {seed: [] if c == "-" else c.split("+") for seed, c, _ in tsv(root / "en.tsv")}
    rows = [{"id": seed, "categories": cats[seed], "text": text, "lang": "en"}
            for seed, _, text in tsv(root / "en.tsv")]
    for path in sorted(root.glob("??.tsv")):
        if path.stem != "en":
            rows += [{"id": seed, "categories": cats[seed], "text": text, "lang": path.stem}
                     for seed, text in tsv(path)]
    rows += [{"id": seed, "categories": [] if c == "-" else c.split("+"), "text": text, "lang": lang}
             for seed, c, lang, text in tsv(root / "reported.tsv")]
    out = [{**r, "labelled": list(CATEGORIES), "source": "genguard-t2v"} for r in rows if split_of(r["id"]) == split]
    if split == "train":  # the ways users dress a prompt up, on training rows only
        out += [{**r, "text": style.format(r["text"])} for r in out if r["lang"] == "en" for style in STYLE]
    return out


def read_split(data: Path, split: str, t2v: bool = True, limit: int | None = None) -> Rows:
    rows = Rows()
    corpus = data / f"{split}.jsonl.gz"
    if not corpus.exists():
        raise FileNotFoundError(f"{corpus} missing: --data names the corpus directory (train/dev/test.jsonl.gz)")
    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f):
            if limit is not None and n >= limit:
                break
            rows.add(json.loads(line))
    for r in t2v_rows(split) if t2v else []:
        rows.add(r)
    return rows


IN_DOMAIN_WEIGHT = 8.0  # genguard-t2v is what the gate sees: worth more than its size says


def weights(rows: Rows, mask: np.ndarray, y: np.ndarray, cap: float = 50.0) -> np.ndarray:
    """Source damping (1/sqrt(size)), the in-domain source up-weighted, times class balance
    (positives up to ``cap`` times a negative)."""
    sources = Counter(s for s, m in zip(rows.source, mask, strict=True) if m)
    w = np.array([(IN_DOMAIN_WEIGHT if s == "genguard-t2v" else 1.0) / np.sqrt(sources[s])
                  for s, m in zip(rows.source, mask, strict=True) if m])
    w /= w.mean()
    ym = y[mask]
    pos, neg = w[ym == 1].sum(), w[ym == 0].sum()
    if pos > 0:
        w[ym == 1] *= min(cap, neg / pos)
    return w


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-p)
    hits = y[order].cumsum()
    return float((hits / np.arange(1, len(y) + 1))[y[order] == 1].mean())


@dataclass(slots=True)
class Head:
    category: str
    coef: np.ndarray
    bias: float
    platt: tuple[float, float] = (1.0, 0.0)
    dev_ap: float = float("nan")


def _fit_head(category: str, x: sp.csr_matrix, rows: Rows, x_dev: sp.csr_matrix, dev: Rows, epochs: int,
              seed: int, say: Callable[[str], None]) -> Head:
    from sklearn.linear_model import SGDClassifier

    mask, y = rows.target(category)
    dmask, dy = dev.target(category)
    if y[mask].sum() == 0:
        say(f"  {category:<20} no positives in training data: head left at zero")
        return Head(category, np.zeros(x.shape[1], np.float32), -10.0)
    xs, ys, ws = x[mask], y[mask], weights(rows, mask, y)
    clf = SGDClassifier(loss="log_loss", alpha=2e-6, random_state=seed, learning_rate="optimal")
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray, float] | None = None
    for epoch in range(1, epochs + 1):
        order = rng.permutation(xs.shape[0])
        clf.partial_fit(xs[order], ys[order], classes=np.array([0, 1]), sample_weight=ws[order])
        ap = average_precision(dy[dmask], clf.decision_function(x_dev[dmask])) if dmask.any() else float("nan")
        say(f"  {category:<20} epoch {epoch}/{epochs}: dev AP {ap:.3f} ({int(dy[dmask].sum())} dev positives)")
        if best is None or not ap <= best[0]:  # nan (no dev positives) keeps the latest epoch
            best = (ap, clf.coef_.ravel().copy(), float(clf.intercept_[0]))
    assert best is not None
    head = Head(category, best[1].astype(np.float32), best[2], dev_ap=best[0])
    head.platt = _platt(x_dev[dmask] @ head.coef + head.bias, dy[dmask]) if dy[dmask].sum() else (1.0, 0.0)
    return head


def _platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """1-D logistic fit of dev targets on dev logits: the scores become probabilities."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1.0).fit(z.reshape(-1, 1), y)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def train(train_rows: Rows, dev_rows: Rows, epochs: int, seed: int, say: Callable[[str], None] = print,
          categories: Iterable[str] = CATEGORIES) -> list[Head]:
    started = time.monotonic()
    say(f"features for {len(train_rows)} training and {len(dev_rows)} dev texts ...")
    x, x_dev = featurize(train_rows.texts, normalized=True), featurize(dev_rows.texts, normalized=True)
    heads = [_fit_head(c, x, train_rows, x_dev, dev_rows, epochs, seed, say) for c in categories]
    say(f"trained {len(heads)} heads in {time.monotonic() - started:.0f}s")
    return heads


# dev precision each severity's threshold must reach; review at 0.85 gave the best dev F1 that still
# stops <= 0.5% of benign prompts (0.80: 0.54%)
TARGETS = {"medium": 0.85, "high": 0.97}
MIN_POSITIVES = {"medium": 5, "high": 25}  # dev positives below which a level is not chosen (too noisy)
# where a missed positive is the worst mistake, and dev has too few positives to say where unseen ones lie,
# the threshold goes as low as the target precision allows (sexual/minors: 9 dev positives; halfway to the
# next score, 0.315, lost 2 of 21 test positives that 0.073 found)
RECALL_FIRST = frozenset({"sexual/minors"})


def dev_thresholds(heads: list[Head], dev: Rows, probabilities: np.ndarray) -> dict[str, dict[str, float]]:
    """Per category and severity, the dev threshold with the most recall at the target precision (see
    ``threshold_for``); a category with too few dev positives gets none."""
    from pipeline.owner.text_eval import threshold_for

    out: dict[str, dict[str, float]] = {}
    for i, h in enumerate(heads):
        mask, y = dev.target(h.category)
        levels = {lvl: t for lvl, target in TARGETS.items()
                  if (t := threshold_for(y[mask], probabilities[mask, i], target, MIN_POSITIVES[lvl],
                                         h.category in RECALL_FIRST)) is not None}
        if "medium" in levels and "high" in levels and levels["high"] < levels["medium"]:
            levels["high"] = levels["medium"]
        if levels:
            out[h.category] = {k: round(min(v, 0.999), 3) for k, v in levels.items()}
    return out


def write_thresholds(policy: Path, thresholds: dict[str, dict[str, float]]) -> int:
    """Put ``text_model`` thresholds into each category of a policy YAML in place (comments and layout
    kept, except those under an old ``text_model`` line, which spoke of it; a category without one loses
    any it had). Returns how many categories got one."""
    import re

    lines, dropping = [], False
    for ln in policy.read_text().splitlines(keepends=True):  # the old line goes, with the comments under it
        dropping = ln.startswith("      text_model: {") or (dropping and ln.startswith("      # "))
        if not dropping:
            lines.append(ln)
    out, category, written = [], None, 0
    for line in lines:
        if m := re.match(r"^  ([a-z/-]+):\s*$", line):
            category = m.group(1)
        out.append(line)
        if re.match(r"^    thresholds:\s*$", line) and category in thresholds:
            body = ", ".join(f"{k}: {v:.3f}" for k, v in thresholds[category].items())
            rule = ", recall first (train_text.RECALL_FIRST)" if category in RECALL_FIRST else ""
            out.append(f"      text_model: {{{body}}}  # genguard models train-text: dev precision >= "
                       f"{' / '.join(f'{TARGETS[k]:.2f}' for k in thresholds[category])}{rule}\n")
            written += 1
    policy.write_text("".join(out))
    return written


def reliability(heads: list[Head], dev: Rows, probabilities: np.ndarray, out: Path) -> Path:
    """Calibration curves per category on dev: mean predicted probability against the observed rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.owner.text_eval import plot_reliability

    fig, axes = plt.subplots(3, 4, figsize=(14, 10))
    for ax, (i, h) in zip(axes.ravel(), enumerate(heads), strict=False):
        mask, y = dev.target(h.category)
        plot_reliability(ax, probabilities[mask, i], y[mask] == 1, "text_model")
        ax.set_title(f"{h.category} ({int(y[mask].sum())} positives)", fontsize=9)
    axes.ravel()[-1].axis("off")
    fig.suptitle("text_model reliability on dev: predicted probability (x) vs observed rate (y)")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def version_of(heads: list[Head], extra: dict[str, np.ndarray] | None = None) -> str:
    """A content hash of the weights (and the ``extra`` arrays): the version every verdict records."""
    digest = hashlib.sha256()
    for h in heads:
        digest.update(h.category.encode() + h.coef.tobytes() + np.float32(h.bias).tobytes())
    for name, array in sorted((extra or {}).items()):
        digest.update(name.encode() + np.ascontiguousarray(array, np.float32).tobytes())
    return digest.hexdigest()[:12]


def save(heads: list[Head], out: Path, version: str, card: dict, extra: dict[str, np.ndarray] | None = None) -> Path:
    """Sparse float16 n-gram weights (|w| < 1e-4 dropped), biases, Platt terms, ``extra`` arrays (the
    MiniLM heads and stacker) and meta.json."""
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "weights.npz", **pack(np.stack([h.coef for h in heads], axis=1), drop=1e-4),
                        bias=np.array([h.bias for h in heads], np.float32),
                        platt_a=np.array([h.platt[0] for h in heads], np.float32),
                        platt_b=np.array([h.platt[1] for h in heads], np.float32), **(extra or {}))
    (out / "meta.json").write_text(json.dumps({"version": version, "categories": [h.category for h in heads],
                                               **card}, indent=2) + "\n")
    return out
