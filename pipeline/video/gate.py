"""The video gate: a clip (and its prompt) in, a decision out.

``observe`` runs every model once over the sampled frames, the audio and the prompt, and keeps
what they saw; ``judge`` turns that into a decision under one policy: per-frame scores are
aggregated over time per category, known-content hashes are looked up, transcript segments go
through the same text checks as prompts, and one evaluation spans all of it. A model that is
missing or raises is recorded as a failed signal, which the policy turns into review or block.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from classifiers import registry
from classifiers.base import Classifier, FaceEncoder, ModelMissingError, Transcriber, VectorCache
from classifiers.clip import ClipModel, ClipZeroShot
from classifiers.pdq import MIN_QUALITY, pdq
from pipeline.media import Frame, Media, decode, limits_of
from pipeline.policy_source import PolicySource
from pipeline.records import (
    FaceMode,
    FrameSample,
    Spoken,
    VideoDecision,
    VideoObservation,
    decode_vector,
    encode_vector,
)
from pipeline.settings import Settings
from pipeline.stages import VIDEO_MODELS
from pipeline.store.likeness import Enrolled
from pipeline.video.likeness import face_signals, observe_faces
from policies import engine
from policies.engine import CompiledPolicy, Match, Signals
from policies.temporal import aggregate

if TYPE_CHECKING:
    from pipeline.prompt.gate import PromptGate
    from pipeline.store.hashes import LiveLists

log = logging.getLogger("genguard.video")
T = TypeVar("T")
PARTS = VIDEO_MODELS  # what a role can load: see pipeline/stages.py
JUDGE_SIDE = ("clip", "hash")  # models the decision itself needs (CLIP's text tower, the hash index)


def _load(what: str, errors: dict[str, str], make: Callable[[], T]) -> T | None:
    """Load a model; a missing one is recorded (and fails closed at decision time), not fatal."""
    try:
        return make()
    except (ModelMissingError, OSError, RuntimeError) as e:
        log.warning("%s unavailable: %s", what, e)
        errors[what] = str(e)
        return None


def transcriber(settings: Settings) -> Transcriber:
    """The configured Whisper backend over the same weights (GENGUARD_WHISPER_BACKEND)."""
    from classifiers.whisper import OPENAI_CHECKPOINT, FasterWhisperTranscriber, OpenAIWhisperTranscriber

    if settings.whisper_backend == "openai-whisper":
        return OpenAIWhisperTranscriber(settings.whisper_model / OPENAI_CHECKPOINT)
    return FasterWhisperTranscriber(settings.whisper_model)


def hash_index(settings: Settings) -> LiveLists:
    from pipeline.store.hashes import HashStore, LiveLists

    return LiveLists(HashStore(settings.hashes_dir))


class VideoGate:
    def __init__(self, settings: Settings, policies: PolicySource, prompts: PromptGate | None,
                 detectors: Sequence[Classifier] = (), clip: ClipModel | None = None,
                 transcriber: Transcriber | None = None, hashes: LiveLists | None = None,
                 cache: VectorCache | None = None, load_errors: dict[str, str] | None = None,
                 faces: FaceEncoder | None = None) -> None:
        self.settings, self.policies, self.prompts = settings, policies, prompts
        self.detectors, self.clip, self.transcriber, self.hashes = tuple(detectors), clip, transcriber, hashes
        self.faces = faces
        self.cache, self.load_errors = cache, load_errors or {}
        self._zero_shot: dict[str, ClipZeroShot] = {}

    @classmethod
    def from_settings(cls, settings: Settings, prompts: PromptGate | None, cache: VectorCache | None = None,
                      parts: frozenset[str] = PARTS, policies: PolicySource | None = None) -> VideoGate:
        """The models of ``parts``: frames (registered frame models, the face finder, CLIP's image
        tower), speech (Whisper), judge (CLIP's text tower and the hash index). A role loads only its parts."""
        errors: dict[str, str] = {}
        detectors = registry.load("frames", errors) if "frames" in parts else []
        faces = next(iter(registry.load("faces", errors)), None) if "frames" in parts else None
        clip = (_load("clip", errors, lambda: ClipModel(settings.clip_model, precision=settings.clip_precision))
                if parts & {"frames", "judge"} else None)
        whisper = _load("transcript", errors, lambda: transcriber(settings)) if "speech" in parts else None
        hashes = _load("hash", errors, lambda: hash_index(settings)) if "judge" in parts else None
        policies = policies or (prompts.policies if prompts is not None else PolicySource(settings))
        return cls(settings, policies, prompts, detectors, clip, whisper, hashes, cache, errors, faces)

    @property
    def text(self) -> PromptGate:
        if self.prompts is None:
            raise RuntimeError("this role has no text models loaded")
        return self.prompts

    # -- observe: models run once, nothing here depends on the policy -------------------------
    def _stage(self, obs: VideoObservation, name: str, fn: Callable[[], None]) -> None:
        started = time.perf_counter()
        try:
            fn()
        except Exception as e:  # fail closed: recorded, the policy decides
            log.exception("%s stage failed", name)
            obs.errors[name] = f"{type(e).__name__}: {e}"
        obs.timings_ms[name] = round((time.perf_counter() - started) * 1000, 1)

    def observe_frames(self, frames: list[Frame], probe: dict[str, Any], notes: list[str],
                       faces: FaceMode = "embed") -> VideoObservation:
        """The frame stage: PDQ hashes, the frame detectors (open_nsfw, NudeNet), faces (identity
        ``faces``: skipped where the tenant has nobody enrolled, found without identity embeddings for a
        reference image then, found and embedded where anyone is), CLIP embeddings."""
        images = [f.image for f in frames]
        obs = VideoObservation(probe=probe, notes=notes,
                               frames=[FrameSample(t=round(f.t, 3), reasons=sorted(f.reasons)) for f in frames])
        obs.errors.update({k: v for k, v in self.load_errors.items() if k not in ("transcript", "hash")})

        def hashes() -> None:
            for sample, image in zip(obs.frames, images, strict=True):
                sample.pdq, sample.pdq_quality = pdq(image)

        def detector(d: Classifier) -> Callable[[], None]:
            def run() -> None:
                obs.detectors[d.name] = [round(float(x), 5) for x in d.score(images)[:, 0]]
                obs.models[d.name] = d.version
            return run

        def find_faces() -> None:
            if self.faces is not None:
                if faces != "skip":
                    observe_faces(self.faces, obs.frames, images, faces == "embed")
                obs.models["faces"], obs.faces_mode = self.faces.version, faces

        def clip() -> None:
            if self.clip is not None:
                obs.clip = [encode_vector(e) for e in self.clip.embed_images(images)]
                obs.models["clip"] = self.clip.version

        self._stage(obs, "hash", hashes)
        for d in self.detectors:
            self._stage(obs, d.name, detector(d))
        self._stage(obs, "faces", find_faces)
        self._stage(obs, "clip", clip)
        return obs

    def observe_audio(self, audio: np.ndarray | None) -> VideoObservation:
        """The audio stage: Whisper with VAD, then each segment observed like a prompt."""
        obs = VideoObservation(probe={}, frames=[])
        if "transcript" in self.load_errors:
            obs.errors["transcript"] = self.load_errors["transcript"]

        def speech() -> None:
            if self.transcriber is None:
                return
            obs.models["transcript"] = self.transcriber.version
            if audio is None or not len(audio):
                obs.transcript = []
                return
            transcript = self.transcriber.transcribe(audio)
            obs.language = transcript.language
            segments = transcript.segments  # all checked in one batch, each as a prompt alone would be
            seen = self.text.observe_many([s.text for s in segments])
            obs.transcript = [Spoken(start=s.start, end=s.end, text=s.text, observation=o)
                              for s, o in zip(segments, seen, strict=True)]

        self._stage(obs, "transcript", speech)
        return obs

    def combine(self, frames: VideoObservation, audio: VideoObservation, prompt: str | None) -> VideoObservation:
        obs = frames.model_copy(deep=True)
        obs.language, obs.transcript = audio.language, audio.transcript
        obs.errors.update(audio.errors)
        obs.models.update(audio.models)
        obs.timings_ms.update(audio.timings_ms)
        if prompt:
            obs.prompt = self.text.observe(prompt)
        for text_obs in [obs.prompt, *(s.observation for s in obs.transcript or [])]:
            if text_obs is not None:
                obs.models.update(text_obs.models)
        return obs

    def observe(self, media: Media, prompt: str | None, faces: FaceMode = "embed") -> VideoObservation:
        frames = self.observe_frames(media.frames, dataclasses.asdict(media.probe), list(media.notes), faces)
        return self.combine(frames, self.observe_audio(media.audio), prompt)

    # -- judge: pure policy work over an observation ------------------------------------------
    def zero_shot(self, policy: CompiledPolicy) -> ClipZeroShot | None:
        labels = {c: (cat.clip.prompts, cat.clip.contrast) for c, cat in policy.policy.categories.items() if cat.clip}
        if self.clip is None or not labels:
            return None
        if policy.version not in self._zero_shot:
            self._zero_shot[policy.version] = ClipZeroShot(self.clip, labels, self.cache)
        return self._zero_shot[policy.version]

    def frame_signals(self, obs: VideoObservation, policy: CompiledPolicy) -> tuple[Signals, dict[int, list[str]]]:
        """Frame signals for ``policy``, and for each frame that drove a category, why."""
        sig = Signals(modality="frames", environment=self.settings.environment)
        used: dict[int, list[str]] = {}
        per_frame: dict[str, dict[str, np.ndarray]] = {}
        stage_error = obs.errors.get("frames")  # the whole frame stage failed (or timed out)
        for name, spec in policy.policy.signals.items():
            judge_side = self.load_errors.get(name) if name in JUDGE_SIDE else None
            if spec.modality == "frames" and (problem := obs.errors.get(name) or stage_error or judge_side):
                sig.errors[name] = problem
        per_frame.update({name: {"*": np.array(scores)} for name, scores in obs.detectors.items()})
        zs = self.zero_shot(policy)
        if obs.clip is not None and zs is not None:
            scores = zs.score_embeddings(np.stack([decode_vector(e) for e in obs.clip]))
            per_frame["clip"] = {c: scores[:, i] for i, c in enumerate(zs.outputs)}
        elif obs.clip is not None and any(cat.clip for cat in policy.policy.categories.values()):
            sig.errors.setdefault("clip", "frames were embedded but CLIP's text tower is not loaded here")
        elif obs.clip is not None:
            sig.scores["clip"] = {}
        for signal, columns in per_frame.items():
            sig.scores[signal], sig.evidence[signal] = {}, {}
            for cid, cat in policy.policy.categories.items():
                if signal not in cat.thresholds or (column := columns.get(cid, columns.get("*"))) is None:
                    continue
                score, frames = aggregate(column, cat.temporal, cat.zero_tolerance)
                sig.scores[signal][cid] = score
                sig.evidence[signal][cid] = "frames at " + ", ".join(f"{obs.frames[i].t:.1f}s" for i in frames)
                if cat.thresholds[signal].severity_for(score) is not None:
                    for i in frames:
                        used.setdefault(i, []).append(f"{cid} {signal} {column[i]:.2f}")
        if self.hashes is not None and "hash" not in obs.errors:
            sig.scores["hash"] = {}
            lists = policy.policy.hash_lists
            hashed = [(i, f.pdq) for i, f in enumerate(obs.frames) if f.pdq and (f.pdq_quality or 0) >= MIN_QUALITY]
            hits = self.hashes.search([h for _, h in hashed], {n: hl.max_distance for n, hl in lists.items()})
            allowed = {hit.query for hit in hits if lists[hit.list_name].allow}
            for hit in hits:
                spec, frame = lists[hit.list_name], hashed[hit.query][0]
                if hit.query in allowed or spec.category is None:
                    continue
                used.setdefault(frame, []).append(f"{spec.category} hash {hit.list_name}")
                sig.matches.setdefault(spec.category, []).append(Match(
                    kind="hash", id=hit.list_name, severity=spec.severity, score=1.0,
                    detail=f"frame at {obs.frames[frame].t:.1f}s matches {hit.label} (distance {hit.distance})"))
        return sig, used

    def judge(self, obs: VideoObservation, policy: CompiledPolicy, job_id: str, tenant: str,
              enrolled: Sequence[Enrolled] = (), creator: str | None = None) -> VideoDecision:
        """One decision over frames, faces, transcript and prompt. ``enrolled`` is the tenant's consent
        registry as the decide stage read it for this job, ``creator`` who asked for the video."""
        frames, used = self.frame_signals(obs, policy)
        judged = face_signals(obs, policy, frames, used, enrolled, creator)
        audio = Signals(modality="audio", environment=self.settings.environment)
        if "transcript" in obs.errors or obs.transcript is None:
            audio.errors["transcript"] = obs.errors.get("transcript", "not transcribed")
        else:
            audio.scores["transcript"] = {}
        parts = [("frames", frames), ("audio", audio)]
        if obs.prompt is not None:
            parts.append(("prompt", self.text.signals_for(obs.prompt, policy)))
        spans: dict[str, tuple[float, float]] = {}
        for seg in obs.transcript or []:
            source = f"transcript {seg.start:.1f}-{seg.end:.1f}s"
            spans[source] = (seg.start, seg.end)
            parts.append((source, self.text.signals_for(seg.observation, policy)))
        evaluation = engine.evaluate_many(policy, parts)
        for cat in evaluation.categories:  # frames on screen while a flagged sentence was spoken
            for source in {m.source for m in cat.matches if m.source in spans}:
                start, end = spans[source]
                for i, f in enumerate(obs.frames):
                    if start <= f.t <= end:
                        used.setdefault(i, []).append(f"{cat.category} speech {start:.1f}-{end:.1f}s")
        spoken = [{"start": s.start, "end": s.end, "text": s.text} for s in obs.transcript or []]
        return VideoDecision(**evaluation.model_dump(), job_id=job_id, tenant=tenant, model_versions=obs.models,
                             evidence={i: used[i] for i in sorted(used)}, frames=judged, language=obs.language,
                             transcript=spoken, probe=obs.probe, timings_ms=obs.timings_ms)

    def run(self, path: Path, prompt: str | None, tenant: str, job_id: str, enrolled: Sequence[Enrolled] = (),
            creator: str | None = None) -> tuple[VideoDecision, Media, VideoObservation]:
        """Decode, observe and judge one file in-process (the CLI's path; the workers split it in stages)."""
        started = time.perf_counter()
        media = decode(path, limits_of(self.settings))
        decode_ms = round((time.perf_counter() - started) * 1000, 1)
        obs = self.observe(media, prompt, faces="embed" if enrolled else "skip")
        obs.timings_ms = {"decode": decode_ms, **obs.timings_ms}
        started = time.perf_counter()
        decision = self.judge(obs, self.policies.for_tenant(tenant), job_id, tenant, enrolled, creator)
        decision.timings_ms["decide"] = round((time.perf_counter() - started) * 1000, 1)
        return decision, media, obs
