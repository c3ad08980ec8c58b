"""The prompt stage as a plain async function, so the faust agent and the API stay thin.

At least once in, exactly one verdict and one audit record out: the Redis ledger claims the
request id before work starts and stores the verdict after both outputs are acknowledged;
a redelivered message finds the claim and is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from pipeline.gate import InputError, PromptGate, audit_record
from pipeline.metrics import CHECK_SECONDS, DEAD_LETTERS, VERDICTS
from pipeline.records import AuditRecord, DeadLetter, PromptRequest, StoredSignals, Topics, Verdict
from pipeline.signal_store import SignalStore
from pipeline.state import State

log = logging.getLogger("genguard.prompts")

Publish = Callable[[str, str, bytes], Awaitable[None]]
LEDGER = "prompt"


def policy_activated(gate: PromptGate, actor: str) -> AuditRecord:
    """Audit record for a policy version going live (recorded once, by the first process to load it)."""
    p = gate.base
    return AuditRecord(event="policy.activated", actor=actor, tenant="*", subject=f"{p.id}@{p.version}",
                       policy_id=p.id, policy_version=p.version, reason=f"loaded from {p.source}")


async def announce_policy(gate: PromptGate, state: State, publish: Publish, actor: str) -> None:
    if await state.first_seen("policy", f"{gate.base.id}@{gate.base.version}"):
        record = policy_activated(gate, actor)
        await publish(Topics.AUDIT, record.subject, record.model_dump_json().encode())


def failed_verdict(gate: PromptGate, request: PromptRequest, code: str, message: str) -> Verdict:
    """A request that could not be evaluated is blocked, with the reason on record."""
    return Verdict(action="block", categories=[], policy_id=gate.base.id, policy_version=gate.base.version,
                   errors={code: message}, request_id=request.request_id, tenant=request.tenant)


def decide(gate: PromptGate, request: PromptRequest, source: str,
           store: SignalStore | None = None) -> Verdict:
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


async def handle_prompt(raw: bytes, gate: PromptGate, state: State, publish: Publish,
                        store: SignalStore | None = None) -> Verdict | None:
    """One message from ``genguard.prompts``; returns the verdict, or None if skipped or dead-lettered."""
    try:
        request = PromptRequest.model_validate_json(raw)
    except ValidationError as e:
        DEAD_LETTERS.labels(Topics.PROMPTS).inc()
        letter = DeadLetter(topic=Topics.PROMPTS, error=str(e), payload=raw.decode("utf-8", "replace")[:65536])
        await publish(Topics.DLQ, "", letter.model_dump_json().encode())
        return None
    subject = f"{request.tenant}:{request.request_id}"
    if not await state.claim(LEDGER, subject):
        log.info("skipping %s: already done or in progress", subject)
        return None
    try:
        verdict = decide(gate, request, "worker", store)
        await publish(Topics.VERDICTS, request.request_id, verdict.model_dump_json().encode())
        await publish(Topics.AUDIT, request.request_id, audit_record(request, verdict).model_dump_json().encode())
    except BaseException:
        await state.release(LEDGER, subject)
        raise
    await state.complete(LEDGER, subject, verdict.model_dump_json())
    return verdict
