"""The prompt stage: one prompt in, one verdict and one audit record out, for the faust agent and
the API alike (the route calls ``check`` too: there is no second copy of this sequence).

At least once in, exactly once out: the Redis ledger claims the request id before work starts
and stores the verdict after the outputs are acknowledged; a redelivered message, or a repeated
``request_id`` on the API, finds the stored verdict and publishes nothing again.
"""

from __future__ import annotations

import asyncio
import logging

from pipeline.audit import events
from pipeline.metrics import CHECK_SECONDS, VERDICTS
from pipeline.prompt.gate import InputError, PromptGate
from pipeline.records import PromptRequest, StoredSignals, Topics, Verdict
from pipeline.stages import StageContext
from pipeline.store.signals import SignalStore

log = logging.getLogger("genguard.prompts")
LEDGER = "prompt"  # the stage's name in pipeline/stages.py


class InProgress(RuntimeError):
    """The same request id is being checked elsewhere right now."""


def failed_verdict(gate: PromptGate, request: PromptRequest, code: str, message: str) -> Verdict:
    """A request that could not be evaluated is blocked, with the reason on record."""
    return Verdict(action="block", categories=[], policy_id=gate.base.id, policy_version=gate.base.version,
                   errors={code: message}, request_id=request.request_id, tenant=request.tenant)


def decide(gate: PromptGate, request: PromptRequest, source: str, store: SignalStore | None = None) -> Verdict:
    """Check one prompt, never raising: bad input and failures become a blocking verdict."""
    obs = None
    try:
        verdict, obs = gate.check(request)
    except InputError as e:
        verdict = failed_verdict(gate, request, e.code, str(e))
    except Exception as e:  # fail closed; the message stays on record in the verdict and the log
        log.exception("prompt gate failed for %s", request.request_id)
        verdict = failed_verdict(gate, request, "gate_error", f"{type(e).__name__}: {e}")
    VERDICTS.labels(verdict.action, source).inc()
    CHECK_SECONDS.labels(source).observe(verdict.latency_ms / 1000)
    if store is not None and obs is not None:
        try:
            store.append(StoredSignals(subject=request.request_id, tenant=request.tenant, observation=obs,
                                       action=verdict.action, categories=sorted(verdict.flagged()),
                                       policy_id=verdict.policy_id, policy_version=verdict.policy_version))
        except OSError:  # replay loses one row; the decision itself is audited
            log.exception("signal store write failed for %s", request.request_id)
    return verdict


async def check(ctx: StageContext, request: PromptRequest, source: str, reply: bool,
                idempotent: bool = True) -> tuple[Verdict, bool]:
    """The verdict and whether it is a replay of one stored earlier. ``reply`` also publishes it on
    ``genguard.verdicts``; without ``idempotent`` (an API call with no request id) nothing is kept.
    Raises InProgress when the request id is claimed elsewhere."""
    if ctx.prompts is None:
        raise RuntimeError("this process has no text models loaded")
    subject = f"{request.tenant}:{request.request_id}"
    if idempotent:
        if cached := await ctx.state.result(LEDGER, subject):
            return Verdict.model_validate_json(cached), True
        if not await ctx.state.claim(LEDGER, subject):
            raise InProgress(subject)
    try:
        # off the event loop: requests queue where the API's load shedder sees them, ONNX runs in parallel
        verdict = await asyncio.to_thread(decide, ctx.prompts, request, source, ctx.signals)
        if reply:
            await ctx.publish(Topics.VERDICTS, request.request_id, verdict.model_dump_json().encode())
        await ctx.audit(events.prompt_verdict(request, verdict))
    except BaseException:
        if idempotent:
            await ctx.state.release(LEDGER, subject)
        raise
    if idempotent:
        await ctx.state.complete(LEDGER, subject, verdict.model_dump_json())
    return verdict, False


async def prompt(ctx: StageContext, request: PromptRequest) -> Verdict | None:
    """One message from ``genguard.prompts``; None when it was done already or is in progress elsewhere."""
    try:
        verdict, replayed = await check(ctx, request, "worker", reply=True)
    except InProgress:
        log.info("skipping %s: in progress elsewhere", request.request_id)
        return None
    return None if replayed else verdict
