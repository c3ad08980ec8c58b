"""Offensive-language score from the scikit-learn model shipped by ``alt-profanity-check``.

The shipped model is a CalibratedClassifierCV over linear SVCs with sigmoid calibration.
sklearn's generic ``predict_proba`` spends ~3 ms per call on validation and dispatch, so the
folds are flattened here into one weight matrix; a test checks it equals sklearn's output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sklearn


class ProfanityClassifier:
    name = "profanity"
    outputs = ("*",)

    def __init__(self) -> None:
        from importlib.metadata import version

        from profanity_check import profanity_check as pc

        self.version = f"alt-profanity-check-{version('alt-profanity-check')}"
        self.vectorizer = pc.vectorizer
        self.model = pc.model
        folds = self.model.calibrated_classifiers_
        self.weights = np.stack([f.estimator.coef_.ravel() for f in folds], axis=1)  # (features, folds)
        self.bias = np.array([f.estimator.intercept_[0] for f in folds])
        self.a = np.array([f.calibrators[0].a_ for f in folds])
        self.b = np.array([f.calibrators[0].b_ for f in folds])

    def score(self, batch: Sequence[str]) -> np.ndarray:
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            features = self.vectorizer.transform(list(batch))
        decision = features @ self.weights + self.bias
        probs = 1.0 / (1.0 + np.exp(self.a * decision + self.b))
        return probs.mean(axis=1, keepdims=True)
