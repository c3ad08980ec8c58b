"""The prompt gate: a prompt in, a verdict out. Shared by the API, the worker and the CLI.

Each classifier runs under its own guard: if one raises, its signal is recorded as failed
and the policy's fail-closed rule decides (review or block), never allow.
"""

from __future__ import annotations

import hashlib
import logging
import time

from classifiers.base import Classifier
from classifiers.normalize import normalize
from classifiers.profanity import ProfanityClassifier
from classifiers.text_embedding import ExemplarClassifier, TextEncoder, VectorCache
from pipeline.records import AuditRecord, PromptRequest, Verdict
from pipeline.settings import Settings
from policies import engine
from policies.engine import CompiledPolicy, Signals

log = logging.getLogger("genguard.gate")


class InputError(ValueError):
    """The request itself is unacceptable; ``code`` is the stable error code clients see."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class PromptGate:
    def __init__(self, settings: Settings, encoder: TextEncoder | None, cache: VectorCache | None = None,
                 extra: tuple[Classifier, ...] = ()) -> None:
        self.settings = settings
        self.encoder = encoder
        self.cache = cache
        self.text_classifiers: tuple[Classifier, ...] = extra
        self.base = engine.load(settings.policy_path)
        self._policies: dict[str, CompiledPolicy] = {}
        self._exemplars: dict[str, ExemplarClassifier] = {}

    @classmethod
    def from_settings(cls, settings: Settings, cache: VectorCache | None = None) -> PromptGate:
        """Load the shipped models; a missing model raises ModelMissingError naming the path."""
        encoder = TextEncoder(settings.text_model)
        return cls(settings, encoder, cache, extra=(ProfanityClassifier(),))

    def warm(self) -> None:
        """Embed the exemplars and run onnxruntime once, so the first real request is not the slow one."""
        self.check(PromptRequest(tenant="default", prompt="warm-up"))

    def policy_for(self, tenant: str) -> CompiledPolicy:
        if tenant not in self._policies:
            overlay = self.settings.tenants_dir / f"{tenant}.yaml"
            self._policies[tenant] = engine.load(self.settings.policy_path, overlay if overlay.exists() else None)
        return self._policies[tenant]

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

    def model_versions(self, policy: CompiledPolicy) -> dict[str, str]:
        out = {c.name: c.version for c in self.text_classifiers}
        if ex := self.exemplars_for(policy):
            out[ex.name] = ex.version
        return out

    def signals(self, text: str, policy: CompiledPolicy) -> Signals:
        norm = normalize(text)
        sig = Signals(text=norm, environment=self.settings.environment)
        exemplars = self.exemplars_for(policy)
        if exemplars is None:
            sig.errors["embedding"] = "text embedding model not loaded"
        else:
            try:
                scores, why = exemplars.match([norm.text])
                sig.scores["embedding"] = dict(zip(exemplars.outputs, map(float, scores[0]), strict=True))
                sig.evidence["embedding"] = {c: f"~ {p!r}" for c, p in why[0].items()}
            except Exception as e:  # fail closed: recorded, the policy decides review/block
                log.exception("embedding classifier failed")
                sig.errors["embedding"] = f"{type(e).__name__}: {e}"
        for clf in self.text_classifiers:
            try:
                row = clf.score([norm.text])[0]
                sig.scores[clf.name] = dict(zip(clf.outputs, map(float, row), strict=True))
            except Exception as e:
                log.exception("%s classifier failed", clf.name)
                sig.errors[clf.name] = f"{type(e).__name__}: {e}"
        return sig

    def check(self, request: PromptRequest) -> Verdict:
        started = time.perf_counter()
        if not request.prompt.strip():
            raise InputError("prompt_empty", "prompt is empty")
        if len(request.prompt) > self.settings.max_prompt_chars:
            raise InputError("prompt_too_long",
                             f"prompt has {len(request.prompt)} characters; the limit is "
                             f"{self.settings.max_prompt_chars}")
        policy = self.policy_for(request.tenant)
        evaluation = engine.evaluate(policy, self.signals(request.prompt, policy))
        return Verdict(**evaluation.model_dump(), request_id=request.request_id, tenant=request.tenant,
                       model_versions=self.model_versions(policy),
                       latency_ms=round((time.perf_counter() - started) * 1000, 3))


def audit_record(request: PromptRequest, verdict: Verdict) -> AuditRecord:
    """The audit line for a prompt verdict: scores and reasons, a hash of the prompt, never its text."""
    reasons = [f"{c.category}:{c.severity}:{'+'.join(m.id for m in c.matches)}" for c in verdict.categories]
    reasons += [f"signal-error:{name}" for name in verdict.errors]
    return AuditRecord(
        event="prompt.verdict", actor=request.actor, tenant=request.tenant, subject=request.request_id,
        content_sha256=hashlib.sha256(request.prompt.encode()).hexdigest(),
        policy_id=verdict.policy_id, policy_version=verdict.policy_version,
        model_versions=verdict.model_versions, action=verdict.action,
        categories={c.category: c.score for c in verdict.categories},
        reason="; ".join(reasons) or "no category fired",
    )

