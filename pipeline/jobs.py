"""The video stages as plain async functions; the faust agents and the API call them.

A job enters (``submit``), is sampled (``sample``), its frames scored and its audio transcribed
in parallel (``score_frames``, ``transcribe``), and decided once both parts are in (``decide``):
allowed on to release, held for review, or blocked. Every stage claims (job, stage) in Redis
first, so a redelivered message is skipped; the job's lease lets the reconciler re-publish a job
whose worker died. Any failure fails closed: the part records the error and the policy turns it
into review or block.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pipeline import release as release_mod
from pipeline.media import MediaError, decode, probe
from pipeline.media_store import MediaStore
from pipeline.records import (
    TERMINAL,
    AuditRecord,
    Job,
    JobMessage,
    JobStatus,
    StoredSignals,
    Topics,
    VideoDecision,
    VideoObservation,
    new_id,
)
from pipeline.settings import Settings
from pipeline.signal_store import SignalStore
from pipeline.state import JobLedger, State
from pipeline.video import VideoGate, limits_of

log = logging.getLogger("genguard.jobs")
Publish = Callable[[str, str, bytes], Awaitable[None]]
T = TypeVar("T")
OUTCOME: dict[str, tuple[JobStatus, str]] = {
    "allow": ("allowed", Topics.ALLOWED), "review": ("review", Topics.REVIEW), "block": ("blocked", Topics.BLOCKED)}
DECIDED: dict[JobStatus, str] = dict(OUTCOME.values())


@dataclass(slots=True)
class Stages:
    settings: Settings
    state: State
    jobs: JobLedger
    store: MediaStore
    gate: VideoGate | None  # the API submits and reviews without loading models
    publish: Publish
    signals: SignalStore | None = None  # observations kept for replay

    @property
    def video(self) -> VideoGate:
        if self.gate is None:
            raise RuntimeError("this process has no video models loaded")
        return self.gate

    async def send(self, topic: str, job: Job, part: str = "") -> None:
        msg = JobMessage.model_validate({"job_id": job.job_id, "tenant": job.tenant, "part": part})
        await self.publish(topic, job.job_id, msg.model_dump_json().encode())

    async def audit(self, record: AuditRecord) -> None:
        await self.publish(Topics.AUDIT, record.subject, record.model_dump_json().encode())

    async def run(self, fn: Callable[[], T], what: str) -> T:
        """Blocking model work off the event loop, bounded by the stage timeout."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn), self.settings.stage_timeout_s)
        except TimeoutError as e:
            raise TimeoutError(f"{what} exceeded {self.settings.stage_timeout_s:g}s") from e

    async def once(self, stage: str, msg: JobMessage) -> Job | None:
        """Claim (job, stage); None when done already or leased by another worker."""
        if not await self.state.claim(f"job-{stage}", msg.job_id):
            return None
        job = await self.jobs.get(msg.job_id)
        if job is None or job.tenant != msg.tenant:
            log.warning("%s: no job %s for tenant %s", stage, msg.job_id, msg.tenant)
            return None
        await self.jobs.touch(job.job_id)
        log.info("%s: %s claimed", stage, job.job_id)
        return job


def stage_audit_id(job_id: str, event: str) -> str:
    """A job's stage records one event once: a re-run after a crash repeats the same id, and the audit
    writer keeps only the first."""
    return f"aud_{job_id}.{event}"


def rejection(job_id: str, tenant: str, actor: str, sha256: str, error: MediaError) -> AuditRecord:
    return AuditRecord(audit_id=stage_audit_id(job_id, "video.rejected"), event="video.rejected", actor=actor,
                       tenant=tenant, subject=job_id, content_sha256=sha256, action="block",
                       reason=f"{error.code}: {error}")


