"""Threshold tuning from labelled data: PR curve of one signal for one category, a threshold that
meets a target precision or recall, written back as a tenant overlay, drawn as PNG and HTML."""

from __future__ import annotations

import base64
import copy
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.media import decode
from pipeline.owner.labelled import Labelled
from pipeline.owner.text_eval import Counts, plot_reliability
from pipeline.prompt.gate import PromptGate
from pipeline.records import PromptRequest
from pipeline.video.gate import VideoGate, limits_of
from policies import engine
from policies.engine import CompiledPolicy
from policies.schema import SEVERITIES, Severity


@dataclass(frozen=True, slots=True)
class Point(Counts):
    threshold: float
    tn: int


def curve(scores: Sequence[float], forced: Sequence[bool], labels: Sequence[bool]) -> list[Point]:
    """One point per candidate threshold (each distinct score, plus 'never fires'), highest first.

    A row is flagged when ``forced`` (rules or other signals flag it anyway) or its score >= threshold.
    """
    points = []
    for t in [math.inf, *sorted(set(scores), reverse=True)]:
        pred = [f or s >= t for s, f in zip(scores, forced, strict=True)]
        tp = sum(p and y for p, y in zip(pred, labels, strict=True))
        fp = sum(p and not y for p, y in zip(pred, labels, strict=True))
        fn = sum(y and not p for p, y in zip(pred, labels, strict=True))
        points.append(Point(tp=tp, fp=fp, fn=fn, threshold=t, tn=len(labels) - tp - fp - fn))
    return points


def choose(points: list[Point], target_precision: float | None = None,
           target_recall: float | None = None) -> Point | None:
    """Best recall at the target precision, or best precision at the target recall (ties: higher threshold)."""
    if target_precision is not None:
        ok = [p for p in points if p.precision >= target_precision]
        return max(ok, key=lambda p: (p.recall, p.threshold), default=None)
    if target_recall is not None:
        ok = [p for p in points if p.recall >= target_recall]
        return max(ok, key=lambda p: (p.precision, p.threshold), default=None)
    raise ValueError("give a target precision or a target recall")


def firing_level(policy: CompiledPolicy, category: str) -> Severity:
    """The lowest severity whose action is not allow: the threshold that decides whether the category acts."""
    actions = policy.categories[category].actions
    return next(s for s in SEVERITIES if actions.get(s, "allow") != "allow")


@dataclass(slots=True)
class Study:
    category: str
    signal: str
    level: Severity
    scores: list[float]
    forced: list[bool]
    labels: list[bool]
    points: list[Point]


def _row_score(gate: PromptGate, video: VideoGate | None, row: Labelled, policy: CompiledPolicy,
               without: CompiledPolicy, category: str, signal: str, tenant: str) -> tuple[float, bool]:
    """A row's score on ``signal`` for ``category``, and whether the policy flags it without that signal."""
    if row.media is None:
        obs = gate.observe(row.text)
        per_cat = gate.signals_for(obs, policy).scores.get(signal, {})
        forced = category in gate.judge(PromptRequest(tenant=tenant, prompt=row.text), obs, without).flagged()
        return per_cat.get(category, per_cat.get("*", 0.0)), forced
    if video is None:
        raise ValueError(f"{row.media}: labelled videos need the video gate")
    vobs = video.observe(decode(Path(row.media), limits_of(video.settings)), row.text or None)
    if policy.policy.signals[signal].modality == "frames":
        score = video.frame_signals(vobs, policy)[0].scores.get(signal, {}).get(category, 0.0)
    else:  # a text signal: the highest over the prompt and every spoken segment
        texts = [o for o in (vobs.prompt, *(s.observation for s in vobs.transcript or [])) if o is not None]
        score = max((gate.signals_for(o, policy).scores.get(signal, {}).get(category, 0.0) for o in texts), default=0.0)
    return score, category in video.judge(vobs, without, "tune", tenant).flagged()


