"""Replay: judge stored observations under a candidate policy and say what would change.

No model runs: prompts' embeddings and model scores come from the signal store, so a replay
over a week of traffic costs policy evaluations only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.prompt.gate import PromptGate
from pipeline.records import PromptRequest, StoredSignals
from pipeline.video.gate import VideoGate
from policies import engine
from policies.engine import CompiledPolicy, Evaluation
from policies.loader import is_overlay
from policies.schema import ACTIONS, Action


@dataclass(frozen=True, slots=True)
class Change:
    subject: str
    tenant: str
    before: Action
    after: Action
    before_categories: tuple[str, ...]
    after_categories: tuple[str, ...]
    evidence: str


@dataclass(slots=True)
class ReplayDiff:
    total: int = 0
    live: Counter[str] = field(default_factory=Counter)
    candidate: Counter[str] = field(default_factory=Counter)
    actions_before: Counter[str] = field(default_factory=Counter)
    actions_after: Counter[str] = field(default_factory=Counter)
    categories_before: Counter[str] = field(default_factory=Counter)
    categories_after: Counter[str] = field(default_factory=Counter)
    changes: list[Change] = field(default_factory=list)


def evidence(verdict: Evaluation) -> str:
    parts = []
    for c in verdict.categories:
        why = ", ".join(f"{m.id} {m.score:.2f}" if m.score is not None else m.id for m in c.matches)
        parts.append(f"{c.category}:{c.severity}->{c.action} ({why})")
    return "; ".join(parts) or "nothing fired"


def candidate_policies(gate: PromptGate, candidate: Path) -> Callable[[str], CompiledPolicy]:
    """A base candidate gets each tenant's overlay on top, as live; an overlay candidate replaces its
    tenant's overlay, and other tenants keep their live policy."""
    if is_overlay(candidate):
        policy = engine.load(gate.settings.policy_path, candidate)
        tenant = policy.id.partition("+")[2]
        return lambda t: policy if t == tenant else gate.policies.for_tenant(t)
    return lambda t: gate.policies.for_tenant(t, candidate)


def replay(gate: PromptGate, rows: Iterable[StoredSignals], candidate: Path,
           video: VideoGate | None = None) -> ReplayDiff:
    """Re-judge each stored prompt (with ``gate``) or video (with ``video``) under the candidate."""
    diff = ReplayDiff()
    policy_for = candidate_policies(gate, candidate)
    for row in rows:
        policy = policy_for(row.tenant)
        after: Evaluation
        if row.video is not None:
            if video is None:
                raise ValueError(f"{row.subject} is a video: replaying it needs the video gate")
            after = video.judge(row.video, policy, row.subject, row.tenant)
        elif row.observation is not None:
            request = PromptRequest(request_id=row.subject, tenant=row.tenant, prompt=row.observation.text)
            after = gate.judge(request, row.observation, policy)
        else:
            continue
        after_cats = tuple(sorted(after.flagged()))
        diff.total += 1
        diff.live[f"{row.policy_id}@{row.policy_version}"] += 1
        diff.candidate[f"{policy.id}@{policy.version}"] += 1
        diff.actions_before[row.action] += 1
        diff.actions_after[after.action] += 1
        diff.categories_before.update(row.categories)
        diff.categories_after.update(after_cats)
        if after.action != row.action or after_cats != tuple(sorted(row.categories)):
            diff.changes.append(Change(row.subject, row.tenant, row.action, after.action,
                                       tuple(sorted(row.categories)), after_cats, evidence(after)))
    return diff


def render(diff: ReplayDiff, show: int = 20) -> str:
    def versions(c: Counter[str]) -> str:
        return ", ".join(f"{v} ({n})" for v, n in c.most_common())

    out = [f"replayed {diff.total} stored prompts", f"  live:      {versions(diff.live)}",
           f"  candidate: {versions(diff.candidate)}", "", f"{'action':<22} {'live':>6} {'candidate':>9} {'change':>7}"]
    for a in ACTIONS:
        before, after = diff.actions_before[a], diff.actions_after[a]
        out.append(f"{a:<22} {before:>6} {after:>9} {after - before:>+7}")
    out += ["", f"{'flagged category':<22} {'live':>6} {'candidate':>9} {'change':>7}"]
    for c in sorted(set(diff.categories_before) | set(diff.categories_after)):
        before, after = diff.categories_before[c], diff.categories_after[c]
        out.append(f"{c:<22} {before:>6} {after:>9} {after - before:>+7}")
    out += ["", f"{len(diff.changes)} decisions change" + (":" if diff.changes else "")]
    for ch in diff.changes[:show]:
        out.append(f"  {ch.subject} [{ch.tenant}] {ch.before} -> {ch.after}  {ch.evidence}")
    if len(diff.changes) > show:
        out.append(f"  ... {len(diff.changes) - show} more (--show N)")
    return "\n".join(out)