async def submit(st: Stages, upload: Path, suffix: str, tenant: str, actor: str, prompt: str | None,
                 job_id: str | None = None) -> Job:
    """Accept an upload: probe it (a rejection is recorded as a failed job), store it, queue it.
    Raises MediaError after recording the job when the video cannot be moderated."""
    job_id = job_id or new_id("job")
    existing = await st.jobs.get(job_id)
    if existing is not None:
        return existing  # idempotent by job id
    try:
        await asyncio.to_thread(probe, upload, limits_of(st.settings))
    except MediaError as e:
        sha = await asyncio.to_thread(lambda: hashlib.sha256(upload.read_bytes()).hexdigest())
        job = Job(job_id=job_id, tenant=tenant, actor=actor, sha256=sha, media_uri="", status="failed",
                  prompt=prompt, error={"code": e.code, "message": str(e)})
        if await st.jobs.create(job):
            await st.audit(rejection(job_id, tenant, actor, sha, e))
        raise
    uri, sha = await asyncio.to_thread(st.store.put_upload, upload, suffix)
    job = Job(job_id=job_id, tenant=tenant, actor=actor, sha256=sha, media_uri=uri, prompt=prompt)
    if await st.jobs.create(job):
        await st.send(Topics.MEDIA, job)
    return job


async def sample(st: Stages, msg: JobMessage) -> None:
    job = await st.once("media", msg)
    if job is None:
        return
    await st.jobs.update(job.job_id, "sampling")
    try:
        media = await st.run(lambda: decode(st.store.local_path(job.media_uri), limits_of(st.settings)), "decode")
        await st.run(lambda: st.store.save_samples(job.job_id, media), "save samples")
    except MediaError as e:
        await st.jobs.update(job.job_id, "failed", error={"code": e.code, "message": str(e)})
        await st.audit(rejection(job.job_id, job.tenant, job.actor, job.sha256, e))
        await st.send(Topics.BLOCKED, job)
        await st.state.complete("job-media", job.job_id, "failed")
        return
    meta = {"probe": dataclasses.asdict(media.probe), "notes": media.notes}
    await st.jobs.update(job.job_id, "scoring", decision=meta)
    await st.send(Topics.FRAMES, job, "frames")
    await st.send(Topics.AUDIO, job, "audio")
    await st.state.complete("job-media", job.job_id, "done")


async def _part(st: Stages, msg: JobMessage, part: str, status: JobStatus,
                work: Callable[[Job], VideoObservation]) -> None:
    job = await st.once(part, msg)
    if job is None:
        return
    await st.jobs.update(job.job_id, status)
    try:
        obs = await st.run(lambda: work(job), part)
    except Exception as e:  # fail closed: the part carries the error into the decision
        log.exception("%s stage failed for %s", part, job.job_id)
        signal = "transcript" if part == "audio" else "frames"
        obs = VideoObservation(probe={}, frames=[], errors={signal: f"{type(e).__name__}: {e}"})
    await st.jobs.put_part(job.job_id, part, obs.model_dump_json())
    await st.send(Topics.DECIDE, job, part)
    await st.state.complete(f"job-{part}", job.job_id, "done")


async def score_frames(st: Stages, msg: JobMessage) -> None:
    def work(job: Job) -> VideoObservation:
        meta = (job.decision or {})
        return st.video.observe_frames(st.store.load_frames(job.job_id), meta.get("probe", {}), meta.get("notes", []))

    await _part(st, msg, "frames", "scoring", work)


async def transcribe(st: Stages, msg: JobMessage) -> None:
    await _part(st, msg, "audio", "transcribing", lambda job: st.video.observe_audio(st.store.load_audio(job.job_id)))


