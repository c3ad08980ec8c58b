"""Compile a policy and evaluate it: a pure function of (compiled policy, signals).

Vocabulary in data-flow order: signals come in (normalised text plus model scores), rules and
thresholds turn them into matches, matches give each category a severity, contexts may cap
it, combinations may raise it, severities map to actions, and the strictest action wins.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from classifiers.normalize import NormalizedText
from classifiers.rules import CompiledRule, compile_terms, first_match, mask
from policies import loader
from policies.loader import load_policy
from policies.schema import ACTIONS, SEVERITIES, Action, Category, Policy, Severity


def max_action(*actions: Action) -> Action:
    return max(actions, key=ACTIONS.index, default="allow")


def _max_severity(sevs: list[Severity]) -> Severity | None:
    return max(sevs, key=SEVERITIES.index) if sevs else None


@dataclass(frozen=True, slots=True)
class CompiledCategory:
    id: str
    spec: Category
    actions: dict[Severity, Action]
    rules: tuple[CompiledRule, ...]
    allow: re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    policy: Policy
    version: str
    source: str
    categories: dict[str, CompiledCategory]
    contexts: dict[str, re.Pattern[str]]

    @property
    def id(self) -> str:
        return self.policy.id


def content_hash(policy: Policy) -> str:
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def compile_policy(policy: Policy, source: str = "<memory>") -> CompiledPolicy:
    cats = {}
    for cid, cat in policy.categories.items():
        rules = tuple(
            CompiledRule(r.id, r.severity, p, r.exceptions_apply)
            for r in cat.rules
            if (p := compile_terms(r.keywords, r.regex)) is not None
        )
        actions = {**policy.severity_actions, **cat.severity_actions}
        cats[cid] = CompiledCategory(cid, cat, actions, rules, compile_terms(cat.allow_phrases))
    contexts = {n: p for n, c in policy.contexts.items() if (p := compile_terms(c.keywords, c.regex))}
    return CompiledPolicy(policy, content_hash(policy), source, cats, contexts)


def load(path: Path, overlay: Path | None = None) -> CompiledPolicy:
    policy, source = load_policy(path, overlay)
    return compile_policy(policy, source)


def load_any(path: Path, base: Path) -> CompiledPolicy:
    """A base policy, or an overlay on ``base``: what ``policy diff`` and ``replay`` accept."""
    policy, source = loader.load_any(path, base)
    return compile_policy(policy, source)


@dataclass(slots=True)
class Signals:
    """Everything known about one piece of content, ready for evaluation.

    ``scores[signal][category]`` holds per-category scores; a signal with one output for all
    categories (e.g. an offensive-language model) uses the key ``"*"``. ``errors`` names the
    signals that failed; a failed or absent required signal of this ``modality`` never lets
    content through. ``matches`` are findings made outside the policy's thresholds (known-content
    hash hits), added as they are.
    """

    text: NormalizedText | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    evidence: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    environment: str = "production"
    modality: Literal["text", "frames", "audio"] = "text"
    matches: dict[str, list[Match]] = field(default_factory=dict)


class Match(BaseModel):
    kind: Literal["rule", "signal", "combination", "hash", "face"]
    id: str
    severity: Severity
    score: float | None = None
    detail: str = ""
    capped_by: str | None = None
    source: str = Field("", description="Where it was seen: prompt, frames, transcript 1.2-3.4s ...")


class CategoryResult(BaseModel):
    category: str
    title: str
    severity: Severity
    action: Action
    score: float | None = None
    matches: list[Match]


class Evaluation(BaseModel):
    action: Action
    categories: list[CategoryResult]
    policy_id: str
    policy_version: str
    contexts: list[str] = []
    obfuscated: bool = False
    unscored: list[str] = []
    errors: dict[str, str] = {}

    def flagged(self) -> set[str]:
        """The categories this evaluation acts on (review or block)."""
        return {c.category for c in self.categories if c.action != "allow"}


Fired = dict[str, list[Match]]


def _category_matches(cat: CompiledCategory, text: str, signals: Signals, contexts: set[str],
                      tightened: tuple[str, float] | None) -> list[Match]:
    matches: list[Match] = list(signals.matches.get(cat.id, []))
    masked = mask(text, cat.allow)
    for rule in cat.rules:
        if text and (hit := first_match(rule.pattern, masked)) is not None:
            matches.append(Match(kind="rule", id=rule.id, severity=rule.severity, detail=hit))
    for sig, levels in cat.spec.thresholds.items():
        per_cat = signals.scores.get(sig)
        score = None if per_cat is None else per_cat.get(cat.id, per_cat.get("*"))
        factor = tightened[1] if tightened else 1.0
        if score is None or (sev := levels.severity_for(score, factor)) is None:
            continue
        why = signals.evidence.get(sig, {}).get(cat.id, "")
        if tightened and factor < 1:
            why = f"{why} (thresholds x{factor:g}: {tightened[0]})".strip()
        matches.append(Match(kind="signal", id=sig, severity=sev, score=round(score, 4), detail=why))
    caps = [e for e in cat.spec.exceptions if e.context in contexts]
    exempt = {r.id for r in cat.rules if not r.exceptions_apply}
    for exc in caps:
        for m in matches:
            above = SEVERITIES.index(m.severity) > SEVERITIES.index(exc.cap)
            if m.kind not in ("hash", "face") and m.id not in exempt and above:
                m.severity, m.capped_by = exc.cap, exc.context
    return matches


Tightened = dict[str, tuple[str, float]]  # category -> (tighten rule id, factor on its thresholds)


def fire(policy: CompiledPolicy, signals: Signals, source: str = "",
         tightened: Tightened | None = None) -> tuple[Fired, set[str]]:
    """The matches of every category that fired on this content, and the contexts it showed."""
    text = signals.text.text if signals.text else ""
    contexts = {n for n, p in policy.contexts.items() if p.search(text)}
    fired: Fired = {}
    for cid, cat in policy.categories.items():
        if matches := _category_matches(cat, text, signals, contexts, (tightened or {}).get(cid)):
            for m in matches:
                m.source = m.source or source
            fired[cid] = matches
    return fired, contexts


def failures(policy: Policy, signals: Signals) -> tuple[dict[str, str], list[str], Action]:
    """Fail closed: a required signal of this modality that errored or is absent raises the action;
    optional ones are noted."""
    errors: dict[str, str] = {}
    unscored: list[str] = []
    action: Action = "allow"
    for name, spec in policy.signals.items():
        if spec.modality != signals.modality:
            continue
        problem = signals.errors.get(name) or (None if name in signals.scores else "signal not produced")
        if problem is None:
            continue
        if not spec.required or signals.environment in spec.optional_in:
            unscored.append(name)
        else:
            errors[name] = problem
            action = max_action(action, spec.on_error)
    return errors, unscored, action


def conclude(policy: CompiledPolicy, fired: Fired, contexts: set[str] | None = None,
             errors: dict[str, str] | None = None, unscored: list[str] | None = None,
             error_action: Action = "allow", obfuscated: bool = False) -> Evaluation:
    """Severities, combinations and actions over everything that fired, from one or many sources."""
    severity = {cid: _max_severity([m.severity for m in ms]) or "low" for cid, ms in fired.items()}
    actions = {cid: policy.categories[cid].actions[sev] for cid, sev in severity.items()}
    matches = {cid: list(ms) for cid, ms in fired.items()}
    for combo in policy.policy.combinations:
        floor = SEVERITIES.index(combo.min_severity)
        if all(c in severity and SEVERITIES.index(severity[c]) >= floor for c in combo.all):
            eff = combo.then
            severity[eff.category] = _max_severity([severity.get(eff.category, eff.severity), eff.severity]) \
                or eff.severity
            matches.setdefault(eff.category, []).append(
                Match(kind="combination", id=combo.id, severity=eff.severity, detail=" + ".join(combo.all)))
            actions[eff.category] = max_action(actions.get(eff.category, "allow"), eff.action)

    results = []
    for cid, sev in severity.items():
        cat = policy.categories[cid]
        if not cat.spec.reportable:
            continue
        scores = [m.score for m in matches[cid] if m.score is not None]
        results.append(CategoryResult(category=cid, title=cat.spec.title, severity=sev, action=actions[cid],
                                      score=max(scores) if scores else None, matches=matches[cid]))
    results.sort(key=lambda r: (ACTIONS.index(r.action), SEVERITIES.index(r.severity)), reverse=True)
    action = max_action(error_action, *(r.action for r in results))
    return Evaluation(action=action, categories=results, policy_id=policy.id, policy_version=policy.version,
                      contexts=sorted(contexts or ()), obfuscated=obfuscated, unscored=unscored or [],
                      errors=errors or {})


def evaluate(policy: CompiledPolicy, signals: Signals) -> Evaluation:
    return evaluate_many(policy, [("", signals)])


def tightening(policy: CompiledPolicy, fired: Fired) -> Tightened:
    """The ``tighten`` rules whose trigger fired anywhere in the item: the strictest factor per category."""
    out: Tightened = {}
    for rule in policy.policy.tighten:
        floor = SEVERITIES.index(rule.min_severity)
        if any(SEVERITIES.index(m.severity) >= floor for m in fired.get(rule.when, [])):
            for cid in rule.categories:
                if cid not in out or rule.factor < out[cid][1]:
                    out[cid] = (rule.id, rule.factor)
    return out


def _fire_all(policy: CompiledPolicy, parts: list[tuple[str, Signals]],
              tightened: Tightened | None = None) -> tuple[Fired, set[str]]:
    fired: Fired = {}
    contexts: set[str] = set()
    for source, signals in parts:
        part_fired, part_contexts = fire(policy, signals, source, tightened)
        for cid, ms in part_fired.items():
            fired.setdefault(cid, []).extend(ms)
        contexts |= part_contexts
    return fired, contexts


def evaluate_many(policy: CompiledPolicy, parts: list[tuple[str, Signals]]) -> Evaluation:
    """One decision over several pieces of one item (prompt, frames, transcript segments, ...):
    categories fire per piece, then combinations and actions apply across all of them. Where a
    ``tighten`` rule's trigger fired in any piece, every piece is fired again with its factors."""
    fired, contexts = _fire_all(policy, parts)
    if tightened := tightening(policy, fired):
        fired, contexts = _fire_all(policy, parts, tightened)
    errors: dict[str, str] = {}
    unscored: list[str] = []
    error_action: Action = "allow"
    for source, signals in parts:
        errs, uns, act = failures(policy.policy, signals)
        errors.update({f"{source}:{k}" if source else k: v for k, v in errs.items()})
        unscored += [u for u in uns if u not in unscored]
        error_action = max_action(error_action, act)
    obfuscated = any(s.text is not None and s.text.obfuscated for _, s in parts)
    return conclude(policy, fired, contexts, errors, unscored, error_action, obfuscated)
