"""Faces: dlib's HOG frontal detector, its 5-point landmarks and its ResNet identity descriptor.

Why these files: the detector is part of the dlib library (Boost Software Licence); the 5-point
landmark model and the ResNet descriptor are Davis King's, released into the public domain and
shipped by ``face-recognition-models`` (CC0). That package also carries the 68-point landmark
model, trained on iBUG 300-W, whose licence excludes commercial use: genguard never loads it, and
the Docker image deletes it. The descriptor maps a face to 128 numbers; two photos of the same
person lie within about 0.5 of each other (measured on the test fixtures, see the README).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.base import Face, ModelMissingError

UPSAMPLE = 1  # the HOG window is 80 px; one upsampling finds faces down to about 40 px
MIN_SCORE = 0.25  # above dlib's default 0.0: drops weak detections (0.12 on a shoulder patch in the astronaut photo)


def _model_files() -> tuple[Path, Path]:
    """The two model files, found without importing the package (its ``__init__`` needs pkg_resources,
    which current setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissingError("face-recognition-models is not installed (it ships dlib's face models)")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    files = models / "shape_predictor_5_face_landmarks.dat", models / "dlib_face_recognition_resnet_model_v1.dat"
    for f in files:
        if not f.is_file():
            raise ModelMissingError(f"face model missing: {f}")
    return files


class DlibFaces:
    """Detect faces and describe each with a 128-d identity embedding (unit scale: Euclidean distance)."""

    name = "faces"

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as e:
            raise ModelMissingError("dlib is not installed (pip install dlib-bin)") from e
        landmarks, descriptor = _model_files()
        # one detector per core: a dlib detector is not thread-safe (two threads in one crash the process)
        self.detectors = [dlib.get_frontal_face_detector() for _ in range(os.cpu_count() or 1)]
        self.lock = threading.Lock()  # callers in several threads (API image checks) take turns
        self.landmarks = dlib.shape_predictor(str(landmarks))
        self.descriptor = dlib.face_recognition_model_v1(str(descriptor))
        try:
            models = version("face-recognition-models")
        except PackageNotFoundError:
            models = "unknown"
        self.version = f"dlib-{dlib.__version__}+hog+resnet_v1@face-recognition-models-{models}"

    def faces(self, images: Sequence[np.ndarray], embed: bool = True) -> list[list[Face]]:
        """RGB uint8 images -> the faces in each: box (left, top, right, bottom) in pixels, score and
        (with ``embed``) embedding. Detection runs on every core, one detector each (dlib releases the
        GIL there); the descriptor does not gain from threads, so it runs in this one."""
        pictures = [np.ascontiguousarray(image) for image in images]
        shares = [(d, pictures[k::len(self.detectors)]) for k, d in enumerate(self.detectors)]
        with self.lock, ThreadPoolExecutor(max_workers=len(shares)) as pool:
            done = list(pool.map(lambda share: [share[0].run(p, UPSAMPLE, MIN_SCORE)[:2] for p in share[1]], shares))
            detected = [done[i % len(shares)][i // len(shares)] for i in range(len(pictures))]
            return self._describe(pictures, detected, embed)

    def _describe(self, pictures: list[np.ndarray], detected: list[tuple[Any, Any]], embed: bool) -> list[list[Face]]:
        import dlib

        found: list[list[Face]] = []
        for image, (rects, scores) in zip(pictures, detected, strict=True):
            vectors: list[np.ndarray | None] = [None] * len(rects)
            if embed and len(rects):
                shapes = dlib.full_object_detections([self.landmarks(image, r) for r in rects])
                vectors = [np.asarray(v, dtype=np.float32) for v in self.descriptor.compute_face_descriptor(image,
                                                                                                            shapes)]
            h, w = image.shape[:2]
            found.append([
                Face(box=(max(0, r.left()), max(0, r.top()), min(w, r.right()), min(h, r.bottom())),
                     score=round(float(s), 3), embedding=v)
                for r, s, v in zip(rects, scores, vectors, strict=True)])
        return found
