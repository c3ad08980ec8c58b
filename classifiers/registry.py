"""Which scoring models exist: one row each. A new model is its file, its row here and its signal in
the policy YAML; the gates load the rows of their modality and never name a model themselves.

A row names its class as ``module:Class`` so that nothing is imported until a role loads it: the
media and release workers import no model code at all.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Literal

from classifiers.base import Classifier, FaceEncoder, ModelMissingError

log = logging.getLogger("genguard.classifiers")
Modality = Literal["text", "frames", "faces"]


@dataclass(frozen=True, slots=True)
class Entry:
    name: str  # the signal name policies declare under `signals:`
    modality: Modality  # text: prompts and transcript segments; frames: sampled video frames and images;
    # faces: face finders over the same frames and images, matched against the consent registry
    target: str  # "module:Class", constructed with no arguments; raises ModelMissingError when absent

    def load(self) -> Classifier | FaceEncoder:
        module, _, attr = self.target.partition(":")
        try:
            made = getattr(importlib.import_module(module), attr)()
        except ImportError as e:
            raise ModelMissingError(f"{self.name}: {e}") from e
        if made.name != self.name:
            raise RuntimeError(f"registry row {self.name} built a classifier named {made.name}")
        return made


REGISTRY: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    if entry.name in REGISTRY and REGISTRY[entry.name] != entry:
        raise ValueError(f"a classifier named {entry.name} is registered already")
    REGISTRY[entry.name] = entry
    return entry


def load(modality: Modality, errors: dict[str, str]) -> list[Any]:
    """Every registered model of ``modality``; one that cannot load is recorded in ``errors`` (its
    signal then fails closed, or is unscored where the policy marks it optional), never fatal."""
    loaded = []
    for entry in REGISTRY.values():
        if entry.modality != modality:
            continue
        try:
            loaded.append(entry.load())
        except (ModelMissingError, OSError, RuntimeError) as e:
            log.warning("%s unavailable: %s", entry.name, e)
            errors[entry.name] = str(e)
    return loaded


register(Entry("profanity", "text", "classifiers.profanity:ProfanityClassifier"))  # alt-profanity-check
register(Entry("text_model", "text", "classifiers.text_model:TextModel"))  # genguard's own, multilingual
register(Entry("nsfw", "frames", "classifiers.nsfw:OpenNsfwClassifier"))  # Yahoo open_nsfw, shipped ONNX
register(Entry("nudenet", "frames", "classifiers.nudenet:NudeNetClassifier"))  # the opt-in extra
register(Entry("faces", "faces", "classifiers.faces:DlibFaces"))  # dlib HOG + 5-point + ResNet (public domain)
