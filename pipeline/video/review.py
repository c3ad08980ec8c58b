"""People's decisions on jobs: review (approve, block, escalate), appeals and strikes.

A job held for review is approved (on to release, exactly as an allowed job), blocked, or escalated
to a senior reviewer (still held). A blocked job may be appealed once by its tenant; a senior
reviewer who did not make the first decision upholds or overturns it (overturned: on to release).
Every finally blocked job gives its creator a strike, taken back when an appeal overturns it; the
policy's ``strikes`` say what many strikes do to the creator's next videos. All of it is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypeVar

from pipeline.audit import events
from pipeline.records import OUTCOME, AuditRecord, Job, Verdict, VideoDecision, utcnow
from pipeline.stages import StageContext
from pipeline.store.review import ReviewStore
from pipeline.store.state import State
from policies.engine import CompiledPolicy, max_action

Who = Literal["machine", "review", "appeal"]
D = TypeVar("D", VideoDecision, Verdict)


async def _held(st: StageContext, job_id: str, tenant: str, status: str) -> Job:
    job = await st.jobs.get(job_id)
    if job is None or job.tenant != tenant:
        raise KeyError(job_id)
    if job.status != status:
        raise ValueError(f"job {job_id} is {job.status}, not {'waiting for review' if status == 'review' else status}")
    return job


async def review(st: StageContext, job_id: str, tenant: str, reviewer: str, approve: bool, reason: str) -> Job:
    """A human decision on a job held for review: approved jobs go on to release, rejected are blocked."""
    job = await _held(st, job_id, tenant, "review")
    status, topic = OUTCOME["allow" if approve else "block"]
    job = await st.jobs.update(job_id, status, review={"reviewer": reviewer, "decision": status, "reason": reason})
    await st.audit(events.review_action(job, reviewer, "allow" if approve else "block", reason))
    await st.send(topic, job)
    await _waited(st, job)
    await counted(st, job, "allow" if approve else "block", [], "review")
    return job


async def escalate(st: StageContext, job_id: str, tenant: str, reviewer: str, reason: str) -> Job:
    """A reviewer hands a job on to a senior reviewer: it stays held, marked, and the hand-off is audited."""
    await _held(st, job_id, tenant, "review")
    job = await st.jobs.update(job_id, review={"reviewer": reviewer, "decision": "escalated", "reason": reason})
    await st.audit(events.review_action(job, reviewer, "review", f"escalated: {reason}"))
    return job


async def appeal(st: StageContext, job_id: str, tenant: str, by: str, reason: str) -> Job:
    """The tenant contests a blocked job (once): it joins the appeal queue."""
    job = await _held(st, job_id, tenant, "blocked")
    if job.appeal is not None:
        raise FileExistsError(f"job {job_id} was appealed already ({job.appeal['state']})")
    job = await st.jobs.update(job_id, appeal={"state": "open", "reason": reason, "by": by,
                                               "at": utcnow().isoformat()})
    await ReviewStore(st.state).queue_appeal(tenant, job_id)
    await st.audit(AuditRecord(event="appeal.opened", actor=by, tenant=tenant, subject=job_id,
                               content_sha256=job.sha256, action="block", reason=reason))
    return job


def first_decider(job: Job) -> str | None:
    """Who made the decision under appeal: the reviewer, or nobody where the machine blocked."""
    return (job.review or {}).get("reviewer")


async def decide_appeal(st: StageContext, job_id: str, tenant: str, senior: str, overturn: bool, reason: str) -> Job:
    job = await _held(st, job_id, tenant, "blocked")
    if (job.appeal or {}).get("state") != "open":
        raise ValueError(f"job {job_id} has no open appeal")
    if first_decider(job) == senior:
        raise PermissionError("the reviewer who made the first decision cannot decide its appeal")
    state, action = ("overturned", "allow") if overturn else ("upheld", "block")
    status = OUTCOME["allow"][0] if overturn else job.status
    appealed = {**(job.appeal or {}), "state": state, "decided_by": senior, "decision_reason": reason}
    job = await st.jobs.update(job_id, status, appeal=appealed)
    await ReviewStore(st.state).close_appeal(tenant, job_id)
    await st.audit(AuditRecord(event="appeal.decided", actor=senior, tenant=tenant, subject=job_id,
                               content_sha256=job.sha256, action=action, reason=f"{state}: {reason}"))
    if overturn:
        await st.send(OUTCOME["allow"][1], job)
        if job.creator and await ReviewStore(st.state).unstrike(tenant, job.creator, job_id):
            await st.audit(_strike_record("strike.removed", job, f"appeal overturned the block of {job_id}"))
    await counted(st, job, action, [], "appeal")
    return job


async def counted(st: StageContext, job: Job, action: str, categories: list[str], who: Who) -> None:
    """A decision onto the operations figures; a block is a strike for the job's creator (an upheld
    appeal keeps the strike the block gave)."""
    store = ReviewStore(st.state)
    await store.count(job.tenant, action, categories, who)
    if action == "block" and job.creator and who != "appeal":
        await store.strike(job.tenant, job.creator, job.job_id)
        await st.audit(_strike_record("strike.added", job, f"{who} blocked {job.job_id}"))


async def with_strikes(state: State, tenant: str, creator: str | None, policy: CompiledPolicy, decided: D) -> D:
    """A video decision or a prompt verdict raised by the creator's strikes, as the policy says
    (nothing without a creator, or where the policy sets no strikes)."""
    spec = policy.policy.strikes
    if spec is None or not creator:
        return decided
    n = await ReviewStore(state).strikes(tenant, creator, spec.window_days)
    action = decided.action
    if spec.block_after is not None and n >= spec.block_after:
        action = "block"
    elif spec.review_all_after is not None and n >= spec.review_all_after:
        action = max_action(action, "review")
    return decided.model_copy(update={"strikes": n, "action": action})


def _strike_record(event: Literal["strike.added", "strike.removed"], job: Job, reason: str) -> AuditRecord:
    return AuditRecord(event=event, actor="genguard", tenant=job.tenant, subject=job.creator or "", reason=reason)


async def _waited(st: StageContext, job: Job) -> None:
    held = next((h["at"] for h in reversed(job.history) if h["status"] == "review"), None)
    if held:
        await ReviewStore(st.state).waited(job.tenant, (utcnow() - datetime.fromisoformat(held)).total_seconds())
