"""The small interfaces every model sits behind, so a new model is one new file plus one registry row.

``Classifier`` scores a batch (text or frames); ``FaceEncoder`` finds faces and describes who they
are; ``Transcriber`` turns audio into timed text; ``VectorCache`` keeps embeddings of policy phrases
between processes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


class ModelMissingError(RuntimeError):
    """A model's files are not where configuration says; the message names the path."""


def int8_weights(src: Path, dst: Path, ops: Sequence[str] | None = None) -> Path:
    """Dynamic int8 weights, one scale per output channel (``ops``: only these operator types), written
    at export. onnxruntime logs a line per tensor at INFO; the export keeps to its own progress lines."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level, root.level = root.level, max(root.level, logging.WARNING)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=list(ops) if ops else None)
    finally:
        root.setLevel(level)
    return dst


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


@dataclass(frozen=True, slots=True)
class Face:
    box: tuple[int, int, int, int]  # left, top, right, bottom in pixels of the image it was found in
    score: float  # the detector's confidence
    embedding: np.ndarray | None  # identity descriptor: faces of one person lie close together


@runtime_checkable
class FaceEncoder(Protocol):
    """Finds the faces in each image and, when asked, an identity embedding of each (matched against
    consent, not scored); embedding is most of the cost, and pointless where nobody is enrolled."""

    name: str
    version: str

    def faces(self, images: Sequence[np.ndarray], embed: bool = True) -> list[list[Face]]: ...


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class Transcript:
    language: str | None
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


class Transcriber(Protocol):
    name: str
    version: str

    def transcribe(self, audio: np.ndarray) -> Transcript: ...


class VectorCache(Protocol):
    def get(self, key: str) -> np.ndarray | None: ...
    def put(self, key: str, value: np.ndarray) -> None: ...