async def decide(st: Stages, msg: JobMessage) -> VideoDecision | None:
    parts = await st.jobs.parts(msg.job_id)
    if not {"frames", "audio"} <= parts.keys():
        return None  # the other part is still on its way
    job = await st.once("decide", msg)
    if job is None:
        return None
    if job.status in DECIDED:  # decided and recorded before a crash: only the hand-off is left
        await st.send(DECIDED[job.status], job)
        await st.state.complete("job-decide", job.job_id, job.status)
        return None
    await st.jobs.update(job.job_id, "deciding")
    frames = VideoObservation.model_validate_json(parts["frames"])
    audio = VideoObservation.model_validate_json(parts["audio"])
    if not frames.frames and "frames" not in frames.errors:
        frames.errors["frames"] = "no frames were scored"
    gate = st.video
    policy = gate.prompts.policy_for(job.tenant)
    observation = gate.combine(frames, audio, job.prompt)
    decision = await st.run(lambda: gate.judge(observation, policy, job.job_id, job.tenant), "decide")
    if st.signals is not None:
        st.signals.append(StoredSignals(subject=job.job_id, tenant=job.tenant, video=observation, prompt=job.prompt,
                                        action=decision.action, categories=sorted(decision.flagged()),
                                        policy_id=decision.policy_id, policy_version=decision.policy_version))
    status, topic = OUTCOME[decision.action]
    await st.audit(AuditRecord(
        audit_id=stage_audit_id(job.job_id, "video.decision"), event="video.decision",
        actor=f"worker:{st.settings.worker_name}", tenant=job.tenant, subject=job.job_id,
        content_sha256=job.sha256, policy_id=decision.policy_id, policy_version=decision.policy_version,
        model_versions=decision.model_versions, action=decision.action,
        categories={c.category: c.score for c in decision.categories},
        reason="; ".join(f"{c.category}:{c.severity}" for c in decision.categories) or "no category fired"))
    await st.jobs.update(job.job_id, status, decision=decision.model_dump(mode="json"))  # after its audit record
    await st.send(topic, job)
    await st.state.complete("job-decide", job.job_id, decision.action)
    return decision


async def review(st: Stages, job_id: str, tenant: str, reviewer: str, approve: bool, reason: str) -> Job:
    """A human decision on a job held for review: approved jobs go on to release, rejected are blocked."""
    job = await st.jobs.get(job_id)
    if job is None or job.tenant != tenant:
        raise KeyError(job_id)
    if job.status != "review":
        raise ValueError(f"job {job_id} is {job.status}, not waiting for review")
    status, topic = OUTCOME["allow" if approve else "block"]
    job = await st.jobs.update(job_id, status, review={"reviewer": reviewer, "decision": status, "reason": reason})
    await st.audit(AuditRecord(event="review.action", actor=reviewer, tenant=tenant, subject=job_id,
                               content_sha256=job.sha256, action="allow" if approve else "block", reason=reason))
    await st.send(topic, job)
    return job


async def release(st: Stages, msg: JobMessage) -> Job | None:
    """Watermark and sign an allowed job; a redelivery reuses the file already signed, never a second one."""
    job = await st.once("release", msg)
    if job is None or job.status != "allowed":
        return None
    dest = st.store.released_path(job.job_id)
    payload = job.watermark or f"{secrets.randbits(32):08x}"
    await st.jobs.update(job.job_id, watermark=payload)  # before the file, so a retry embeds the same one
    await st.jobs.map_watermark(payload, job.job_id)
    if not dest.exists():
        signer = release_mod.sign_with(st.settings)
        src = st.store.local_path(job.media_uri)
        tenant = st.video.prompts.policy_for(job.tenant).policy.release
        await st.run(lambda: release_mod.release_file(src, dest, job, signer, tenant, int(payload, 16)), "release")
    job = await st.jobs.update(job.job_id, "released", released_uri=st.store.uri_of(dest))
    await st.audit(AuditRecord(
        audit_id=stage_audit_id(job.job_id, "video.released"), event="video.released",
        actor=f"worker:{st.settings.worker_name}", tenant=job.tenant, subject=job.job_id,
        content_sha256=hashlib.sha256(dest.read_bytes()).hexdigest(), action="allow",
        reason=f"invisible watermark {payload} + visible mark + signed C2PA"))
    await st.send(Topics.RELEASED, job)
    await st.state.complete("job-release", job.job_id, "done")
    return job


async def reconcile(st: Stages) -> list[str]:
    """Re-publish jobs whose lease ran out in a non-terminal state (their worker died)."""
    resent = []
    for job_id in await st.jobs.expired():
        job = await st.jobs.get(job_id)
        if job is None or job.status in (*TERMINAL, "review"):
            continue
        await st.jobs.touch(job_id)
        if job.status == "allowed":
            await st.send(Topics.ALLOWED, job)
        elif job.status in ("queued", "sampling"):
            await st.send(Topics.MEDIA, job)
        else:
            await st.send(Topics.FRAMES, job, "frames")
            await st.send(Topics.AUDIO, job, "audio")
            await st.send(Topics.DECIDE, job, "frames")
        resent.append(job_id)
        log.warning("reconciler: re-published %s (was %s)", job_id, job.status)
    return resent
