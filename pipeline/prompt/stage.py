"""The prompt stage: one prompt in, one verdict and one audit record out, for the faust agent and
the API alike (the route calls ``check`` too: there is no second copy of this sequence).

At least once in, exactly once out: the Redis ledger claims the request id before work starts
and stores the verdict after the outputs are acknowledged; a redelivered message, or a repeated
``request_id`` on the API, finds the stored verdict and publishes nothing again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pipeline.audit import events
from pipeline.metrics import CHECK_SECONDS, PROMPT_BATCH, VERDICTS
from pipeline.prompt.gate import InputError, PromptGate
from pipeline.records import Observation, PromptRequest, StoredSignals, Topics, Verdict
from pipeline.stages import InProgress, StageContext
from pipeline.store.signals import SignalStore

log = logging.getLogger("genguard.prompts")
LEDGER = "prompt"  # the stage's name in pipeline/stages.py


def failed_verdict(gate: PromptGate, request: PromptRequest, code: str, message: str) -> Verdict:
    """A request that could not be evaluated is blocked, with the reason on record."""
    return Verdict(action="block", categories=[], policy_id=gate.base.id, policy_version=gate.base.version,
                   errors={code: message}, request_id=request.request_id, tenant=request.tenant)


def decide(gate: PromptGate, request: PromptRequest, source: str, store: SignalStore | None = None) -> Verdict:
    """Check one prompt, never raising: bad input and failures become a blocking verdict."""
    return decide_many(gate, [request], [source], store)[0]


def decide_many(gate: PromptGate, requests: Sequence[PromptRequest], sources: Sequence[str],
                store: SignalStore | None = None) -> list[Verdict]:
    """As ``decide`` for a batch checked together; each verdict is the one its request gets alone."""
    verdicts: list[Verdict | None] = [None] * len(requests)
    for i, request in enumerate(requests):
        try:
            gate.validate(request)
        except InputError as e:
            verdicts[i] = failed_verdict(gate, request, e.code, str(e))
    valid = [i for i, v in enumerate(verdicts) if v is None]
    for i, (verdict, obs) in zip(valid, _checked(gate, [requests[i] for i in valid]), strict=True):
        verdicts[i] = verdict
        if store is not None and obs is not None:
            _keep(store, requests[i], verdict, obs)
    done = [v for v in verdicts if v is not None]
    for verdict, source in zip(done, sources, strict=True):
        VERDICTS.labels(verdict.action, source).inc()
        CHECK_SECONDS.labels(source).observe(verdict.latency_ms / 1000)
    return done


def _checked(gate: PromptGate, requests: list[PromptRequest]) -> list[tuple[Verdict, Observation | None]]:
    """The gate's verdicts; a failure is retried request by request and then blocks (fail closed,
    the message on record in the verdict and the log)."""
    try:
        return list(gate.check_many(requests)) if requests else []
    except Exception as e:
        if len(requests) > 1:
            return [pair for r in requests for pair in _checked(gate, [r])]
        log.exception("prompt gate failed for %s", requests[0].request_id)
        return [(failed_verdict(gate, requests[0], "gate_error", f"{type(e).__name__}: {e}"), None)]


def _keep(store: SignalStore, request: PromptRequest, verdict: Verdict, obs: Observation) -> None:
    try:
        store.append(StoredSignals(subject=request.request_id, tenant=request.tenant, observation=obs,
                                   action=verdict.action, categories=sorted(verdict.flagged()),
                                   policy_id=verdict.policy_id, policy_version=verdict.policy_version))
    except OSError:  # replay loses one row; the decision itself is audited
        log.exception("signal store write failed for %s", request.request_id)


class Batcher:
    """Concurrent checks in one process share one model call. Requests that arrive while a batch is
    being checked form the next one (at most ``prompt_batch_max``, waiting at most
    ``prompt_batch_wait_ms`` for company), so a request alone is checked at once and a burst is
    checked a batch at a time. One batch runs at a time: the encoder already uses every core."""

    def __init__(self, gate: PromptGate, store: SignalStore | None, max_batch: int, max_wait_s: float) -> None:
        self.gate, self.store, self.max_batch, self.max_wait_s = gate, store, max_batch, max_wait_s
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending: list[tuple[PromptRequest, str, asyncio.Future[Verdict]]] = []
        self.leading = False  # a task is collecting the next batch
        self.slot = asyncio.Lock()  # one batch runs at a time
        self.tasks: set[asyncio.Task[None]] = set()

    def _bind(self) -> None:
        """Queue and lock belong to one event loop (tests and the CLI may run several in turn)."""
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.loop, self.pending, self.leading, self.slot, self.tasks = loop, [], False, asyncio.Lock(), set()

    async def decide(self, request: PromptRequest, source: str) -> Verdict:
        self._bind()
        done: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self.pending.append((request, source, done))
        if not self.leading:
            self._lead()
        return await done

    def _lead(self) -> None:
        self.leading = True
        task = asyncio.get_running_loop().create_task(self._run_next())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run_next(self) -> None:
        async with self.slot:
            await asyncio.sleep(self.max_wait_s if len(self.pending) < self.max_batch else 0)
            batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
            self.leading = False
            if self.pending:
                self._lead()
            PROMPT_BATCH.observe(len(batch))
            try:
                verdicts = await asyncio.to_thread(decide_many, self.gate, [r for r, _, _ in batch],
                                                   [s for _, s, _ in batch], self.store)
            except BaseException as e:  # decide_many does not raise; this is cancellation at shutdown
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(RuntimeError(f"prompt batch interrupted: {type(e).__name__}"))
                raise
            for (*_, done), verdict in zip(batch, verdicts, strict=True):
                if not done.done():  # a caller that went away (cancelled) does not get one
                    done.set_result(verdict)


def batcher(ctx: StageContext) -> Batcher:
    """The process's one batcher for its prompt gate."""
    if ctx.prompts is None:
        raise RuntimeError("this process has no text models loaded")
    if ctx.batcher is None:
        s = ctx.settings
        ctx.batcher = Batcher(ctx.prompts, ctx.signals, s.prompt_batch_max, s.prompt_batch_wait_ms / 1000)
    return ctx.batcher


