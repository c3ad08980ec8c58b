"""Every record that crosses a topic, and every topic name, in one place."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr, field_validator

from classifiers.normalize import NormalizedText
from policies.engine import Evaluation
from policies.schema import Action


class Topics:
    PROMPTS = "genguard.prompts"
    VERDICTS = "genguard.verdicts"
    MEDIA = "genguard.media"  # a video was accepted: sample it
    FRAMES = "genguard.frames"  # sampled frames are in the media store: score them
    AUDIO = "genguard.audio"  # extracted audio is in the media store: transcribe it
    DECIDE = "genguard.decide"  # a part of the observation is ready: decide when all are
    ALLOWED = "genguard.allowed"  # decided allow (or approved in review): on to release
    RELEASED = "genguard.released"  # watermarked and signed, in the media store
    REVIEW = "genguard.review"
    BLOCKED = "genguard.blocked"
    AUDIT = "genguard.audit"
    DLQ = "genguard.dlq"

    @classmethod
    def all(cls) -> list[str]:
        return [v for k, v in vars(cls).items() if k.isupper()]


JobStatus = Literal["queued", "sampling", "scoring", "transcribing", "deciding", "review", "allowed", "released",
                    "blocked", "failed"]
TERMINAL: tuple[JobStatus, ...] = ("released", "blocked", "failed")  # allowed still awaits release
OUTCOME: dict[str, tuple[JobStatus, str]] = {  # an action -> the job's status and the topic it goes on to
    "allow": ("allowed", Topics.ALLOWED), "review": ("review", Topics.REVIEW), "block": ("blocked", Topics.BLOCKED)}


class JobMessage(BaseModel):
    """What moves between video stages: ids and store keys, never media bytes."""

    job_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    tenant: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    part: Literal["frames", "audio", ""] = ""


CREATOR = r"^[A-Za-z0-9_.:-]{1,128}$"  # a tenant's pseudonymous id of the person who asked; never an e-mail


class Job(BaseModel):
    """The ledger entry of a video job in Redis: the source of truth for where it stands."""

    job_id: str
    tenant: str
    status: JobStatus = "queued"
    actor: str = "anonymous"
    creator: str | None = Field(None, pattern=CREATOR, description="who asked for the video (likeness grants)")
    sha256: str
    media_uri: str
    filename: str = ""
    prompt: str | None = None
    error: dict[str, str] | None = None
    history: list[dict[str, str]] = []
    decision: dict[str, Any] | None = None
    review: dict[str, str] | None = None
    released_uri: str | None = None
    watermark: str | None = None  # the invisible payload, hex
    watermark_key: str | None = None  # the id (never the secret) of the key it was embedded with
    appeal: dict[str, str] | None = None  # state (open, upheld, overturned), reason, by whom and when


def encode_vector(v: np.ndarray) -> str:
    """An embedding on the wire and in the signal store: base64 of float16."""
    return base64.b64encode(v.astype(np.float16).tobytes()).decode()


def decode_vector(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=np.float16).astype(np.float32)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class PromptRequest(BaseModel):
    """Arrives on ``genguard.prompts`` (or through ``POST /v1/prompts:check``)."""

    request_id: str = Field(default_factory=lambda: new_id("req"), pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    tenant: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    prompt: str
    actor: str = "anonymous"
    creator: str | None = Field(None, pattern=CREATOR, description="who asked (their strikes count)")

    @field_validator("prompt")
    @classmethod
    def _no_lone_surrogates(cls, v: str) -> str:
        """JSON can carry a lone surrogate (``"\\ud800"``) that no encoder, hash or response can: it
        becomes U+FFFD, so the text is still checked (and a model that fails on it fails closed)."""
        return v.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Shadow(BaseModel):
    """What a candidate policy running in shadow mode would have decided."""

    action: Action
    policy_id: str
    policy_version: str
    categories: list[str]


class Verdict(Evaluation):
    """Leaves on ``genguard.verdicts``: the evaluation plus who, when and with which models."""

    request_id: str
    tenant: str
    model_versions: dict[str, str] = {}
    latency_ms: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)
    shadow: Shadow | None = None
    language: str | None = Field(None, description="the prompt's language (ISO 639-1), as detected")
    strikes: int | None = Field(None, description="the creator's strikes in the policy's window, when counted")


class Observation(BaseModel):
    """What the models saw in one prompt, independent of any policy, so it can be re-judged later."""

    text: str
    embedding: str | None = Field(None, description="base64 float16 sentence embedding")
    scores: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    models: dict[str, str] = {}
    language: str | None = Field(None, description="ISO 639-1, from genguard's language ID")
    _normalized: NormalizedText | None = PrivateAttr(None)  # kept by the process that observed it


class FaceSeen(BaseModel):
    """A face in a sampled frame or an image: where, how sure, and who (once judged)."""

    box: tuple[int, int, int, int] = Field(description="left, top, right, bottom in pixels of the sampled frame")
    score: float
    embedding: str | None = Field(None, description="base64 float16 identity embedding; dropped from decisions")
    person_id: str | None = Field(None, description="the enrolled person it matched, if any")
    distance: float | None = Field(None, description="embedding distance to that person's nearest enrolment")
    granted: bool | None = Field(None, description="whether that person granted this creator the use")


class FrameSample(BaseModel):
    t: float
    reasons: list[str]
    pdq: str | None = None
    pdq_quality: int | None = None
    faces: list[FaceSeen] = []


class Spoken(BaseModel):
    start: float
    end: float
    text: str
    observation: Observation


FaceMode = Literal["skip", "detect", "embed"]  # faces not looked for (nobody enrolled), found, found and embedded


class VideoObservation(BaseModel):
    """What the models saw in one video, independent of any policy (replay re-judges it)."""

    probe: dict[str, str | int | float | bool | None]
    frames: list[FrameSample]
    detectors: dict[str, list[float]] = Field({}, description="per-frame scores of each frame detector")
    clip: list[str] | None = Field(None, description="base64 float16 image embedding per frame")
    faces_mode: FaceMode | None = Field(None, description="how faces were looked for (None: the face model did "
                                        "not run)")
    language: str | None = None
    transcript: list[Spoken] | None = None
    prompt: Observation | None = None
    errors: dict[str, str] = {}
    models: dict[str, str] = {}
    timings_ms: dict[str, float] = {}
    notes: list[str] = []


class VideoDecision(Evaluation):
    """The decision on one video: the evaluation plus which frames and words drove it."""

    job_id: str
    tenant: str
    strikes: int | None = Field(None, description="the creator's strikes in the policy's window, when counted")
    model_versions: dict[str, str] = {}
    evidence: dict[int, list[str]] = Field({}, description="frame index -> why that frame drove a category")
    frames: list[FrameSample] = []
    transcript: list[dict[str, str | float]] = []
    language: str | None = None
    probe: dict[str, str | int | float | bool | None] = {}
    timings_ms: dict[str, float] = {}
    created_at: datetime = Field(default_factory=utcnow)


class ImageVerdict(Evaluation):
    """The decision on a reference image (image-to-video): like a prompt's verdict, plus the faces."""

    request_id: str
    tenant: str
    sha256: str
    width: int
    height: int
    faces: list[FaceSeen] = []
    consent_attested: bool = False
    model_versions: dict[str, str] = {}
    latency_ms: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)


