"""What the commands share: settings, how a decision is printed, exit codes, a Redis session."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import click

from pipeline.settings import Settings, get_settings

if TYPE_CHECKING:
    from pipeline.prompt.gate import PromptGate
    from pipeline.records import Verdict
    from pipeline.store.state import State
    from pipeline.video.gate import VideoGate
    from policies.engine import Evaluation

T = TypeVar("T")
EXIT = {"allow": 0, "review": 1, "block": 2}  # `check` and `moderate` exit with these (3: rejected input)


def settings() -> Settings:
    return get_settings()


def with_state(work: Callable[[State], Awaitable[T]]) -> T:
    """Run ``work`` with a Redis session that is closed afterwards, whatever happens."""
    from pipeline.store.state import State

    async def run() -> T:
        state = State(settings())
        try:
            return await work(state)
        finally:
            await state.close()

    return asyncio.run(run())


def gates(with_video: bool) -> tuple[PromptGate, VideoGate | None]:
    """The prompt gate with its models, and the video gate too when labelled videos need it."""
    from pipeline.prompt.gate import PromptGate
    from pipeline.store.state import RedisVectorCache
    from pipeline.video.gate import VideoGate

    s = settings()
    cache = RedisVectorCache(s)
    gate = PromptGate.from_settings(s, cache)
    return gate, VideoGate.from_settings(s, gate, cache) if with_video else None


def print_evaluation(ev: Evaluation, headline: str) -> None:
    """The action in colour, what fired and why (with where it was seen), and failed signals."""
    colour = {"allow": "green", "review": "yellow", "block": "red"}[ev.action]
    click.secho(ev.action.upper(), fg=colour, bold=True, nl=False)
    click.echo(f"  {headline}")
    for cat in ev.categories:
        click.echo(f"  {cat.category:<20} {cat.severity:<8} -> {cat.action}")
        for m in cat.matches:
            score = f" {m.score:.3f}" if m.score is not None else ""
            where = f"[{m.source}] " if m.source else ""
            capped = f" (capped by {m.capped_by})" if m.capped_by else ""
            click.echo(f"      {where}{m.kind}:{m.id}{score} {m.detail!s:.80}{capped}")
    for name, err in ev.errors.items():
        click.secho(f"  signal {name} failed: {err} (fails closed)", fg="red")
    if ev.unscored:
        click.echo(f"  not scored (optional here): {', '.join(ev.unscored)}")


def print_verdict(verdict: Verdict) -> None:
    print_evaluation(verdict, f"policy {verdict.policy_id}@{verdict.policy_version}  request {verdict.request_id}"
                              f"  {verdict.latency_ms:.1f} ms  language {verdict.language or '?'}")
    if verdict.contexts:
        click.echo(f"  contexts: {', '.join(verdict.contexts)}")
