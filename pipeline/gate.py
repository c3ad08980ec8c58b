"""The prompt gate: a prompt in, a verdict out. Shared by the API, the worker and the CLI.

Two steps. ``observe`` runs the models once and keeps what they saw (normalised text, the
prompt's embedding, model scores, failures): it does not depend on the policy, so it is what
replay stores and what a shadow policy reuses. ``judge`` turns an observation into a verdict
under one policy. Each model runs under its own guard: if one raises, its signal is recorded
as failed and the policy's fail-closed rule decides (review or block), never allow.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from pathlib import Path

import numpy as np

from classifiers.base import Classifier
from classifiers.normalize import normalize
from classifiers.profanity import ProfanityClassifier
from classifiers.text_embedding import ExemplarClassifier, TextEncoder, VectorCache
from pipeline.records import AuditRecord, Observation, PromptRequest, Shadow, Verdict
from pipeline.settings import Settings
from policies import engine
from policies.engine import CompiledPolicy, Signals

log = logging.getLogger("genguard.gate")


class InputError(ValueError):
    """The request itself is unacceptable; ``code`` is the stable error code clients see."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def encode_vector(v: np.ndarray) -> str:
    return base64.b64encode(v.astype(np.float16).tobytes()).decode()


def decode_vector(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=np.float16).astype(np.float32)


class PromptGate:
    def __init__(self, settings: Settings, encoder: TextEncoder | None, cache: VectorCache | None = None,
                 extra: tuple[Classifier, ...] = ()) -> None:
        self.settings = settings
        self.encoder = encoder
        self.cache = cache
        self.text_classifiers: tuple[Classifier, ...] = extra
        self.base = engine.load(settings.policy_path)
        self._policies: dict[tuple[str, Path], CompiledPolicy] = {}
        self._exemplars: dict[str, ExemplarClassifier] = {}

    @classmethod
    def from_settings(cls, settings: Settings, cache: VectorCache | None = None) -> PromptGate:
        """Load the shipped models; a missing model raises ModelMissingError naming the path."""
        encoder = TextEncoder(settings.text_model)
        return cls(settings, encoder, cache, extra=(ProfanityClassifier(),))

    def warm(self) -> None:
        """Embed the exemplars and run onnxruntime once, so the first real request is not the slow one."""
        self.check(PromptRequest(tenant="default", prompt="warm-up"))

    def policy_for(self, tenant: str, base: Path | None = None) -> CompiledPolicy:
        """The tenant's effective policy: ``base`` (default: the live policy) plus its overlay, if any."""
        path = base or self.settings.policy_path
        if (tenant, path) not in self._policies:
            overlay = self.settings.tenants_dir / f"{tenant}.yaml"
            self._policies[tenant, path] = engine.load(path, overlay if overlay.exists() else None)
        return self._policies[tenant, path]

    def exemplars_for(self, policy: CompiledPolicy) -> ExemplarClassifier | None:
        if self.encoder is None:
            return None
        if policy.version not in self._exemplars:
            cats = policy.policy.categories
            self._exemplars[policy.version] = ExemplarClassifier(
                self.encoder,
                {c: cat.exemplars for c, cat in cats.items()},
                {c: cat.counter_exemplars for c, cat in cats.items()},
                self.cache,
            )
        return self._exemplars[policy.version]

    def observe(self, text: str) -> Observation:
        norm = normalize(text)
        obs = Observation(text=text)
        if self.encoder is None:
            obs.errors["embedding"] = "text embedding model not loaded"
        else:
            try:
                obs.embedding = encode_vector(self.encoder.embed([norm.text])[0])
                obs.models["embedding"] = self.encoder.version
            except Exception as e:  # fail closed: recorded, the policy decides review/block
                log.exception("text embedding failed")
                obs.errors["embedding"] = f"{type(e).__name__}: {e}"
        for clf in self.text_classifiers:
            try:
                obs.scores[clf.name] = dict(zip(clf.outputs, map(float, clf.score([norm.text])[0]), strict=True))
                obs.models[clf.name] = clf.version
            except Exception as e:
                log.exception("%s classifier failed", clf.name)
                obs.errors[clf.name] = f"{type(e).__name__}: {e}"
        return obs

    def signals_for(self, obs: Observation, policy: CompiledPolicy) -> Signals:
        """What ``policy`` needs from an observation: its exemplar similarities from the stored embedding."""
        sig = Signals(text=normalize(obs.text), scores=dict(obs.scores), errors=dict(obs.errors),
                      environment=self.settings.environment)
        exemplars = self.exemplars_for(policy)
        if obs.embedding is not None and exemplars is not None:
            scores, why = exemplars.match_embeddings(decode_vector(obs.embedding)[None, :])
            sig.scores["embedding"] = dict(zip(exemplars.outputs, map(float, scores[0]), strict=True))
            sig.evidence["embedding"] = {c: f"~ {p!r}" for c, p in why[0].items()}
        elif "embedding" not in sig.errors:
            sig.errors["embedding"] = "text embedding model not loaded"
        return sig

    def judge(self, request: PromptRequest, obs: Observation, policy: CompiledPolicy) -> Verdict:
        evaluation = engine.evaluate(policy, self.signals_for(obs, policy))
        return Verdict(**evaluation.model_dump(), request_id=request.request_id, tenant=request.tenant,
                       model_versions=obs.models)

    def check(self, request: PromptRequest) -> tuple[Verdict, Observation]:
        started = time.perf_counter()
        if not request.prompt.strip():
            raise InputError("prompt_empty", "prompt is empty")
        if len(request.prompt) > self.settings.max_prompt_chars:
            raise InputError("prompt_too_long",
                             f"prompt has {len(request.prompt)} characters; the limit is "
                             f"{self.settings.max_prompt_chars}")
        obs = self.observe(request.prompt)
        verdict = self.judge(request, obs, self.policy_for(request.tenant))
        if self.settings.shadow_policy_path is not None:
            shadow = self.judge(request, obs, self.policy_for(request.tenant, self.settings.shadow_policy_path))
            verdict.shadow = Shadow(action=shadow.action, policy_id=shadow.policy_id,
                                    policy_version=shadow.policy_version,
                                    categories=[c.category for c in shadow.categories if c.action != "allow"])
        verdict.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        return verdict, obs


def audit_record(request: PromptRequest, verdict: Verdict) -> AuditRecord:
    """The audit line for a prompt verdict: scores and reasons, a hash of the prompt, never its text."""
    reasons = [f"{c.category}:{c.severity}:{'+'.join(m.id for m in c.matches)}" for c in verdict.categories]
    reasons += [f"signal-error:{name}" for name in verdict.errors]
    shadow = {}
    if verdict.shadow:
        shadow = {"action": verdict.shadow.action, "policy_version": verdict.shadow.policy_version}
    return AuditRecord(
        event="prompt.verdict", actor=request.actor, tenant=request.tenant, subject=request.request_id,
        content_sha256=hashlib.sha256(request.prompt.encode()).hexdigest(),
        policy_id=verdict.policy_id, policy_version=verdict.policy_version,
        model_versions=verdict.model_versions, action=verdict.action,
        categories={c.category: c.score for c in verdict.categories},
        reason="; ".join(reasons) or "no category fired", shadow=shadow,
    )
