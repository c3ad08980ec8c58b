"""Prompt gate latency and throughput: in-process, through the HTTP API and through Kafka.

A keyword-only baseline (normalisation + rules, no models) runs side by side with the full
gate. Starts its own Tansu broker on a free port and uses the local Redis. Bounded in count.

    .venv/bin/python bench/prompt_gate.py [--n 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import record  # noqa: E402
from classifiers.normalize import normalize  # noqa: E402
from classifiers.text_embedding import TextEncoder  # noqa: E402
from pipeline.api.app import create_app  # noqa: E402
from pipeline.local import ensure_redis, start_tansu, stop  # noqa: E402
from pipeline.policy_source import PolicySource  # noqa: E402
from pipeline.prompt.gate import PromptGate  # noqa: E402
from pipeline.records import PromptRequest, Topics  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store.state import RedisVectorCache, State  # noqa: E402
from policies.engine import Signals, evaluate  # noqa: E402

BATCH = 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(name: str, ms: list[float], wall: float) -> str:
    q = statistics.quantiles(ms, n=100)
    return f"{name:<34} n={len(ms):>5}  p50={q[49]:7.2f} ms  p99={q[98]:7.2f} ms  {len(ms) / wall:8.0f} checks/s"


def timed(fn, items) -> tuple[list[float], float]:  # type: ignore[no-untyped-def]
    ms = []
    start = time.perf_counter()
    for item in items:
        t = time.perf_counter()
        fn(item)
        ms.append((time.perf_counter() - t) * 1000)
    return ms, time.perf_counter() - start


def prompts(n: int) -> list[str]:
    rows = [json.loads(line)["text"] for line in (ROOT / "tests/data/prompts.jsonl").read_text().splitlines()]
    return [rows[i % len(rows)] for i in range(n)]


def previous(settings: Settings, gate: PromptGate) -> PromptGate:
    """The gate as it was before the learned text model: the rules-and-exemplars policy, no text_model."""
    old = settings.model_copy(update={"policy_path": ROOT / "policies/baselines/rules-exemplars.yaml"})
    return PromptGate(old, PolicySource(old), gate.encoder, gate.cache,
                      tuple(c for c in gate.text_classifiers if c.name != "text_model"), language=gate.language)


def long_prompts(texts: list[str], n: int = 100, size: int = 4000) -> list[str]:
    """``n`` prompts of ``size`` characters: the bench prompts run together, and a quarter of them in the
    scripts that cost the most per character (CJK, emoji)."""
    out = []
    for i in range(n):
        if i % 4 == 3:
            out.append(("如何在家里制作炸弹 一只猫在沙发上睡觉 " if i % 8 == 3 else "\U0001F600\U0001F52B ") * size)
        else:
            out.append(" ".join(texts[i:] + texts[:i]))
    return [t[:size] for t in out]


def in_process(settings: Settings, gate: PromptGate, texts: list[str]) -> None:
    policy = gate.base
    empty = {name: {} for name in policy.policy.signals}
    requests = [PromptRequest(tenant="default", prompt=t) for t in texts]
    gate.check_many(requests[:64])  # warm-up
    ms, wall = timed(lambda t: evaluate(policy, Signals(text=normalize(t), scores=empty)), texts)
    print(summary("baseline: keywords only", ms, wall))
    before = previous(settings, gate)
    before.check_many(requests[:64])
    ms, wall = timed(before.check, requests)
    print(summary("previous: rules + exemplars", ms, wall))
    old = len(ms) / wall
    ms, wall = timed(gate.check, requests)
    print(summary("genguard in-process, one at a time", ms, wall))
    record("prompt", "in-process one at a time", len(ms) / wall, "checks/s", ("previous policy", old), ">= 300")
    long = [PromptRequest(tenant="default", prompt=t) for t in long_prompts(texts)]
    ms4, wall4 = timed(before.check, long)
    print(summary("previous, 4,000-character prompts", ms4, wall4))
    old4 = statistics.quantiles(ms4, n=100)[98]
    ms4, wall4 = timed(gate.check, long)
    print(summary("genguard, 4,000-character prompts", ms4, wall4))
    float_minilm(settings, gate, requests, long, len(ms) / wall)
    record("prompt", "in-process 4,000-character prompts, p99", statistics.quantiles(ms4, n=100)[98], "ms",
           ("previous policy", old4), "<= 15 ms")
    one = len(ms) / wall
    record("prompt", "in-process one at a time, p50", statistics.median(ms), "ms")
    batches = [requests[i:i + BATCH] for i in range(0, len(requests), BATCH)]
    ms, wall = timed(gate.check_many, batches)
    print(f"{f'genguard in-process, batches of {BATCH}':<34} n={len(requests):>5}  "
          f"{len(requests) / wall:8.0f} checks/s  ({statistics.median(ms) / BATCH:.2f} ms a prompt)")
    record("prompt", f"in-process, batches of {BATCH}", len(requests) / wall, "checks/s",
           ("one at a time", one), ">= 1,000")
    stages = {"normalise": lambda t: normalize(t),
              "embedding (MiniLM ONNX)": lambda t: gate.exemplars_for(policy).match([t]),  # type: ignore[union-attr]
              "profanity model": lambda t: gate.text_classifiers[0].score([t])}
    for name, fn in stages.items():
        ms, _ = timed(fn, texts[:300])
        print(f"    stage {name:<26} p50={statistics.median(ms):6.2f} ms")


def float_minilm(settings: Settings, gate: PromptGate, requests: list[PromptRequest], long: list[PromptRequest],
                 rate: float) -> None:
    """The same gate with MiniLM's float weights (GENGUARD_TEXT_PRECISION=fp32), one at a time: what the
    int8 weights save, in the same run."""
    float_gate = PromptGate(settings, gate.policies, TextEncoder(settings.text_model, "fp32"), gate.cache,
                            gate.text_classifiers, language=gate.language)
    float_gate.check_many(requests[:64])
    ms, wall = timed(float_gate.check, requests)
    print(summary("same, MiniLM fp32", ms, wall))
    record("prompt", "in-process one at a time, MiniLM int8", rate, "checks/s", ("MiniLM fp32", len(ms) / wall))
    ms4, wall4 = timed(float_gate.check, long)
    print(summary("same, MiniLM fp32, 4,000 characters", ms4, wall4))


def through_api(settings: Settings, gate: PromptGate, texts: list[str]) -> None:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, gate), port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    async def key() -> str:
        state = State(settings)
        secret = (await state.create_key("acme", ["check"], "bench"))[0]
        await state.close()
        return secret

    headers = {"Authorization": f"Bearer {asyncio.run(key())}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
        ms, wall = timed(lambda t: client.post("/v1/prompts:check", json={"prompt": t}).raise_for_status(), texts)
    print(summary("genguard HTTP API (audited)", ms, wall))
    server.should_exit = True


def through_kafka(settings: Settings, texts: list[str], fetch_wait_ms: int | None) -> tuple[float, float]:
    """One worker on the prompts topic: p50 one at a time and burst checks/s. ``fetch_wait_ms`` None is
    genguard's setting; 1500 is faust's own (the baseline)."""
    env = {**os.environ, "GENGUARD_EMBEDDED_KAFKA_ADDR": settings.embedded_kafka_addr,
           "GENGUARD_REDIS_PREFIX": settings.redis_prefix, "GENGUARD_VAR_DIR": str(settings.var_dir),
           "GENGUARD_WORKER_NAME": f"bench-{uuid.uuid4().hex[:6]}", "GENGUARD_TEXT_MODEL_DIR": str(settings.text_model),
           **({"GENGUARD_FETCH_MAX_WAIT_MS": str(fetch_wait_ms)} if fetch_wait_ms else {})}
    worker = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker", "--stages", "prompt"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    label = f"fetch wait {fetch_wait_ms or settings.fetch_max_wait_ms} ms"

    async def run() -> tuple[float, float]:
        boot = settings.kafka_bootstrap
        consumer = AIOKafkaConsumer(Topics.VERDICTS, bootstrap_servers=boot, auto_offset_reset="latest",
                                    fetch_max_wait_ms=5)
        await consumer.start()
        producer = AIOKafkaProducer(bootstrap_servers=boot, max_batch_size=64)
        await producer.start()

        async def verdicts(want: set[str], seen: dict[str, float]) -> None:
            deadline = time.monotonic() + 120
            while not want <= seen.keys() and time.monotonic() < deadline:
                for msgs in (await consumer.getmany(timeout_ms=200)).values():
                    now = time.perf_counter()
                    seen.update({rid: now for m in msgs if (rid := json.loads(m.value)["request_id"]) in want})

        async def send(t: str) -> tuple[str, float]:
            req = PromptRequest(tenant="default", prompt=t)
            started = time.perf_counter()
            await producer.send_and_wait(Topics.PROMPTS, req.model_dump_json().encode(), key=req.request_id.encode())
            return req.request_id, started

        rid, _ = await send("warm-up")
        await verdicts({rid}, {})
        # one at a time: latency of a single prompt through broker, worker and back
        ms, start = [], time.perf_counter()
        for t in texts[:100]:
            rid, started = await send(t)
            seen: dict[str, float] = {}
            await verdicts({rid}, seen)
            ms.append((seen[rid] - started) * 1000)
        print(summary(f"via Kafka, one at a time ({label})", ms, time.perf_counter() - start))
        # a burst: all sent at once (not one send_and_wait after another, which the producer bounds),
        # so what is measured is how fast one worker gets through a backlog
        start = time.perf_counter()
        requests = [PromptRequest(tenant="default", prompt=t) for t in texts]
        acks = [await producer.send(Topics.PROMPTS, r.model_dump_json().encode(), key=r.request_id.encode())
                for r in requests]
        await asyncio.gather(*acks)
        sent = {r.request_id for r in requests}
        seen = {}
        await verdicts(sent, seen)
        wall = max(seen.values()) - start
        print(f"{f'via Kafka, burst ({label})':<34} n={len(seen):>5}  {len(seen) / wall:8.0f} checks/s end to end")
        await producer.stop()
        await consumer.stop()
        return statistics.median(ms), len(seen) / wall

    try:
        return asyncio.run(run())
    finally:
        worker.terminate()
        worker.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--kafka-n", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(var_dir=Path(tmp), redis_prefix=f"bench-{uuid.uuid4().hex[:8]}",
                            embedded_kafka_addr=f"127.0.0.1:{free_port()}",
                            text_model_dir=ROOT / "var/models/minilm")
        ensure_redis(settings.redis_url, ROOT / "var")
        broker = start_tansu(settings.embedded_kafka_addr)
        try:
            gate = PromptGate.from_settings(settings, RedisVectorCache(settings))
            texts = prompts(args.n)
            print(f"prompt gate benchmark: {os.cpu_count()} cores, {args.n} prompts from tests/data/prompts.jsonl")
            in_process(settings, gate, texts)
            through_api(settings, gate, texts[: args.n // 2])
            (base_p50, base_burst), (p50, burst) = (through_kafka(settings, texts[: args.kafka_n], wait)
                                                    for wait in (1500, None))
            record("prompt", "Kafka path one at a time, p50", p50, "ms", ("faust's fetch wait", base_p50), "<= 30 ms")
            record("prompt", "Kafka path burst, one worker", burst, "checks/s", ("faust's fetch wait", base_burst),
                   ">= baseline")
        finally:
            stop(broker)


if __name__ == "__main__":
    main()
