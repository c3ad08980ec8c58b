"""Offensive-language score from the scikit-learn model shipped by ``alt-profanity-check``.

The shipped model is a TF-IDF (unigrams, l2) vectoriser feeding a CalibratedClassifierCV of
linear SVCs with sigmoid calibration. sklearn's generic ``transform``/``predict_proba`` spend
~3 ms per call on validation and dispatch, so both are flattened here into one weight matrix
over the vocabulary; a test checks the result equals sklearn's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from importlib.metadata import version

import numpy as np


class ProfanityClassifier:
    name = "profanity"
    outputs = ("*",)

    def __init__(self) -> None:
        from profanity_check import profanity_check as pc

        self.version = f"alt-profanity-check-{version('alt-profanity-check')}"
        self.vectorizer, self.model = pc.vectorizer, pc.model
        params = self.vectorizer.get_params()
        expected = {"ngram_range": (1, 1), "norm": "l2", "use_idf": True, "sublinear_tf": False, "binary": False}
        if drift := {k: params[k] for k, v in expected.items() if params[k] != v}:
            raise RuntimeError(f"alt-profanity-check vectoriser changed ({drift}); the fast path does not apply")
        self.analyze = self.vectorizer.build_analyzer()
        self.vocabulary: dict[str, int] = self.vectorizer.vocabulary_
        self.idf = self.vectorizer.idf_
        folds = self.model.calibrated_classifiers_
        self.weights = np.stack([f.estimator.coef_.ravel() for f in folds], axis=1)  # (vocabulary, folds)
        self.bias = np.array([f.estimator.intercept_[0] for f in folds])
        self.a = np.array([f.calibrators[0].a_ for f in folds])
        self.b = np.array([f.calibrators[0].b_ for f in folds])

    def _decision(self, text: str) -> np.ndarray:
        counts = Counter(i for tok in self.analyze(text) if (i := self.vocabulary.get(tok)) is not None)
        if not counts:
            return self.bias
        idx = np.fromiter(counts, dtype=np.int64)
        tfidf = np.fromiter(counts.values(), dtype=np.float64) * self.idf[idx]
        return tfidf @ self.weights[idx] / np.linalg.norm(tfidf) + self.bias

    def score(self, batch: Sequence[str]) -> np.ndarray:
        decision = np.stack([self._decision(t) for t in batch])
        probs = 1.0 / (1.0 + np.exp(self.a * decision + self.b))
        return probs.mean(axis=1, keepdims=True)
