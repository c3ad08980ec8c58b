"""Every audit record genguard writes, built from plain values in one place, so what the trail holds
(and what it never holds: prompt text, secrets, face photos) is readable on one page."""

from __future__ import annotations

import hashlib

from pipeline.records import AuditEvent, AuditRecord, ImageVerdict, Job, PromptRequest, Verdict, VideoDecision
from pipeline.stages import audit_id
from policies.engine import CompiledPolicy, Evaluation
from policies.schema import Action


def _reasons(ev: Evaluation) -> list[str]:
    """Each category with its severity and what fired it, then each failed signal."""
    reasons = [f"{c.category}:{c.severity}:{'+'.join(m.id for m in c.matches)}" for c in ev.categories]
    return reasons + [f"signal-error:{name}" for name in ev.errors]


def prompt_verdict(request: PromptRequest, verdict: Verdict) -> AuditRecord:
    """Scores and reasons, a hash of the prompt, never its text."""
    reasons = _reasons(verdict)
    shadow = {}
    if verdict.shadow:
        shadow = {"action": verdict.shadow.action, "policy_version": verdict.shadow.policy_version}
    return AuditRecord(
        event="prompt.verdict", actor=request.actor, tenant=request.tenant, subject=request.request_id,
        content_sha256=hashlib.sha256(request.prompt.encode("utf-8", "surrogatepass")).hexdigest(),
        policy_id=verdict.policy_id, policy_version=verdict.policy_version,
        model_versions=verdict.model_versions, action=verdict.action,
        categories={c.category: c.score for c in verdict.categories},
        reason="; ".join(reasons) or "no category fired", shadow=shadow,
    )


def image_verdict(verdict: ImageVerdict, actor: str) -> AuditRecord:
    """The image's sha256, never the image; matched people by id only."""
    people = sorted({f.person_id for f in verdict.faces if f.person_id})
    reasons = _reasons(verdict)
    return AuditRecord(
        event="image.verdict", actor=actor, tenant=verdict.tenant, subject=verdict.request_id,
        content_sha256=verdict.sha256, policy_id=verdict.policy_id, policy_version=verdict.policy_version,
        model_versions=verdict.model_versions, action=verdict.action,
        categories={c.category: c.score for c in verdict.categories},
        reason=f"{'; '.join(reasons) or 'no category fired'}; faces={len(verdict.faces)} "
               f"consent_attested={verdict.consent_attested}" + (f"; people={','.join(people)}" if people else ""))


def image_rejected(request_id: str, tenant: str, actor: str, sha256: str, code: str, message: str) -> AuditRecord:
    return AuditRecord(event="image.verdict", actor=actor, tenant=tenant, subject=request_id, content_sha256=sha256,
                       action="block", reason=f"{code}: {message}")


def likeness_changed(event: AuditEvent, tenant: str, person_id: str, actor: str, detail: str) -> AuditRecord:
    """Enrolment, grants, revocations and erasure: who, whose id, what; never a photo or an embedding."""
    return AuditRecord(event=event, actor=actor, tenant=tenant, subject=person_id, reason=detail)


def policy_activated(policy: CompiledPolicy, actor: str) -> AuditRecord:
    """A policy version going live (recorded once, by the first process to load it)."""
    return AuditRecord(event="policy.activated", actor=actor, tenant="*", subject=f"{policy.id}@{policy.version}",
                       policy_id=policy.id, policy_version=policy.version, reason=f"loaded from {policy.source}")


def video_rejected(job_id: str, tenant: str, actor: str, sha256: str, code: str, message: str) -> AuditRecord:
    return AuditRecord(audit_id=audit_id(job_id, "video.rejected"), event="video.rejected", actor=actor,
                       tenant=tenant, subject=job_id, content_sha256=sha256, action="block",
                       reason=f"{code}: {message}")


def video_decision(job: Job, decision: VideoDecision, actor: str) -> AuditRecord:
    return AuditRecord(
        audit_id=audit_id(job.job_id, "video.decision"), event="video.decision", actor=actor, tenant=job.tenant,
        subject=job.job_id, content_sha256=job.sha256, policy_id=decision.policy_id,
        policy_version=decision.policy_version, model_versions=decision.model_versions, action=decision.action,
        categories={c.category: c.score for c in decision.categories},
        reason=("; ".join(f"{c.category}:{c.severity}" for c in decision.categories) or "no category fired")
        + (f"; creator strikes {decision.strikes}" if decision.strikes is not None else ""))


def review_action(job: Job, reviewer: str, action: Action, reason: str) -> AuditRecord:
    """A reviewer's decision by key id: allow (approved), block, or review (escalated, still held)."""
    return AuditRecord(event="review.action", actor=reviewer, tenant=job.tenant, subject=job.job_id,
                       content_sha256=job.sha256, action=action, reason=reason)


def video_released(job: Job, released_sha256: str, payload: str, actor: str) -> AuditRecord:
    return AuditRecord(audit_id=audit_id(job.job_id, "video.released"), event="video.released", actor=actor,
                       tenant=job.tenant, subject=job.job_id, content_sha256=released_sha256, action="allow",
                       reason=f"invisible watermark {payload} (key {job.watermark_key}) + visible mark + signed C2PA")


def watermark_key_rotated(key_id: str, actor: str) -> AuditRecord:
    """A new current watermark key, by id; never the secret."""
    return AuditRecord(event="watermark_key.rotated", actor=actor, tenant="*", subject=key_id,
                       reason="new current key for the invisible watermark; earlier keys kept for detection")


def key_changed(event: AuditEvent, key_id: str, tenant: str, name: str, scopes: list[str], actor: str) -> AuditRecord:
    """Who changed which key, its tenant and scopes; never the secret."""
    return AuditRecord(event=event, actor=actor, tenant=tenant, subject=key_id,
                       reason=f"name={name} scopes={','.join(scopes)}")
