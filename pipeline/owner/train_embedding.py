"""The embedding half of the text model: logistic heads on frozen sentence embeddings (USE multilingual
v3 for the languages it knows, all-MiniLM-L6-v2 for English), and the per-category stackers that weigh
their logits against the n-gram logit, fitted on dev.

Measured on the corpus's dev rows (MODEL_CARD.md): the USE head beats the n-gram head for sexual,
self-harm, extremism and political content and carries over across languages; n-grams win for hate
and harassment in the languages the corpus has many of; stacking beats either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pipeline.owner.train_text import Rows, weights

MIN_STACK_POSITIVES = 3  # dev positives a category needs for its own stacker
STACK_C = 0.1  # the stackers' inverse regularisation (see ``fit_stacker``)
STACK_CLIP = 16.0  # and the clip of the logits they weigh
Embed = Callable[[list[str]], np.ndarray]


def rows_where(rows: Rows, languages: Callable[[str], bool]) -> np.ndarray:
    return np.array([i for i, lang in enumerate(rows.lang) if languages(lang)], dtype=np.int64)


def embeddings(rows: Rows, idx: np.ndarray, name: str, embed: Embed, cache: Path,
               say: Callable[[str], None] = print) -> np.ndarray:
    """Embeddings of ``rows`` at ``idx`` by ``embed``, cached per text in ``cache/NAME.npz`` (keyed by a
    digest of the text), so that adding data embeds only the new texts."""
    texts = [rows.texts[i] for i in idx]
    keys = np.array([hashlib.sha1(t.encode()).digest() for t in texts], dtype="S20")
    path = cache / f"{name}.npz"
    known: dict[bytes, np.ndarray] = {}
    if path.exists():
        with np.load(path) as z:
            known = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
    missing = sorted({k: t for k, t in zip(keys.tolist(), texts, strict=True) if k not in known}.items(),
                     key=lambda kt: len(kt[1]))
    if missing:
        say(f"embedding {len(missing)} new texts with {name} (cached in {path}) ...")
        for start in range(0, len(missing), 256):
            part = missing[start:start + 256]
            known.update(zip((k for k, _ in part), embed([t for _, t in part]).astype(np.float16), strict=True))
            if start // 256 % 100 == 99:
                say(f"  {start + len(part)}/{len(missing)}")
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, keys=np.array(list(known), dtype="S20"), vectors=np.stack(list(known.values())))
    return np.stack([known[k] for k in keys.tolist()]).astype(np.float32) if len(keys) else np.zeros((0, 1), np.float32)


def fit_heads(rows: Rows, idx: np.ndarray, emb: np.ndarray, categories: Sequence[str], name: str,
              say: Callable[[str], None] = print) -> tuple[np.ndarray, np.ndarray]:
    """One weighted logistic head per category over the rows at ``idx`` that label it."""
    from sklearn.linear_model import LogisticRegression

    coef, bias = np.zeros((emb.shape[1], len(categories)), np.float32), np.full(len(categories), -10.0, np.float32)
    for k, c in enumerate(categories):
        mask, y = rows.target(c)
        w = weights(rows, mask, y)
        weight_of = dict(zip(np.nonzero(mask)[0], w, strict=True))
        keep = mask[idx]
        if y[idx][keep].sum() < MIN_STACK_POSITIVES:
            say(f"  {c:<20} {name} head: too few positives, left at zero")
            continue
        fit = LogisticRegression(C=4.0, max_iter=500).fit(emb[keep], y[idx][keep],
                                                         sample_weight=[weight_of[i] for i in idx[keep]])
        coef[:, k], bias[k] = fit.coef_[0], fit.intercept_[0]
        say(f"  {c:<20} {name} head on {int(keep.sum())} rows ({int(y[idx][keep].sum())} positives)")
    return coef, bias


def fit_stacker(dev: Rows, idx: np.ndarray, logits: Sequence[np.ndarray], fallback: np.ndarray,
                categories: Sequence[str]) -> np.ndarray:
    """(len(logits) + 2, categories): per category, the weight of each logit (each (len(idx), categories)),
    a bias and the clip applied to the logits first, fitted on the dev rows at ``idx``; a category with
    too few of them keeps ``fallback`` (the same shape: the stacker of fewer heads, with zero for the
    missing ones; Platt scaling is one with an infinite clip).

    The logits are clipped to +-STACK_CLIP and the fit is strongly regularised (STACK_C): the n-gram
    heads reach |logit| 300 on text like their training rows, and an unclipped stacker learned to
    distrust them everywhere. 5-fold CV on dev, mean AP over the categories: raw logits, C=1 .806
    (t2v rows .851); clipped at 16, C=0.1 .830 (.871)."""
    from sklearn.linear_model import LogisticRegression

    stack = fallback.astype(np.float32).copy()
    for k, c in enumerate(categories):
        mask, y = dev.target(c)
        keep = mask[idx]
        yk = y[idx][keep]
        if yk.sum() < MIN_STACK_POSITIVES or yk.sum() == len(yk):
            continue
        heads = np.clip(np.stack([z[keep, k] for z in logits], axis=1), -STACK_CLIP, STACK_CLIP)
        fit = LogisticRegression(C=STACK_C).fit(heads, yk)
        stack[:, k] = [*fit.coef_[0], fit.intercept_[0], STACK_CLIP]
    return stack
