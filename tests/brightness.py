"""A test-only frame model: how bright each frame is. It exists to show that a new model is this
file, one registry row and one policy entry (tests/test_registry.py adds the other two)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Brightness:
    name = "brightness"
    version = "brightness-1"
    outputs = ("*",)

    def score(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        return np.array([[float(frame.mean()) / 255.0] for frame in batch], dtype=np.float32)
