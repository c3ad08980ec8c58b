"""Which language a prompt or transcript segment is in: hashed character 1-3-grams and one linear
layer over the corpus's 39 languages, trained with the text model (``genguard models train-text``)
and shipped beside it. A verdict names the language; the text model uses it to decide whether its
English-only MiniLM head may speak."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from classifiers.base import ModelMissingError
from classifiers.text_model import gathered, hashed, pack, unpack

FEATURES = 2**16
FILE = "language.npz"
# a text's language shows in its first few sentences; reading all of a 4,000-character prompt cost 16 ms
MAX_CHARS = 1000


@lru_cache(maxsize=1)
def vectorizer() -> object:
    """The vectorizer ``featurize`` reproduces (its analyzer is built once: this runs per prompt)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(analyzer="char_wb", ngram_range=(1, 3), n_features=FEATURES, alternate_sign=False,
                             norm="l2", lowercase=False)


@lru_cache(maxsize=1)
def _analyzer() -> object:
    return vectorizer().build_analyzer()  # type: ignore[attr-defined]


def featurize(texts: Sequence[str]) -> sp.csr_matrix:
    return hashed([t[:MAX_CHARS] for t in texts], _analyzer(), FEATURES)


class LanguageId:
    def __init__(self, model_dir: Path) -> None:
        path = model_dir / FILE
        if not path.exists():
            raise ModelMissingError(f"no language model at {path}: train one with `genguard models train-text`")
        w = np.load(path)
        self.languages: tuple[str, ...] = tuple(json.loads(str(w["languages"])))
        self.weights = unpack(w, (FEATURES, len(self.languages)))
        self.bias = w["bias"].astype(np.float32)

    def detect(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """(language, probability) per normalised text."""
        z = gathered(featurize(texts), self.weights) + self.bias
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        best = p.argmax(axis=1)
        return [(self.languages[b], float(p[i, b])) for i, b in enumerate(best)]


def train(texts: Sequence[str], langs: Sequence[str], seed: int, epochs: int = 3) -> dict[str, np.ndarray]:
    """A softmax layer over the languages seen in training; returns what ``save`` writes."""
    from sklearn.linear_model import SGDClassifier

    classes = sorted(set(langs))
    x, y = featurize(texts), np.array([classes.index(lang) for lang in langs])
    clf = SGDClassifier(loss="log_loss", alpha=1e-6, random_state=seed, max_iter=epochs, tol=None)
    clf.fit(x, y)
    return {**pack(clf.coef_.T, drop=1e-3), "bias": clf.intercept_.astype(np.float32),
            "languages": np.array(json.dumps(classes))}


def save(arrays: dict[str, np.ndarray], model_dir: Path) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(model_dir / FILE, **arrays)
    return model_dir / FILE
