"""Faces judged against the consent registry: a pure function of (faces seen, people enrolled, policy).

Each face is matched to the nearest enrolled person within the policy's ``faces.max_distance``. A
person matched without a grant for this creator fires the likeness category at critical (blocked,
naming the person id, never a name); any matched person, granted or not, fires the helper category
that combinations use (sexual content of a real person is blocked even with a grant).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from classifiers.base import FaceEncoder
from pipeline.records import FaceSeen, FrameSample, VideoObservation, decode_vector, encode_vector
from pipeline.store.likeness import Enrolled
from policies.engine import CompiledPolicy, Match, Signals
from policies.schema import Faces


def observe_faces(finder: FaceEncoder, frames: Sequence[FrameSample], images: Sequence[np.ndarray],
                  embed: bool) -> None:
    """Every face of every frame onto the frame samples (the frame stage's part); with ``embed``, each
    with its identity embedding (the caller embeds only where the tenant has anyone enrolled)."""
    for sample, found in zip(frames, finder.faces(images, embed), strict=True):
        sample.faces = [FaceSeen(box=f.box, score=f.score,
                                 embedding=None if f.embedding is None else encode_vector(f.embedding))
                        for f in found]


def nearest(embedding: np.ndarray, enrolled: Sequence[Enrolled]) -> tuple[Enrolled, float] | None:
    """The enrolled person closest to ``embedding`` (by their nearest enrolment photo), and the distance."""
    best: tuple[Enrolled, float] | None = None
    for person in enrolled:
        d = float(np.linalg.norm(person.embeddings - embedding, axis=1).min())
        if best is None or d < best[1]:
            best = (person, d)
    return best


def judge_faces(frames: Sequence[FrameSample], enrolled: Sequence[Enrolled], spec: Faces, creator: str | None,
                sig: Signals, used: dict[int, list[str]], where: str = "frame at {t:.1f}s") -> list[FrameSample]:
    """Add the likeness matches to ``sig`` and the reasons to ``used`` (frame index -> why); return
    the frames with each face's match filled in and its embedding dropped (decisions keep no faces)."""
    judged: list[FrameSample] = []
    seen: dict[str, list[tuple[float, float]]] = {}  # person -> (t, distance) per matching face
    if enrolled and any(face.embedding is None for frame in frames for face in frame.faces):
        sig.errors["faces"] = "faces were seen without embeddings (nobody was enrolled then) but people are now"
    for i, frame in enumerate(frames):
        faces = []
        for face in frame.faces:
            hit = nearest(decode_vector(face.embedding), enrolled) if face.embedding and enrolled else None
            if hit is None or hit[1] > spec.max_distance:
                faces.append(face.model_copy(update={"embedding": None}))
                continue
            person, distance = hit
            faces.append(face.model_copy(update={"embedding": None, "person_id": person.person_id,
                                                 "distance": round(distance, 3), "granted": person.granted}))
            seen.setdefault(person.person_id, []).append((frame.t, distance))
            consent = "granted" if person.granted else "no grant"
            used.setdefault(i, []).append(f"{spec.category} {person.person_id} d={distance:.2f} {consent}")
        judged.append(frame.model_copy(update={"faces": faces}))
    granted = {p.person_id for p in enrolled if p.granted}
    for person_id, hits in seen.items():
        closest = min(d for _, d in hits)
        at = ", ".join(where.format(t=t) for t, _ in hits[:6])
        detail = f"{at} match person {person_id} (distance {closest:.2f})"
        sig.matches.setdefault(spec.matched, []).append(
            Match(kind="face", id=person_id, severity="medium", score=round(1 - closest, 4), detail=detail))
        if person_id not in granted:
            who = f"creator {creator}" if creator else "an unnamed creator"
            sig.matches.setdefault(spec.category, []).append(
                Match(kind="face", id=person_id, severity="critical", score=round(1 - closest, 4),
                      detail=f"{detail}; no grant for {who}"))
    return judged


def face_signals(obs: VideoObservation, policy: CompiledPolicy, sig: Signals, used: dict[int, list[str]],
                 enrolled: Sequence[Enrolled], creator: str | None) -> list[FrameSample]:
    """The faces of every frame judged against the tenant's consent registry (when the policy
    judges faces); the frames come back with their matches and without embeddings."""
    if "faces" in obs.models and "faces" not in sig.errors:
        sig.scores["faces"] = {}
    spec = policy.policy.faces
    if spec and enrolled and obs.faces_mode in ("skip", "detect"):  # someone enrolled since: fail closed
        sig.errors["faces"] = f"faces were not embedded ({obs.faces_mode}: nobody was enrolled then)"
    return judge_faces(obs.frames, enrolled if spec else (), spec or Faces(), creator, sig, used)
