"""The one interface every classifier implements, so a new model is one new file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


class ModelMissingError(RuntimeError):
    """A model's files are not where configuration says; the message names the path."""


@runtime_checkable
class Classifier(Protocol):
    """Scores a batch of inputs.

    ``name`` is the signal name policies refer to, ``version`` is recorded in every verdict,
    and ``outputs`` names the columns of the array ``score`` returns (shape ``(len(batch),
    len(outputs))``, values in [0, 1]).
    """

    name: str
    version: str
    outputs: Sequence[str]

    def score(self, batch: Sequence[Any]) -> np.ndarray: ...
