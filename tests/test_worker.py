"""The faust worker as a real process against the real embedded broker and the real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from pipeline import worker as worker_module
from pipeline.prompt.gate import PromptGate
from pipeline.records import PromptRequest, Topics
from pipeline.settings import Settings
from pipeline.worker import build_app
from tests.helpers import EVERY_CATEGORY, HOSTILE, json_or_none

ROOT = Path(__file__).resolve().parent.parent


def env_for(settings: Settings) -> dict[str, str]:
    return {**os.environ, "GENGUARD_EMBEDDED_KAFKA_ADDR": settings.embedded_kafka_addr,
            "GENGUARD_REDIS_URL": settings.redis_url, "GENGUARD_REDIS_PREFIX": settings.redis_prefix,
            "GENGUARD_VAR_DIR": str(settings.var_dir), "GENGUARD_WORKER_NAME": "genguard-test",
            "GENGUARD_TEXT_MODEL_DIR": str(settings.text_model)}


@pytest.fixture(scope="module")
def worker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    log = open(settings.var_dir / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], cwd=ROOT, env=env_for(settings),
                            stdout=log, stderr=subprocess.STDOUT)
    yield proc
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


async def exchange(settings: Settings, messages: list[bytes], want: dict[str, int],
                   timeout: float = 90) -> dict[str, list[dict]]:
    """Send ``messages`` to genguard.prompts; collect records until ``want`` counts per topic arrive."""
    bootstrap = settings.kafka_bootstrap
    consumer = AIOKafkaConsumer(*want, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, metadata_max_age_ms=1000)
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=64)
    await producer.start()
    try:
        for m in messages:
            await producer.send_and_wait(Topics.PROMPTS, m, key=b"k")
        got: dict[str, list[dict]] = {t: [] for t in want}

        def collect(batches: dict) -> None:
            for tp, msgs in batches.items():
                got[tp.topic] += [v for m in msgs if (v := json_or_none(m.value)) is not None]

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(len(got[t]) < n for t, n in want.items()):
            collect(await consumer.getmany(timeout_ms=500))
        # a little longer, so duplicates would show up too
        end = time.monotonic() + 3
        while time.monotonic() < end:
            collect(await consumer.getmany(timeout_ms=500))
        return got
    finally:
        await producer.stop()
        await consumer.stop()


def test_prompts_become_verdicts_and_audit_records_once(settings: Settings,
                                                        worker: subprocess.Popen[bytes]) -> None:
    run = time.time_ns()
    good = PromptRequest(request_id=f"w-good-{run}", tenant="acme", prompt="a dog running on a beach")
    bad = PromptRequest(request_id=f"w-bad-{run}", tenant="acme",
                        prompt="step-by-step video showing how to make a pipe bomb")
    raw_bad = bad.model_dump_json().encode()
    poison = b'{"tenant": "acme", "prompt": 42}'
    got = asyncio.run(exchange(settings, [good.model_dump_json().encode(), raw_bad, raw_bad, poison],
                               {Topics.VERDICTS: 2, Topics.AUDIT: 2, Topics.DLQ: 1}))
    assert worker.poll() is None, "worker died"
    ours = {good.request_id, bad.request_id}
    verdicts = {v["request_id"]: v for v in got[Topics.VERDICTS] if v["request_id"] in ours}
    assert verdicts[good.request_id]["action"] == "allow"
    assert verdicts[bad.request_id]["action"] == "block"
    assert verdicts[bad.request_id]["categories"][0]["category"] == "illicit/weapons"
    audits = Counter(a["subject"] for a in got[Topics.AUDIT] if a["subject"] in ours)
    assert audits == {good.request_id: 1, bad.request_id: 1}, "redelivery must not add an audit record"
    assert Counter(v["request_id"] for v in got[Topics.VERDICTS] if v["request_id"] in ours)[bad.request_id] == 1
    letters = [d for d in got[Topics.DLQ] if '"prompt": 42' in d["payload"]]
    assert letters and "prompt" in letters[0]["error"]


def test_worker_config_bounds_in_flight_work(settings: Settings, gate: PromptGate) -> None:
    s = settings.model_copy(update={"worker_concurrency": 3, "topic_partitions": 6, "worker_name": "cfg",
                                    "prompt_batch_max": 8, "fetch_max_wait_ms": 7})
    app = build_app(s, stages=["media"])
    assert app.conf.id == "cfg-media"  # a role is its own consumer group
    assert app.conf.topic_partitions == 6 and app.conf.stream_buffer_maxsize == 12
    assert [a.concurrency for a in app.agents.values()] == [3]
    # the prompt stage's messages share model calls: it takes a batch's worth at once
    app = build_app(s, prompts=gate, stages=["prompt"])
    assert [a.concurrency for a in app.agents.values()] == [8] and app.conf.stream_buffer_maxsize == 32
    assert isinstance(app.transport, worker_module._Transport) and app.fetch_max_wait_ms == 7
    with pytest.raises(ValueError, match="unknown stages"):
        build_app(s, prompts=gate, stages=["prompt", "frame"])


def test_health_worker_reads_the_heartbeat(settings: Settings, worker: subprocess.Popen[bytes]) -> None:
    env = env_for(settings)
    health = [sys.executable, "-m", "pipeline.cli", "health", "worker"]
    deadline = time.monotonic() + 60
    while (done := subprocess.run(health, cwd=ROOT, env=env, capture_output=True, text=True)).returncode != 0:
        assert time.monotonic() < deadline, done.stderr
        time.sleep(1)
    assert "genguard-test beat" in done.stdout
    stale = subprocess.run([*health, "--max-age", "0.001"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert stale.returncode == 1 and "last heartbeat" in stale.stderr
    empty = subprocess.run(health, cwd=ROOT, env={**env, "GENGUARD_VAR_DIR": str(settings.var_dir / "none")},
                           capture_output=True, text=True)
    assert empty.returncode == 1 and "no worker heartbeat" in empty.stderr




def test_hostile_text_on_the_stream_gets_a_verdict_never_a_dead_letter(settings: Settings,
                                                                       worker: subprocess.Popen[bytes]) -> None:
    """Lone surrogates (which pydantic's own JSON parser refuses), NUL, bidi overrides, 3,900 emoji,
    zalgo marks and mixed scripts each come back as a verdict on genguard.verdicts."""
    run = time.time_ns()
    ids = [f"w-hostile-{run}-{i}" for i in range(len(HOSTILE))]
    raws = [json.dumps({"request_id": rid, "tenant": "acme", "prompt": text}).encode()
            for rid, text in zip(ids, HOSTILE, strict=True)]  # json.dumps escapes the surrogate as \ud800
    got = asyncio.run(exchange(settings, raws, {Topics.VERDICTS: len(ids)}))
    assert worker.poll() is None, "worker died"
    verdicts = {v["request_id"]: v for v in got[Topics.VERDICTS] if v["request_id"] in ids}
    assert set(verdicts) == set(ids), f"no verdict for {set(ids) - set(verdicts)}"
    assert all(v["action"] in ("allow", "review", "block") for v in verdicts.values())




@settings_(max_examples=1, deadline=None, derandomize=True,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(texts=st.lists(st.text(st.characters(categories=EVERY_CATEGORY), min_size=1, max_size=200),
                      min_size=25, max_size=25))
def test_any_unicode_on_the_stream_gets_a_verdict(settings: Settings, worker: subprocess.Popen[bytes],
                                                  texts: list[str]) -> None:
    """One generated batch over the whole code-point range, surrogates included, through the real
    broker and worker: every message comes back as a verdict (a batch, since each exchange costs seconds)."""
    run = time.time_ns()
    ids = [f"w-fuzz-{run}-{i}" for i in range(len(texts))]
    raws = [json.dumps({"request_id": rid, "tenant": "acme", "prompt": text}).encode()
            for rid, text in zip(ids, texts, strict=True)]
    got = asyncio.run(exchange(settings, raws, {Topics.VERDICTS: len(ids)}))
    assert worker.poll() is None, "worker died"
    answered = {v["request_id"] for v in got[Topics.VERDICTS]} & set(ids)
    assert answered == set(ids), f"no verdict for {len(set(ids) - answered)} of {len(ids)}"
