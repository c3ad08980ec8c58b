"""The release stage's work: the moving visible mark, then the signed C2PA manifest (created by a
trained model, plus what was decided and under which policy), written last so nothing strips it."""

from __future__ import annotations

import hashlib
import json
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import c2pa

from pipeline.media import Limits, probe
from pipeline.records import Job
from pipeline.release.provenance import Credentials, dev_credentials, sign_media, signer_from
from pipeline.release.watermark import MarkStyle, apply_marks
from pipeline.settings import Settings
from policies.schema import Release


def credentials(settings: Settings) -> Credentials:
    """A configured PEM chain and key, or the embedded default's dev PKI (untrusted)."""
    if settings.sign_cert_path and settings.sign_key_path:
        return Credentials(settings.sign_cert_path.read_bytes(), settings.sign_key_path.read_bytes(),
                           settings.trust_anchors_path.read_bytes() if settings.trust_anchors_path else None)
    return dev_credentials(settings.keys_dir)


def trust_anchors(settings: Settings) -> bytes | None:
    if settings.trust_anchors_path:
        return settings.trust_anchors_path.read_bytes()
    dev_root = settings.keys_dir / "root.pem"
    return dev_root.read_bytes() if dev_root.exists() else None


def style_for(policy: Release, job: Job) -> MarkStyle:
    """The tenant's mark: its text (with {tenant} and {creator} filled in), opacity, size, speed."""
    text = policy.text.replace("{tenant}", job.tenant).replace("{creator}", job.actor)
    return MarkStyle(text=text, opacity=policy.opacity, width_frac=policy.width_frac, period_s=policy.period_s)


def moderation_summary(job: Job, include_prompt: bool = False) -> dict[str, Any]:
    """What the manifest says about the decision: enough to audit, no prompt unless the tenant opts in."""
    decision = job.decision or {}
    summary: dict[str, Any] = {
        "decision": "allow" if job.review is None else f"allow (human review: {job.review.get('reason', '')})",
        "job_id": job.job_id,
        "policy_id": decision.get("policy_id"),
        "policy_version": decision.get("policy_version"),
        "model_versions": decision.get("model_versions", {}),
        "unscored_signals": decision.get("unscored", []),
        "evidence_digest": hashlib.sha256(json.dumps(decision, sort_keys=True).encode()).hexdigest(),
        "input_sha256": job.sha256,
    }
    if include_prompt and job.prompt:
        summary["prompt"] = job.prompt
    return summary


@dataclass(frozen=True, slots=True)
class Released:
    payload: int  # the invisible watermark's
    manifest: bytes  # the signed manifest store


def release_file(src: Path, dest: Path, job: Job, signer: c2pa.Signer, watermark_key: bytes,
                 settings: Release | None = None, payload: int | None = None) -> Released:
    """Watermark ``src`` (invisible payload under ``watermark_key`` + visible mark) and sign the result
    into ``dest`` (written atomically)."""
    payload = secrets.randbits(32) if payload is None else payload
    info = probe(src, Limits(max_bytes=1 << 40, max_duration_s=1e9, max_width=1 << 16, max_height=1 << 16))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        marked = Path(tmp) / "marked.mp4"
        tenant = settings or Release()
        apply_marks(src, marked, info, style_for(tenant, job), Path(tmp), (payload, watermark_key))
        signed = Path(tmp) / "signed.mp4"
        manifest = sign_media(marked, signed, signer, moderation_summary(job, tenant.include_prompt), ingredient=src,
                              watermark=payload)
        signed.replace(dest)
    return Released(payload, manifest)


def sign_with(settings: Settings) -> c2pa.Signer:
    return signer_from(credentials(settings), settings.tsa_url)