class StoredSignals(BaseModel):
    """One line of the signal store that replay reads: the observation (of a prompt or of a
    video) and the live decision."""

    subject: str
    tenant: str
    time: datetime = Field(default_factory=utcnow)
    observation: Observation | None = None
    video: VideoObservation | None = None
    prompt: str | None = Field(None, description="the prompt a video was generated from, if given")
    action: Action
    categories: list[str]
    policy_id: str
    policy_version: str


AuditEvent = Literal["prompt.verdict", "image.verdict", "video.decision", "video.rejected", "review.action",
                     "video.released", "key.created", "key.revoked", "watermark_key.rotated", "policy.activated",
                     "likeness.enrolled", "likeness.granted", "likeness.revoked", "likeness.erased",
                     "appeal.opened", "appeal.decided", "strike.added", "strike.removed"]


class AuditRecord(BaseModel):
    """One line of the compliance trail on ``genguard.audit``; never holds prompt text.

    Stages publish records without the chain fields; the audit writer, the only author of the
    durable sink, sets ``stream``, ``seq``, ``prev_hash`` and ``hash`` when it appends them.
    """

    audit_id: str = Field(default_factory=lambda: new_id("aud"))
    time: datetime = Field(default_factory=utcnow)
    event: AuditEvent
    actor: str
    tenant: str
    subject: str
    content_sha256: str = ""
    policy_id: str | None = None
    policy_version: str | None = None
    model_versions: dict[str, str] = {}
    action: Action | None = None
    categories: dict[str, float | None] = {}
    reason: str = ""
    shadow: dict[str, str] = {}
    stream: str | None = None
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None


class DeadLetter(BaseModel):
    """A message no stage could handle, kept with the error for an operator."""

    topic: str
    error: str
    payload: str
    time: datetime = Field(default_factory=utcnow)
