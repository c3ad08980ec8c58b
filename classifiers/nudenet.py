"""NudeNet's region detector (``pip install genguard[nudenet]``), an opt-in second sexual-content
frame signal. Its wheel carries AGPL-3.0 licence text: check it fits your deployment.

It finds exposed body parts with a box and a score per part; it also fires on things that are
not people (0.80 BUTTOCKS_EXPOSED on a colour wheel was seen), so each class has its own
threshold and the frame's score is the highest detection that clears its class threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import version
from typing import Any

import numpy as np

from classifiers.base import ModelMissingError

# Exposed classes only; covered parts and faces are not sexual content.
THRESHOLDS: Mapping[str, float] = {
    "FEMALE_GENITALIA_EXPOSED": 0.50,
    "MALE_GENITALIA_EXPOSED": 0.50,
    "ANUS_EXPOSED": 0.50,
    "FEMALE_BREAST_EXPOSED": 0.60,
    "BUTTOCKS_EXPOSED": 0.85,
}


class NudeNetClassifier:
    name = "nudenet"
    outputs = ("*",)

    def __init__(self, thresholds: Mapping[str, float] = THRESHOLDS) -> None:
        try:
            from nudenet import NudeDetector
        except ImportError as e:
            raise ModelMissingError("NudeNet is not installed: pip install 'genguard[nudenet]'") from e
        self.detector = NudeDetector()
        self.thresholds = dict(thresholds)
        self.version = f"nudenet-{version('nudenet')}-320n"

    def detections(self, image: np.ndarray) -> list[dict[str, Any]]:
        """NudeNet's own detections; it reads arrays as RGBA (it converts RGBA to BGR itself)."""
        rgba = np.concatenate([image, np.full((*image.shape[:2], 1), 255, np.uint8)], axis=2)
        return self.detector.detect(rgba)

    def score(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(batch), 1), dtype=np.float32)
        for i, image in enumerate(batch):
            hits = [d["score"] for d in self.detections(image) if d["score"] >= self.thresholds.get(d["class"], 2.0)]
            out[i, 0] = max(hits, default=0.0)
        return out
