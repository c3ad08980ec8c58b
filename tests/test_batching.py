"""Micro-batching of prompt checks: concurrent requests share one model call and get exactly the
verdicts they get alone; one text that breaks a model breaks only its own verdict (fail closed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import numpy as np
import pytest

from pipeline.metrics import PROMPT_BATCH
from pipeline.policy_source import PolicySource
from pipeline.prompt import stage
from pipeline.prompt.gate import PromptGate
from pipeline.records import PromptRequest, Verdict
from pipeline.settings import Settings
from pipeline.stages import StageContext
from pipeline.store.media import LocalMediaStore
from pipeline.store.state import JobLedger, State
from tests.helpers import ROOT

PROMPTS = [json.loads(line)["text"] for line in (ROOT / "tests/data/prompts.jsonl").read_text().splitlines()][::3]


def summary(v: Verdict) -> tuple[str, list[tuple[str, str]]]:
    return v.action, sorted((c.category, c.action) for c in v.categories)


def test_a_batch_gets_the_verdicts_each_prompt_gets_alone(gate: PromptGate) -> None:
    requests = [PromptRequest(tenant="default", prompt=p) for p in PROMPTS]
    alone = [gate.check(r) for r in requests]
    together = gate.check_many(requests)
    assert [summary(v) for v, _ in together] == [summary(v) for v, _ in alone]
    assert any(v.action != "allow" for v, _ in alone) and any(v.action == "allow" for v, _ in alone)
    for (_, a), (_, b) in zip(alone, together, strict=True):
        assert a.scores.keys() == b.scores.keys() and a.language == b.language
        for signal in a.scores:
            assert np.allclose(list(a.scores[signal].values()), list(b.scores[signal].values()), atol=1e-5)


class BreaksOn:
    """A text model that raises whenever its batch holds one poisoned text."""

    name, version, outputs = "breaks", "test", ("violence",)

    def score(self, batch: Sequence[str]) -> np.ndarray:
        if any("poison" in t for t in batch):
            raise ValueError("cannot score this text")
        return np.zeros((len(batch), 1), dtype=np.float32)


def test_one_text_that_breaks_a_model_fails_only_itself(gate: PromptGate) -> None:
    breaking = PromptGate(gate.settings, gate.policies, gate.encoder, gate.cache, (*gate.text_classifiers, BreaksOn()))
    texts = ["a cat surfing at sunset", "poison the well, cinematic", "a quiet forest at dawn"]
    obs = breaking.observe_many(texts)
    assert "breaks" in obs[1].errors and "breaks" not in obs[1].scores
    assert [("breaks" in o.scores, "breaks" in o.errors) for o in (obs[0], obs[2])] == [(True, False)] * 2
    alone = breaking.observe(texts[0])
    assert alone.scores == obs[0].scores


async def test_concurrent_checks_share_model_calls(gate: PromptGate, base_settings: Settings) -> None:
    state = State(base_settings)
    sent: list[str] = []

    async def publish(topic: str, key: str, value: bytes) -> None:
        sent.append(topic)

    ctx = StageContext(base_settings, state, JobLedger(state), LocalMediaStore(base_settings.media_dir),
                       PolicySource(base_settings), publish, prompts=gate)
    calls_before, prompts_before = PROMPT_BATCH._sum.get(), sum(b.get() for b in PROMPT_BATCH._buckets)
    try:
        requests = [PromptRequest(tenant="default", prompt=p) for p in PROMPTS]
        results = await asyncio.gather(*(stage.check(ctx, r, "test", reply=False, idempotent=False)
                                         for r in requests))
    finally:
        await state.close()
    batches = sum(b.get() for b in PROMPT_BATCH._buckets) - prompts_before
    assert PROMPT_BATCH._sum.get() - calls_before == len(requests)  # every prompt checked once
    assert batches < len(requests) / 4  # ... in far fewer model calls than prompts
    alone = [gate.check(r)[0] for r in requests]
    assert [summary(v) for v, _ in results] == [summary(v) for v in alone]
    assert sent.count("genguard.audit") == len(requests)  # each one audited on its own


@pytest.mark.parametrize("bad", ["   ", "x" * 5000])
def test_bad_input_in_a_batch_blocks_only_itself(gate: PromptGate, bad: str) -> None:
    good = PromptRequest(tenant="default", prompt="a cat surfing at sunset")
    verdicts = stage.decide_many(gate, [good, PromptRequest(tenant="default", prompt=bad), good], ["test"] * 3)
    assert [v.action for v in verdicts] == ["allow", "block", "allow"]
    assert set(verdicts[1].errors) & {"prompt_empty", "prompt_too_long"}
