"""The prompt gate: a prompt in, a verdict out. Shared by the API, the worker, the CLI and the
video gate (which observes every transcript segment like a prompt).

Two steps. ``observe`` runs the models once and keeps what they saw (normalised text, the
prompt's embedding, model scores, failures): it does not depend on the policy, so it is what
replay stores and what a shadow policy reuses. ``judge`` turns an observation into a verdict
under one policy. Each model runs under its own guard: if one raises, its signal is recorded
as failed and the policy's fail-closed rule decides (review or block), never allow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from classifiers import registry
from classifiers.base import Classifier, ModelMissingError, VectorCache
from classifiers.language import LanguageId
from classifiers.normalize import NormalizedText, normalize
from classifiers.text_embedding import ExemplarClassifier, TextEncoder
from classifiers.text_model import SHIPPED
from pipeline.policy_source import PolicySource
from pipeline.records import Observation, PromptRequest, Shadow, Verdict, decode_vector, encode_vector
from pipeline.settings import Settings
from policies import engine
from policies.engine import CompiledPolicy, Signals

log = logging.getLogger("genguard.gate")
T = TypeVar("T")


class InputError(ValueError):
    """The request itself is unacceptable; ``code`` is the stable error code clients see."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)



class PromptGate:
    def __init__(self, settings: Settings, policies: PolicySource, encoder: TextEncoder | None,
                 cache: VectorCache | None = None, classifiers: tuple[Classifier, ...] = (),
                 load_errors: dict[str, str] | None = None, language: LanguageId | None = None) -> None:
        self.settings, self.policies, self.encoder, self.cache = settings, policies, encoder, cache
        self.language = language
        self.text_classifiers = classifiers
        self.load_errors = load_errors or {}
        self._exemplars: dict[str, ExemplarClassifier] = {}

    @classmethod
    def from_settings(cls, settings: Settings, cache: VectorCache | None = None,
                      policies: PolicySource | None = None, classifiers: bool = True) -> PromptGate:
        """The text encoder and, with ``classifiers``, every registered text model. A missing encoder
        raises ModelMissingError naming its path; a missing registered model fails its signal closed."""
        errors: dict[str, str] = {}
        models = tuple(registry.load("text", errors)) if classifiers else ()
        try:
            language = LanguageId(SHIPPED)
        except ModelMissingError as e:  # the verdict then names no language, and nothing else changes
            log.warning("language ID unavailable: %s", e)
            language = None
        encoder = TextEncoder(settings.text_model, settings.text_precision)
        return cls(settings, policies or PolicySource(settings), encoder, cache, models, errors, language)

    @property
    def base(self) -> CompiledPolicy:
        return self.policies.base

    def warm(self) -> None:
        """Embed the exemplars and run onnxruntime once, so the first real request is not the slow one."""
        self.check(PromptRequest(tenant="default", prompt="warm-up"))

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
        return self.observe_many([text])[0]

    def observe_many(self, texts: Sequence[str]) -> list[Observation]:
        """One observation per text, each model called once for the whole batch (micro-batching). A
        batch in which a model raises is observed again text by text, so one bad text fails only itself
        and every verdict is what the text alone would get."""
        if len(texts) > 1:
            try:
                return self._observe(texts, record_errors=False)
            except Exception as e:
                log.warning("a batch of %d failed (%s: %s); observing one by one", len(texts), type(e).__name__, e)
        return [self._observe([t], record_errors=True)[0] for t in texts]

    def _observe(self, texts: Sequence[str], record_errors: bool) -> list[Observation]:
        norms = [normalize(t) for t in texts]
        obs = [Observation(text=t, errors=dict(self.load_errors)) for t in texts]
        for o, n in zip(obs, norms, strict=True):
            o._normalized = n  # judged in this process: no second normalisation
        docs = [n.text for n in norms]
        vectors = None
        if self.encoder is None:
            for o in obs:
                o.errors["embedding"] = "text embedding model not loaded"
        elif (vectors := self._guarded("embedding", obs, record_errors, lambda: self.encoder.embed(docs))) is not None:
            for o, v in zip(obs, vectors, strict=True):
                o.embedding, o.models["embedding"] = encode_vector(v), self.encoder.version  # type: ignore[union-attr]
        if self.language is not None:
            for o, (lang, _) in zip(obs, self.language.detect(docs), strict=True):
                o.language = lang
        context = {"embedding": vectors, "language": [o.language for o in obs] if self.language else None}
        for clf in self.text_classifiers:
            wanted = {k: context[k] for k in getattr(clf, "context", ())}  # what a model declares it uses
            scores = self._guarded(clf.name, obs, record_errors, lambda c=clf, w=wanted: c.score(docs, **w))
            for o, row in zip(obs, [] if scores is None else scores, strict=False):
                o.scores[clf.name] = dict(zip(clf.outputs, map(float, row), strict=True))
                o.models[clf.name] = clf.version
        return obs

    @staticmethod
    def _guarded(name: str, obs: list[Observation], record_errors: bool, fn: Callable[[], T]) -> T | None:
        """Run one model; a failure is raised (a batch: retried text by text) or recorded (fail closed:
        the policy decides review or block)."""
        try:
            return fn()
        except Exception as e:
            if not record_errors:
                raise
            log.exception("%s failed", name)
            for o in obs:
                o.errors[name] = f"{type(e).__name__}: {e}"
            return None

    def signals_for(self, obs: Observation, policy: CompiledPolicy) -> Signals:
        """What ``policy`` needs from an observation: its exemplar similarities from the stored embedding."""
        norm: NormalizedText = obs._normalized or normalize(obs.text)  # stored observations normalise again
        sig = Signals(text=norm, scores=dict(obs.scores), errors=dict(obs.errors),
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
                       model_versions=obs.models, language=obs.language)

    def validate(self, request: PromptRequest) -> None:
        if not request.prompt.strip():
            raise InputError("prompt_empty", "prompt is empty")
        if len(request.prompt) > self.settings.max_prompt_chars:
            raise InputError("prompt_too_long",
                             f"prompt has {len(request.prompt)} characters; the limit is "
                             f"{self.settings.max_prompt_chars}")

    def check(self, request: PromptRequest) -> tuple[Verdict, Observation]:
        """Raises InputError for a request that cannot be checked."""
        self.validate(request)
        return self.check_many([request])[0]

    def check_many(self, requests: Sequence[PromptRequest]) -> list[tuple[Verdict, Observation]]:
        """Valid requests (see ``validate``) checked as one batch: the same verdicts as one at a time."""
        started = time.perf_counter()
        out = []
        for request, obs in zip(requests, self.observe_many([r.prompt for r in requests]), strict=True):
            verdict = self.judge(request, obs, self.policies.for_tenant(request.tenant))
            if (candidate := self.policies.shadow_for(request.tenant)) is not None:
                shadow = self.judge(request, obs, candidate)
                verdict.shadow = Shadow(action=shadow.action, policy_id=shadow.policy_id,
                                        policy_version=shadow.policy_version,
                                        categories=[c.category for c in shadow.categories if c.action != "allow"])
            out.append((verdict, obs))
        elapsed = round((time.perf_counter() - started) * 1000, 3)  # the batch's time: what each request waited
        for verdict, _ in out:
            verdict.latency_ms = elapsed
        return out
