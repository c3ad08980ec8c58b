"""The English half of the text model: logistic heads on frozen all-MiniLM-L6-v2 embeddings, and the
per-category stacker that weighs them against the n-gram logit (fitted on dev English rows).

Measured on the corpus's English rows (README, "Learned text classifier"): MiniLM heads beat the
n-gram heads for sexual, violence, self-harm and illicit content, n-grams win for hate and
extremism; stacking both beats either. MiniLM is English-only, so other languages keep the n-gram
head alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from classifiers.text_embedding import TextEncoder
from pipeline.owner.train_text import Rows, weights

MIN_STACK_POSITIVES = 3  # English dev positives a category needs for its own stacker


def english_embeddings(rows: Rows, encoder: TextEncoder, cache: Path,
                       say: Callable[[str], None] = print) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, embeddings) of the English rows, cached under ``cache`` by a hash of the texts."""
    idx = np.array([i for i, lang in enumerate(rows.lang) if lang == "en"], dtype=np.int64)
    texts = [rows.texts[i] for i in idx]
    path = cache / f"minilm-{hashlib.sha1(chr(10).join(texts).encode()).hexdigest()[:16]}.npy"
    if path.exists():
        return idx, np.load(path).astype(np.float32)
    say(f"embedding {len(texts)} English texts with MiniLM (cached in {cache}) ...")
    order = np.argsort([len(t) for t in texts])
    emb = np.zeros((len(texts), 384), np.float32)
    for k in range(0, len(order), 128):
        part = order[k:k + 128]
        emb[part] = encoder.embed([texts[j] for j in part])
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, emb.astype(np.float16))
    return idx, emb


def fit_heads(rows: Rows, idx: np.ndarray, emb: np.ndarray, categories: Sequence[str],
              say: Callable[[str], None] = print) -> tuple[np.ndarray, np.ndarray]:
    """One weighted logistic head per category over the English rows that label it."""
    from sklearn.linear_model import LogisticRegression

    coef, bias = np.zeros((emb.shape[1], len(categories)), np.float32), np.full(len(categories), -10.0, np.float32)
    for k, c in enumerate(categories):
        mask, y = rows.target(c)
        w = weights(rows, mask, y)
        weight_of = dict(zip(np.nonzero(mask)[0], w, strict=True))
        keep = np.array([mask[i] for i in idx])
        if y[idx][keep].sum() < MIN_STACK_POSITIVES:
            say(f"  {c:<20} MiniLM head: too few English positives, n-grams only")
            continue
        fit = LogisticRegression(C=4.0, max_iter=400).fit(emb[keep], y[idx][keep],
                                                         sample_weight=[weight_of[i] for i in idx[keep]])
        coef[:, k], bias[k] = fit.coef_[0], fit.intercept_[0]
        say(f"  {c:<20} MiniLM head on {int(keep.sum())} English rows ({int(y[idx][keep].sum())} positives)")
    return coef, bias


def fit_stacker(dev: Rows, idx: np.ndarray, emb: np.ndarray, z_ngram: np.ndarray, coef: np.ndarray,
                bias: np.ndarray, platt: np.ndarray, categories: Sequence[str]) -> np.ndarray:
    """(3, categories): weights of the n-gram logit, the MiniLM logit and a bias, per category, fitted on
    dev English rows; a category with too few of them keeps its n-gram Platt scaling."""
    from sklearn.linear_model import LogisticRegression

    stack = np.zeros((3, len(categories)), np.float32)
    stack[0], stack[2] = platt[0], platt[1]
    z_emb = emb @ coef + bias
    for k, c in enumerate(categories):
        mask, y = dev.target(c)
        keep = np.array([mask[i] for i in idx])
        yk = y[idx][keep]
        if yk.sum() < MIN_STACK_POSITIVES or yk.sum() == len(yk):
            continue
        fit = LogisticRegression(C=1.0).fit(np.c_[z_ngram[idx][keep, k], z_emb[keep, k]], yk)
        stack[:, k] = [fit.coef_[0, 0], fit.coef_[0, 1], fit.intercept_[0]]
    return stack
