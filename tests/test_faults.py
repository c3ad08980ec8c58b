"""Faults a deployment meets, on real parts: a private Tansu broker and a private Redis (append-only,
fsync always) that these tests kill and restart, real `genguard worker` processes, the real API, and
the audit writer's durable, hash-chained sink as the record of what happened.

Tansu keeps topics in memory: its restart loses every message in flight (Kafka's would not), so the
broker test shows the Redis ledger and the reconciler carrying a job across a total message loss."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner

from pipeline.audit.chain import AuditSink, verify
from pipeline.local import split_addr, start_tansu, stop, wait_port
from pipeline.prompt.gate import PromptGate
from pipeline.settings import Settings
from pipeline.stages import JOB_STAGES
from pipeline.store.state import JobLedger, State
from tests.helpers import clip, free_port, make_key, serve_api, start_worker, stop_all, upload, wait_for


@dataclass
class Stack:
    settings: Settings
    broker: subprocess.Popen[bytes]
    redis: subprocess.Popen[bytes]
    redis_dir: Path

    def start_redis(self) -> None:
        port = split_addr(self.settings.redis_url.removeprefix("redis://").split("/")[0])[1]
        self.redis = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", str(self.redis_dir)],
            stdout=subprocess.DEVNULL)  # fmt: skip
        wait_port("127.0.0.1", port, 10, "redis-server")

    def restart_redis(self) -> None:
        self.redis.kill()  # kill -9: only what the append-only file holds survives
        self.redis.wait()
        time.sleep(2)  # the workers and the API see it gone
        self.start_redis()

    def restart_broker(self) -> None:
        stop(self.broker)
        time.sleep(2)
        self.broker = start_tansu(self.settings.embedded_kafka_addr)


@pytest.fixture(scope="module")
def stack(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis_dir = tmp_path_factory.mktemp("redis-aof")
    addr = f"127.0.0.1:{free_port()}"
    s = base_settings.model_copy(update={
        "redis_url": f"redis://127.0.0.1:{free_port()}/0", "embedded_kafka_addr": addr, "environment": "demo",
        "var_dir": tmp_path_factory.mktemp("faults-var"), "job_lease_s": 4, "worker_name": f"faults-{time.time_ns()}"})
    st = Stack(s, start_tansu(addr), None, redis_dir)  # type: ignore[arg-type]
    st.start_redis()
    writer = start_worker(s, "audit")
    yield st
    stop_all([writer])
    stop(st.broker)
    st.redis.terminate()
    st.redis.wait(10)


@pytest.fixture(scope="module")
def api(stack: Stack, gate: PromptGate) -> Iterator[str]:
    with serve_api(stack.settings, gate) as url:
        yield url


@pytest.fixture(scope="module")
def key(stack: Stack, api: str) -> str:
    return make_key(stack.settings, "acme", ["submit", "review"])


def status(api: str, key: str, job_id: str) -> str:
    return httpx.get(f"{api}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()["status"]


def mid_job(api: str, key: str, job_id: str) -> None:
    """Wait until the frames and audio stages are under way."""
    deadline = time.monotonic() + 90
    while status(api, key, job_id) in ("queued", "sampling"):
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.05)


def recorded(s: Settings, job_id: str, want: str, timeout: float = 30) -> Counter[str]:
    """The job's events in the audit writer's durable sink, once ``want`` is there."""
    deadline = time.monotonic() + timeout
    while True:
        events = Counter(r.event for r in AuditSink(s.audit_dir, s.audit_segment_records).records()
                         if r.subject == job_id)
        if events[want] or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def assert_decided_once(s: Settings, api: str, key: str, job_id: str, expected: str) -> None:
    job = wait_for(api, key, job_id, timeout=150)
    assert job["status"] == expected, job
    assert sum(1 for h in job["history"] if h["status"] == expected) == 1
    events = recorded(s, job_id, "video.decision")
    assert events["video.decision"] == 1, events
    report = verify(AuditSink(s.audit_dir, s.audit_segment_records))
    assert report.ok, report.first_break


def test_two_workers_of_one_stage_share_partitions_and_take_each_job_once(stack: Stack, api: str, key: str,
                                                                          tmp_path: Path) -> None:
    s = stack.settings
    workers = [start_worker(s, *JOB_STAGES), start_worker(s, *JOB_STAGES)]  # one consumer group
    try:
        deadline = time.monotonic() + 120
        while len({last_assignment(w.log) for w in workers} - {None}) < 2:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the two workers never split the partitions"
            time.sleep(0.5)
        video = clip(tmp_path / "c.mp4", seconds=2)
        ids = one_job_id_per_partition(s.topic_partitions)
        for job_id in ids:
            assert upload(api, key, video, job_id=job_id).status_code == 202
        for job_id in ids:
            assert wait_for(api, key, job_id, timeout=150)["status"] in ("allowed", "released")
            assert recorded(s, job_id, "video.decision")["video.decision"] == 1
        taken = [set(re.findall(r"media: (\S+) claimed", w.log.read_text())) for w in workers]  # type: ignore
        assert taken[0] and taken[1] and not taken[0] & taken[1], taken  # both worked, no job twice
        assert taken[0] | taken[1] == set(ids)
    finally:
        stop_all(workers)


def last_assignment(log: Path) -> str | None:
    """The partitions of genguard.media that faust last assigned this worker, as it logs them."""
    found = re.findall(r"\| genguard\.media\s+\| (\{[^}]*\})", log.read_text(errors="replace"))
    return found[-1] if found and found[-1] != "{0-3}" else None


def one_job_id_per_partition(partitions: int) -> list[str]:
    """Job ids that the producers' default partitioner (murmur2 of the key) spreads over every partition."""
    pick, found, n = DefaultPartitioner(), {}, 0
    while len(found) < partitions:
        job_id = f"share-{time.time_ns()}-{n}"
        found.setdefault(pick(job_id.encode(), list(range(partitions)), list(range(partitions))), job_id)
        n += 1
    return list(found.values())


