"""What a reviewer sees of one decided job, as plain data: where on the timeline each category
fired, which words of the transcript did it, and each signal's score against its threshold.

Pure functions of the stored decision and the policy, so the console's pages stay templates and
tests can check the data without a browser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.records import Job, VideoDecision
from policies.engine import CompiledPolicy

SPAN = re.compile(r"^transcript (\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)s$")


@dataclass(frozen=True, slots=True)
class Mark:
    category: str
    start: float
    end: float
    source: str  # frames | transcript
    why: str


@dataclass(slots=True)
class Line:
    start: float
    end: float
    parts: list[tuple[str, bool]]  # text pieces, True where a rule matched
    categories: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Reading:
    category: str
    signal: str
    score: float | None
    severity: str
    threshold: float | None
    source: str
    detail: str


def sources(decision: VideoDecision) -> set[str]:
    """Where anything fired: frames, transcript, prompt (the queue filters on these)."""
    out = set()
    for cat in decision.categories:
        for m in cat.matches:
            out.add("transcript" if m.source.startswith("transcript") else m.source or "frames")
    return out


def marks(decision: VideoDecision) -> list[Mark]:
    """Timeline marks: flagged transcript segments, and flagged frames (each as the time around it
    up to halfway to its neighbours)."""
    found: dict[tuple[str, float, float, str], str] = {}
    for cat in decision.categories:
        for m in cat.matches:
            if span := SPAN.match(m.source):
                found.setdefault((cat.category, float(span[1]), float(span[2]), "transcript"), f"{m.kind}:{m.id}")
    times = [f.t for f in decision.frames]
    for i, reasons in decision.evidence.items():
        for reason in reasons:
            category = reason.split(" ")[0]
            if " speech " in reason or i >= len(times):
                continue
            before = (times[i] - times[i - 1]) / 2 if i > 0 else 0.5
            after = (times[i + 1] - times[i]) / 2 if i + 1 < len(times) else 0.5
            found.setdefault((category, max(0.0, times[i] - before), times[i] + after, "frames"), reason)
    return [Mark(c, round(a, 2), round(b, 2), s, why) for (c, a, b, s), why in sorted(found.items())]


def transcript(decision: VideoDecision) -> list[Line]:
    """Each spoken segment, the rule-matched phrases in it marked, and the categories it fired."""
    lines = []
    for seg in decision.transcript:
        start, end, text = float(seg["start"]), float(seg["end"]), str(seg["text"])
        source = f"transcript {start:.1f}-{end:.1f}s"
        hits = [(c.category, m) for c in decision.categories for m in c.matches if m.source == source]
        phrases = sorted({m.detail for _, m in hits if m.kind == "rule" and m.detail}, key=len, reverse=True)
        lines.append(Line(start, end, split(text, phrases), sorted({c for c, _ in hits})))
    return lines


def split(text: str, phrases: list[str]) -> list[tuple[str, bool]]:
    if not phrases:
        return [(text, False)]
    pattern = re.compile("|".join(re.escape(p) for p in phrases), re.IGNORECASE)
    parts, at = [], 0
    for hit in pattern.finditer(text):
        parts += [(text[at:hit.start()], False), (hit.group(0), True)]
        at = hit.end()
    parts.append((text[at:], False))
    return [p for p in parts if p[0]]


def readings(decision: VideoDecision, policy: CompiledPolicy | None) -> list[Reading]:
    """Per category, each signal's score next to the threshold of the severity it reached (the
    threshold comes from the live policy when it still has the category, else it is unknown)."""
    out = []
    for cat in decision.categories:
        spec = policy.policy.categories.get(cat.category) if policy else None
        for m in cat.matches:
            levels = spec.thresholds.get(m.id) if spec and m.kind == "signal" else None
            out.append(Reading(cat.category, f"{m.kind}:{m.id}", m.score, m.severity,
                               getattr(levels, m.severity) if levels else None, m.source or "frames", m.detail))
    return out


def decision_of(job: Job) -> VideoDecision | None:
    return VideoDecision.model_validate(job.decision) if job.decision and "action" in job.decision else None


def row(job: Job, now: datetime, since: str = "review") -> dict[str, object]:
    """One queue row: the job, what fired and where, and how long it has waited since it entered
    ``since`` (review; blocked for an appeal, counted from the appeal)."""
    decision = decision_of(job)
    entered = (job.appeal or {}).get("at") if since == "blocked" else None
    entered = entered or next((h["at"] for h in reversed(job.history) if h["status"] == since), job.history[0]["at"])
    return {"job": job, "categories": sorted(decision.flagged()) if decision else [],
            "sources": sorted(sources(decision)) if decision else [],
            "age_s": (now - datetime.fromisoformat(entered)).total_seconds()}
