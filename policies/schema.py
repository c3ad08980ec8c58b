"""The YAML policy schema: what a policy file may say, and nothing else (unknown keys are errors)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["low", "medium", "high", "critical"]
Action = Literal["allow", "review", "block"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")
ACTIONS: tuple[Action, ...] = ("allow", "review", "block")

Score = Field(default=None, ge=0.0, le=1.0)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Levels(Strict):
    """Score at or above which a signal raises a category to that severity."""

    low: float | None = Score
    medium: float | None = Score
    high: float | None = Score
    critical: float | None = Score

    def severity_for(self, score: float, factor: float = 1.0) -> Severity | None:
        """``factor`` < 1 lowers every threshold (a ``tighten`` rule in force)."""
        hit = [s for s in SEVERITIES if (t := getattr(self, s)) is not None and score >= t * factor]
        return hit[-1] if hit else None


class Rule(Strict):
    id: str
    severity: Severity
    keywords: list[str] = []
    regex: list[str] = []
    exceptions_apply: bool = Field(True, description="False: contexts such as news or education never cap it.")
    note: str = ""


class CategoryException(Strict):
    context: str
    cap: Severity = "low"


class Temporal(Strict):
    """How per-frame scores become one score per clip, so one noisy frame does not block a clip."""

    mode: Literal["consecutive", "topk_mean", "max"] = "consecutive"
    n: int = Field(2, ge=1, description="consecutive: frames in a row that must all reach the score")
    k: int = Field(3, ge=1, description="topk_mean: how many of the highest frame scores to average")


class ClipLabels(Strict):
    """Zero-shot label prompts for the CLIP frame signal, with contrast prompts that calibrate it."""

    prompts: list[str] = Field(min_length=1)
    contrast: list[str] = Field(min_length=1, description="Benign look-alikes; without them scores are meaningless")


class Category(Strict):
    title: str
    description: str = ""
    reportable: bool = Field(True, description="False for helper concepts that only feed combinations.")
    severity_actions: dict[Severity, Action] = {}
    thresholds: dict[str, Levels] = {}
    rules: list[Rule] = []
    exemplars: list[str] = []
    counter_exemplars: list[str] = []
    allow_phrases: list[str] = []
    exceptions: list[CategoryException] = []
    clip: ClipLabels | None = None
    temporal: Temporal = Temporal()
    zero_tolerance: bool = Field(False, description="One frame above threshold is enough (temporal mode max).")


class Context(Strict):
    """A benign framing (news, medical, education...) that category exceptions refer to."""

    keywords: list[str] = []
    regex: list[str] = []


class Effect(Strict):
    category: str
    severity: Severity
    action: Action


class Combination(Strict):
    id: str
    all: list[str] = Field(min_length=2)
    min_severity: Severity = "low"
    then: Effect
    note: str = ""


class SignalSpec(Strict):
    modality: Literal["text", "frames", "audio"] = Field(
        "text", description="What the signal looks at: text (prompts, transcript segments), frames, audio.")
    required: bool = True
    optional_in: list[str] = Field([], description="Environments where the signal may be absent.")
    on_error: Literal["review", "block"] = "review"


class HashList(Strict):
    """A list of known-content hashes; a frame within ``max_distance`` bits of one fires ``category``.
    An ``allow`` list (known-good content, e.g. a stock clip a block list caught) fires nothing: a frame
    that matches it is not matched against the other lists."""

    category: str | None = None
    allow: bool = False
    severity: Severity = "critical"
    max_distance: int = Field(31, ge=0, le=128, description="PDQ Hamming distance (31 is Meta's default)")


class Tighten(Strict):
    """While ``when`` fires at ``min_severity`` or above anywhere in the item, the thresholds of
    ``categories`` are multiplied by ``factor`` (e.g. a possible minor makes sexual signals count sooner)."""

    id: str
    when: str
    min_severity: Severity = "medium"
    categories: list[str] = Field(min_length=1)
    factor: float = Field(gt=0.0, le=1.0)
    note: str = ""


class Faces(Strict):
    """How faces in frames and reference images are judged against the tenant's consent registry."""

    max_distance: float = Field(0.5, gt=0.0, le=2.0, description="Embedding distance at or below which a face is "
                                "the enrolled person (dlib ResNet descriptors; measured, see the README)")
    category: str = Field("likeness", description="Fires critical for an enrolled person's face that this creator "
                          "has no grant for, and medium for a face in a reference image sent without a consent "
                          "attestation (tenants set that one to allow or block through severity_actions)")
    matched: str = Field("likeness-match", description="Fires medium for any enrolled person's face, granted or "
                         "not: a helper for combinations (sexual content of a real person)")


class Strikes(Strict):
    """What a creator's finally blocked videos in the last ``window_days`` do to their next ones."""

    review_all_after: int | None = Field(3, ge=1, description="From this many strikes on, nothing is allowed "
                                         "without a human (allow becomes review)")
    block_after: int | None = Field(10, ge=1, description="From this many strikes on, everything is blocked")
    window_days: int = Field(30, ge=1, le=3650)


class Release(Strict):
    """How released videos are marked, per tenant: the visible mark and what the manifest says."""

    text: str = Field("AI-generated · {tenant}", description="{tenant} and {creator} are filled in")
    opacity: float = Field(0.65, gt=0.0, le=1.0)
    width_frac: float = Field(0.28, gt=0.05, le=0.9, description="mark width as a share of the video width")
    period_s: float = Field(3.0, ge=0.5, le=60.0, description="seconds per corner-to-corner leg")
    include_prompt: bool = Field(False, description="put the prompt in the C2PA moderation assertion")


class Policy(Strict):
    schema_version: Literal[1] = 1
    id: str
    label: str = ""
    description: str = ""
    severity_actions: dict[Severity, Action] = {
        "low": "allow", "medium": "review", "high": "block", "critical": "block"
    }  # fmt: skip
    signals: dict[str, SignalSpec] = {}
    contexts: dict[str, Context] = {}
    categories: dict[str, Category]
    combinations: list[Combination] = []
    tighten: list[Tighten] = []
    hash_lists: dict[str, HashList] = {}
    faces: Faces | None = None
    strikes: Strikes | None = None
    release: Release = Release()


class CategoryOverlay(Strict):
    """Overrides for one category: dicts merge, rules merge by id, lists extend."""

    severity_actions: dict[Severity, Action] = {}
    thresholds: dict[str, Levels] = {}
    rules: list[Rule] = []
    disable_rules: list[str] = []
    exemplars: list[str] = []
    counter_exemplars: list[str] = []
    allow_phrases: list[str] = []
    exceptions: list[CategoryException] | None = None


class Overlay(Strict):
    schema_version: Literal[1] = 1
    overlay_of: str
    tenant: str
    label: str = ""
    description: str = ""
    severity_actions: dict[Severity, Action] = {}
    contexts: dict[str, Context] = {}
    categories: dict[str, CategoryOverlay] = {}
    combinations: list[Combination] = []
    release: dict[str, str | float | bool] = {}