def study(gate: PromptGate, rows: Sequence[Labelled], category: str, signal: str, tenant: str,
          video: VideoGate | None = None) -> Study:
    """Observe every labelled row once; score it on ``signal`` and ask whether anything else flags it."""
    policy = gate.policies.for_tenant(tenant)
    if category not in policy.categories:
        raise ValueError(f"category {category!r} is not in policy {policy.id}")
    if signal not in policy.policy.signals:
        raise ValueError(f"signal {signal!r} is not declared in policy {policy.id}")
    data = policy.policy.model_dump()
    data["categories"][category]["thresholds"].pop(signal, None)
    without = engine.compile_policy(type(policy.policy).model_validate(data))
    pairs = [_row_score(gate, video, row, policy, without, category, signal, tenant) for row in rows]
    scores, forced = [p[0] for p in pairs], [p[1] for p in pairs]
    labels = [category in r.categories for r in rows]
    return Study(category, signal, firing_level(policy, category), scores, forced, labels,
                 curve(scores, forced, labels))


def overlay(policy: CompiledPolicy, tenant: str, category: str, signal: str, level: Severity,
            threshold: float, existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tenant's overlay (``existing``, if it has one) with the new threshold merged in; higher
    levels that were below it are raised to it so thresholds never decrease."""
    current = policy.policy.categories[category].thresholds.get(signal)
    levels: dict[str, float] = {level: math.floor(threshold * 1e6) / 1e6}
    for s in SEVERITIES[SEVERITIES.index(level) + 1:]:
        if current is not None and (v := getattr(current, s)) is not None and v < threshold:
            levels[s] = levels[level]
    data = copy.deepcopy(existing) if existing else {
        "schema_version": 1, "overlay_of": policy.id.split("+")[0], "tenant": tenant}
    data["label"] = " + ".join(x for x in (data.get("label"), f"tuned {category}") if x)
    cat = data.setdefault("categories", {}).setdefault(category, {})
    cat.setdefault("thresholds", {}).setdefault(signal, {}).update(levels)
    return data


def write_overlay(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# written by genguard tune\n" + yaml.safe_dump(data, sort_keys=False))


def draw(st: Study, chosen: Point | None, png: Path, html: Path | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, rel, tab) = plt.subplots(1, 3, figsize=(15, 4.5), gridspec_kw={"width_ratios": [3, 3, 2]})
    ax.plot([p.recall for p in st.points], [p.precision for p in st.points], marker=".", label=f"{st.signal} threshold")
    if chosen is not None:
        ax.scatter([chosen.recall], [chosen.precision], s=120, c="red", zorder=3,
                   label=f"chosen {chosen.threshold:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
           title=f"{st.category}: precision/recall over the {st.signal} threshold")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    plot_reliability(rel, st.scores, st.labels, st.signal)
    tab.axis("off")
    if chosen is not None:
        cells = [["", "labelled yes", "labelled no"], ["flagged", chosen.tp, chosen.fp],
                 ["not flagged", chosen.fn, chosen.tn]]
        table = tab.table(cellText=cells, loc="center", cellLoc="center")
        table.scale(1, 2)
        tab.set_title(f"at {chosen.threshold:.3f}: precision {chosen.precision:.3f}, recall {chosen.recall:.3f}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    png.write_bytes(buf.getvalue())
    if html is not None:
        rows = "".join(f"<tr><td>{p.threshold:.4f}</td><td>{p.precision:.3f}</td><td>{p.recall:.3f}</td>"
                       f"<td>{p.f1:.3f}</td><td>{p.tp}</td><td>{p.fp}</td><td>{p.fn}</td></tr>"
                       for p in st.points if math.isfinite(p.threshold))
        img = base64.b64encode(buf.getvalue()).decode()
        html.write_text(f"<!doctype html><title>genguard tune {st.category}</title>"
                        f"<h1>{st.category} / {st.signal}</h1><img src='data:image/png;base64,{img}'>"
                        "<table border=1 cellpadding=4><tr><th>threshold</th><th>precision</th><th>recall</th>"
                        f"<th>F1</th><th>tp</th><th>fp</th><th>fn</th></tr>{rows}</table>")