async def check(ctx: StageContext, request: PromptRequest, source: str, reply: bool,
                idempotent: bool = True) -> tuple[Verdict, bool]:
    """The verdict and whether it is a replay of one stored earlier. ``reply`` also publishes it on
    ``genguard.verdicts``; without ``idempotent`` (an API call with no request id) nothing is kept.
    Raises InProgress when the request id is claimed elsewhere."""
    checker = batcher(ctx)

    async def work() -> Verdict:
        verdict = await checker.decide(request, source)  # off the event loop, batched with concurrent ones
        if request.creator:  # a creator with many strikes gets nothing through without a human
            from pipeline.video.review import with_strikes

            verdict = await with_strikes(ctx.state, request.tenant, request.creator,
                                         ctx.policies.for_tenant(request.tenant), verdict)
        if reply:
            await ctx.publish(Topics.VERDICTS, request.request_id, verdict.model_dump_json().encode())
        await ctx.audit(events.prompt_verdict(request, verdict))
        return verdict

    if not idempotent:
        return await work(), False
    return await ctx.once(LEDGER, f"{request.tenant}:{request.request_id}", Verdict, work)


async def prompt(ctx: StageContext, request: PromptRequest) -> Verdict | None:
    """One message from ``genguard.prompts``; None when it was done already or is in progress elsewhere."""
    try:
        verdict, replayed = await check(ctx, request, "worker", reply=True)
    except InProgress:
        log.info("skipping %s: in progress elsewhere", request.request_id)
        return None
    return None if replayed else verdict
