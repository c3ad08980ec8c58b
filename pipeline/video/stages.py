"""The video stages as plain async functions; the faust agents and the API call them.

A job enters (``submit``), is sampled (``media``), its frames scored and its audio transcribed in
parallel (``frames``, ``audio``), and decided once both parts are in (``decide``): allowed on to
release, held for review, or blocked. Every stage claims (job, stage) in Redis first, so a
redelivered message is skipped; the job's lease lets the reconciler re-publish a job whose worker
died. Any failure fails closed: the part records the error and the policy turns it into review
or block.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from pipeline.audit import events
from pipeline.media import MediaError, decode, limits_of, probe
from pipeline.records import (
    OUTCOME,
    TERMINAL,
    FaceMode,
    Job,
    JobMessage,
    JobStatus,
    StoredSignals,
    Topics,
    VideoDecision,
    VideoObservation,
    new_id,
)
from pipeline.stages import STAGES, StageContext
from pipeline.store.likeness import LikenessStore
from pipeline.video import review

log = logging.getLogger("genguard.jobs")
DECIDED: dict[JobStatus, str] = dict(OUTCOME.values())


async def _reject(st: StageContext, job: Job, error: MediaError) -> None:
    await st.audit(events.video_rejected(job.job_id, job.tenant, job.actor, job.sha256, error.code, str(error)))


async def submit(st: StageContext, upload: Path, suffix: str, tenant: str, actor: str, prompt: str | None,
                 job_id: str | None = None, creator: str | None = None) -> Job:
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
                  prompt=prompt, creator=creator, error={"code": e.code, "message": str(e)})
        if await st.jobs.create(job):
            await _reject(st, job, e)
        raise
    uri, sha = await asyncio.to_thread(st.store.put_upload, upload, suffix)
    job = Job(job_id=job_id, tenant=tenant, actor=actor, sha256=sha, media_uri=uri, prompt=prompt, creator=creator)
    if await st.jobs.create(job):
        await st.send("media", job)
    return job


async def media(st: StageContext, msg: JobMessage) -> None:
    """Decode the upload once: sampled frames and 16 kHz audio into the media store, then both parts on."""
    job = await st.claim("media", msg)
    if job is None:
        return
    await st.jobs.update(job.job_id, STAGES["media"].status)
    try:
        decoded = await st.run(lambda: decode(st.store.local_path(job.media_uri), limits_of(st.settings)), "decode")
        await st.run(lambda: st.store.save_samples(job.job_id, decoded), "save samples")
    except MediaError as e:
        await st.jobs.update(job.job_id, "failed", error={"code": e.code, "message": str(e)})
        await _reject(st, job, e)
        await st.send(Topics.BLOCKED, job)
        await st.done("media", job.job_id, "failed")
        return
    meta = {"probe": dataclasses.asdict(decoded.probe), "notes": decoded.notes}
    await st.jobs.update(job.job_id, STAGES["frames"].status, decision=meta)
    await st.send("frames", job, "frames")
    await st.send("audio", job, "audio")
    await st.done("media", job.job_id)


async def _part(st: StageContext, msg: JobMessage, part: str, work: Callable[[Job], VideoObservation]) -> None:
    job = await st.claim(part, msg)
    if job is None:
        return
    await st.jobs.update(job.job_id, STAGES[part].status)
    try:
        obs = await st.run(lambda: work(job), part)
    except Exception as e:  # fail closed: the part carries the error into the decision
        log.exception("%s stage failed for %s", part, job.job_id)
        signal = "transcript" if part == "audio" else "frames"
        obs = VideoObservation(probe={}, frames=[], errors={signal: f"{type(e).__name__}: {e}"})
    await st.jobs.put_part(job.job_id, part, obs.model_dump_json())
    await st.send("decide", job, part)
    await st.done(part, job.job_id)


async def frames(st: StageContext, msg: JobMessage) -> None:
    try:  # faces matter only for a tenant with people enrolled; unsure, they are found and embedded
        faces: FaceMode = "embed" if await LikenessStore(st.state, st.settings).anyone(msg.tenant) else "skip"
    except Exception:
        log.exception("consent registry unreadable for %s: embedding faces", msg.tenant)
        faces = "embed"

    def work(job: Job) -> VideoObservation:
        meta = job.decision or {}
        return st.video.observe_frames(st.store.load_frames(job.job_id), meta.get("probe", {}), meta.get("notes", []),
                                       faces)

    await _part(st, msg, "frames", work)


async def audio(st: StageContext, msg: JobMessage) -> None:
    await _part(st, msg, "audio", lambda job: st.video.observe_audio(st.store.load_audio(job.job_id)))


async def decide(st: StageContext, msg: JobMessage) -> VideoDecision | None:
    """Once both parts are in: one evaluation over frames, transcript and prompt; audited, then handed on."""
    parts = await st.jobs.parts(msg.job_id)
    if not {"frames", "audio"} <= parts.keys():
        return None  # the other part is still on its way
    job = await st.claim("decide", msg)
    if job is None:
        return None
    if job.status in DECIDED:  # decided and recorded before a crash: only the hand-off is left
        await st.send(DECIDED[job.status], job)
        await st.done("decide", job.job_id, job.status)
        return None
    await st.jobs.update(job.job_id, STAGES["decide"].status)
    seen_frames = VideoObservation.model_validate_json(parts["frames"])
    heard = VideoObservation.model_validate_json(parts["audio"])
    if not seen_frames.frames and "frames" not in seen_frames.errors:
        seen_frames.errors["frames"] = "no frames were scored"
    gate, policy = st.video, st.policies.for_tenant(job.tenant)
    observation = gate.combine(seen_frames, heard, job.prompt)
    enrolled = await LikenessStore(st.state, st.settings).view(job.tenant, job.creator)  # read per job: revocations
    decision = await st.run(lambda: gate.judge(observation, policy, job.job_id, job.tenant, enrolled, job.creator),
                            "decide")
    decision = await review.with_strikes(st.state, job.tenant, job.creator, policy, decision)
    if st.signals is not None:
        st.signals.append(StoredSignals(subject=job.job_id, tenant=job.tenant, video=observation, prompt=job.prompt,
                                        action=decision.action, categories=sorted(decision.flagged()),
                                        policy_id=decision.policy_id, policy_version=decision.policy_version))
    status, topic = OUTCOME[decision.action]
    await st.audit(events.video_decision(job, decision, f"worker:{st.settings.worker_name}"))
    await st.jobs.update(job.job_id, status, decision=decision.model_dump(mode="json"))  # after its audit record
    await st.send(topic, job)
    await review.counted(st, job, decision.action, sorted(decision.flagged()), "machine")
    await st.done("decide", job.job_id, decision.action)
    return decision


async def reconcile(st: StageContext) -> list[str]:
    """Re-publish jobs whose lease ran out in a non-terminal state (their worker died)."""
    resent = []
    for job_id in await st.jobs.expired():
        job = await st.jobs.get(job_id)
        if job is None or job.status in (*TERMINAL, "review"):
            continue
        await st.jobs.touch(job_id)
        if job.status == "allowed":
            await st.send("release", job)
        elif job.status in ("queued", STAGES["media"].status):
            await st.send("media", job)
        else:
            await st.send("frames", job, "frames")
            await st.send("audio", job, "audio")
            await st.send("decide", job, "frames")
        resent.append(job_id)
        log.warning("reconciler: re-published %s (was %s)", job_id, job.status)
    return resent
