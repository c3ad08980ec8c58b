"""Strikes on the real Redis: what a creator's finally blocked videos do to their next decision, as
the policy says, inside its window only."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.policy_source import PolicySource
from pipeline.prompt.gate import PromptGate
from pipeline.prompt.stage import check
from pipeline.records import PromptRequest, VideoDecision
from pipeline.settings import Settings
from pipeline.stages import StageContext
from pipeline.store.media import LocalMediaStore
from pipeline.store.review import ReviewStore
from pipeline.store.state import JobLedger, State
from pipeline.video.review import with_strikes
from policies import engine

POLICY = engine.load(Path(__file__).resolve().parent.parent / "policies" / "default.yaml")


async def test_strikes_raise_the_next_decision_inside_their_window(base_settings: Settings) -> None:
    state = State(base_settings)
    store, creator = ReviewStore(state), f"c-{time.time_ns()}"
    allowed = VideoDecision(action="allow", categories=[], policy_id="p", policy_version="v", job_id="j", tenant="acme")

    async def next_action() -> tuple[str, int | None]:
        d = await with_strikes(state, "acme", creator, POLICY, allowed)
        return d.action, d.strikes

    try:
        spec = POLICY.policy.strikes
        assert spec is not None and (spec.review_all_after, spec.block_after) == (3, 10)
        await state.redis.zadd(state._key("strikes", "acme", creator), {"old": time.time() - 40 * 86400})
        for n in range(2):
            await store.strike("acme", creator, f"j{n}")
        assert await next_action() == ("allow", 2)  # the 40-day-old strike is outside the 30-day window
        await store.strike("acme", creator, "j2")
        assert await next_action() == ("review", 3)
        for n in range(3, 10):
            await store.strike("acme", creator, f"j{n}")
        assert await next_action() == ("block", 10)
        assert await store.unstrike("acme", creator, "j9") and await next_action() == ("review", 9)
        assert (await with_strikes(state, "acme", None, POLICY, allowed)).strikes is None
    finally:
        await state.close()


async def test_a_benign_prompt_from_a_struck_creator_is_held_for_a_human(base_settings: Settings,
                                                                        gate: PromptGate) -> None:
    state = State(base_settings)
    creator, sent = f"c-{time.time_ns()}", []

    async def publish(topic: str, key: str, value: bytes) -> None:
        sent.append(topic)

    ctx = StageContext(base_settings, state, JobLedger(state), LocalMediaStore(base_settings.media_dir),
                       gate.policies, publish, prompts=gate)
    try:
        for n in range(3):
            await ReviewStore(state).strike("acme", creator, f"p{n}")
        prompt = "a cat surfing a wave at sunset"
        struck, _ = await check(ctx, PromptRequest(tenant="acme", prompt=prompt, creator=creator), "test",
                                reply=False, idempotent=False)
        clean, _ = await check(ctx, PromptRequest(tenant="acme", prompt=prompt, creator="c-new"), "test",
                               reply=False, idempotent=False)
        assert (struck.action, struck.strikes) == ("review", 3)
        assert (clean.action, clean.strikes) == ("allow", 0)
        assert sent.count("genguard.audit") == 2  # both audited
    finally:
        await state.close()


async def test_a_failed_job_stage_is_retried_a_few_times_then_left_to_the_lease(base_settings: Settings,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage that failed (a broker hiccup on publish, say) gives its claim back and is sent again,
    so the job does not wait out a whole lease; after RETRIES tries it is dead-lettered."""
    from pipeline import stages as table
    from pipeline.records import JobMessage

    monkeypatch.setattr(table, "RETRY_BACKOFF_S", 0.01)
    state, sent = State(base_settings), []

    async def publish(topic: str, key: str, value: bytes) -> None:
        sent.append((topic, key))

    ctx = StageContext(base_settings, state, JobLedger(state), LocalMediaStore(base_settings.media_dir),
                       PolicySource(base_settings), publish)
    msg = JobMessage(job_id=f"job-retry-{time.time_ns()}", tenant="acme", part="frames")
    try:
        assert await state.claim("decide", msg.job_id)
        assert await ctx.retry("decide", msg, msg.model_dump_json().encode())
        assert await state.claim("decide", msg.job_id)  # the claim was given back: a re-run can take it
        assert sent == [("genguard.decide", msg.job_id)]
        assert await ctx.retry("decide", msg, b"") and await ctx.retry("decide", msg, b"")
        assert not await ctx.retry("decide", msg, b"")  # used up: the worker dead-letters it
        assert len(sent) == table.RETRIES
    finally:
        await state.close()