@pytest.mark.parametrize("restart", ["restart_broker", "restart_redis"])
def test_restart_mid_job(stack: Stack, api: str, key: str, speech: Path, restart: str) -> None:
    worker = [start_worker(stack.settings)]
    try:
        job_id = upload(api, key, speech).json()["job_id"]
        mid_job(api, key, job_id)
        getattr(stack, restart)()
        assert_decided_once(stack.settings, api, key, job_id, "blocked")
        assert wait_for(api, key, job_id)["history"][0]["status"] == "queued"  # the ledger kept the job's past
    finally:
        stop_all(worker)


def test_sigterm_lets_in_flight_stages_finish(stack: Stack, api: str, key: str, speech: Path) -> None:
    # a lease far longer than the test: a stage left unfinished could only be redone by the reconciler, too late
    s = stack.settings.model_copy(update={"job_lease_s": 900})
    first = start_worker(s)
    workers = [first]
    try:
        job_id = upload(api, key, speech).json()["job_id"]
        deadline = time.monotonic() + 90
        while f"audio: {job_id} claimed" not in first.log.read_text():  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the audio stage never started"
            time.sleep(0.05)
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0  # stopped cleanly once the transcription in flight was done
        assert {"frames", "audio"} <= set(asyncio.run(parts(s, job_id)))  # both parts stored before exit
        second = start_worker(s)
        workers.append(second)
        assert_decided_once(s, api, key, job_id, "blocked")
        assert f"audio: {job_id} claimed" not in second.log.read_text()  # type: ignore[attr-defined]  # not redone
    finally:
        stop_all(workers)


async def parts(s: Settings, job_id: str) -> dict[str, str]:
    state = State(s)
    try:
        return await JobLedger(state).parts(job_id)
    finally:
        await state.close()
