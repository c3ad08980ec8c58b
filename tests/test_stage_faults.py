"""Video stages called directly (real Redis ledger, real media store, real models) with their
output topic replaced by a list: a stage that hangs hits its timeout and the job fails closed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from pipeline.policy_source import PolicySource
from pipeline.prompt.gate import PromptGate
from pipeline.records import JobMessage, Topics
from pipeline.settings import Settings
from pipeline.stages import StageContext
from pipeline.store.media import LocalMediaStore
from pipeline.store.state import JobLedger, State
from pipeline.video import stages
from pipeline.video.gate import VideoGate
from tests.helpers import SINTEL


class Hangs:
    name, version, outputs = "nsfw", "hangs", ("*",)

    def score(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        time.sleep(8)  # longer than the stage timeout below (the thread sleeps: no CPU taken)
        return np.zeros((len(batch), 1), dtype=np.float32)


@pytest.mark.parametrize("hang", [True, False])
async def test_a_hanging_stage_times_out_and_the_job_fails_closed(base_settings: Settings, gate: PromptGate,
                                                                  tmp_path: Path, hang: bool) -> None:
    settings = base_settings.model_copy(update={"var_dir": tmp_path, "environment": "demo", "stage_timeout_s": 3.0})
    state = State(settings)
    sent: list[tuple[str, bytes]] = []

    async def publish(topic: str, key: str, value: bytes) -> None:
        sent.append((topic, value))

    policies = PolicySource(settings)
    real = VideoGate.from_settings(settings, PromptGate(settings, policies, gate.encoder, gate.cache,
                                                        gate.text_classifiers))
    video = VideoGate(settings, policies, real.prompts, [Hangs()] if hang else real.detectors, None,
                      real.transcriber, real.hashes, load_errors={}, faces=real.faces)
    st = StageContext(settings, state, JobLedger(state), LocalMediaStore(settings.media_dir), policies, publish,
                      gate=video)
    try:
        job = await stages.submit(st, SINTEL, ".mp4", "acme", "test", "an animated short", f"hang-{hang}")
        msg = JobMessage(job_id=job.job_id, tenant="acme")
        await stages.media(st, msg)
        started = time.monotonic()
        await stages.frames(st, msg.model_copy(update={"part": "frames"}))
        assert time.monotonic() - started < 6  # the timeout, not the hang, ended the stage
        await stages.audio(st, msg.model_copy(update={"part": "audio"}))
        decision = await stages.decide(st, msg)
        assert decision is not None
        if hang:
            assert decision.action in ("review", "block")
            assert "TimeoutError: frames exceeded 3s" in decision.errors["frames:nsfw"]
            assert (await st.jobs.get(job.job_id)).status == "review"
        else:
            assert decision.action == "allow"
        assert [t for t, _ in sent].count(Topics.DECIDE) == 2
    finally:
        await state.close()
