"""Model-backed and rule-based scorers, each behind the small :class:`Classifier` protocol."""

from classifiers.base import Classifier, ModelMissingError

__all__ = ["Classifier", "ModelMissingError"]
