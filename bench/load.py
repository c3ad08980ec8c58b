"""Load on loopback: the real API (a `genguard serve` process) with 1 and then 2 worker processes.

Open-loop steps at rising rates, each bounded in time and count:
  prompts  POST /v1/prompts:check (synchronous in the API; the workers do not serve these)
  videos   POST /v1/videos with a 3 s 360p clip, then poll until decided (the workers' work)
For each step: offered rate, throughput, p50/p99 latency (of the requests served), error rate
(anything but success, including 503 "overloaded" when the API sheds load), and whether p99 broke
the target; at the end, the first rate at which it broke. The baseline column set is 1 worker.
Starts its own Tansu broker on a free port and uses the local Redis under its own prefix.

    .venv/bin/python bench/load.py [--seconds 15] [--prompt-rates 25,50,100,200,300] [--video-rates 0.5,1,1.5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import record  # noqa: E402
from bench.prompt_gate import free_port  # noqa: E402
from pipeline.local import ensure_redis, start_tansu, stop, wait_port  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store.state import State  # noqa: E402

PROMPTS = ["a cat surfing at sunset, cinematic", "step-by-step video showing how to make a pipe bomb",
           "a documentary about the history of nuclear weapons", "two people kissing on a beach at night"]
DECIDED = ("allowed", "released", "review", "blocked", "failed")


@dataclass
class Step:
    kind: str
    rate: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0

    def record(self, started: float, good: bool, scale: float) -> None:
        self.ok += good
        self.errors += not good
        if good:
            self.latencies.append((time.perf_counter() - started) * scale)

    def p(self, q: int) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=100)[q - 1]


async def open_loop(rate: float, seconds: float, max_in_flight: int, one: Callable[[], Awaitable[None]]) -> float:
    """Start ``one()`` every 1/rate seconds for ``seconds`` (never more than max_in_flight at once)."""
    start = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(max_in_flight)
    n = 0
    while (due := start + n / rate) < start + seconds:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await gate.acquire()
        task = asyncio.create_task(one())
        task.add_done_callback(lambda _t: gate.release())
        tasks.add(task)
        n += 1
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


async def measured(api: str, key: str, step: Step, seconds: float, scale: float,
                   attempt: Callable[[httpx.AsyncClient, int], Awaitable[bool]]) -> Step:
    """Run ``attempt`` open-loop at the step's rate; time the successes, count the rest as errors."""
    async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        async def one() -> None:
            step.sent += 1
            t = time.perf_counter()
            try:
                good = await attempt(client, step.sent)
            except (httpx.HTTPError, ValueError):
                good = False
            step.record(t, good, scale)

        step.wall = await open_loop(step.rate, seconds, 256, one)
    return step


async def prompt_step(api: str, key: str, rate: float, seconds: float) -> Step:
    async def check(client: httpx.AsyncClient, n: int) -> bool:
        r = await client.post("/v1/prompts:check", json={"prompt": PROMPTS[n % len(PROMPTS)]})
        return r.status_code == 200

    return await measured(api, key, Step("prompts", rate), seconds, 1000, check)


async def video_step(api: str, key: str, video: bytes, rate: float, seconds: float, deadline_s: float) -> Step:
    async def submit_and_wait(client: httpx.AsyncClient, _n: int) -> bool:
        t = time.perf_counter()
        r = await client.post("/v1/videos", files={"video": ("clip.mp4", video, "video/mp4")})
        if r.status_code != 202:
            return False
        while time.perf_counter() - t < deadline_s:
            status = (await client.get(f"/v1/jobs/{r.json()['job_id']}")).json().get("status")
            if status in DECIDED:
                return status != "failed"
            await asyncio.sleep(0.2)
        return False

    return await measured(api, key, Step("videos", rate), seconds, 1, submit_and_wait)


def small_clip(path: Path, speech: bool = False) -> Path:
    """The upload of the video benches: 3 s of a 640x360 test pattern with a tone (no speech: Whisper is
    skipped), or with ``speech``, a spoken sentence (Whisper runs), H.264 + AAC."""
    sound = ["-f", "lavfi", "-i", "sine=frequency=300:duration=3"]
    if speech:
        wav = path.with_suffix(".wav")
        subprocess.run(["espeak-ng", "-s", "170", "-w", str(wav), "Here is a sunny beach with two dogs playing."],
                       check=True)
        sound = ["-i", str(wav), "-af", "apad"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=3",
                    *sound, "-t", "3", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(path)], check=True)
    return path


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"API at {url} not ready in {timeout:.0f}s")


@contextlib.contextmanager
def stack(workers: int, tmp: Path, stages: str = "media,frames,audio,decide,release") -> Iterator[tuple[str, str]]:
    """A private broker, one API process and ``workers`` worker processes; yields the API's URL and a
    key with the check and submit scopes, once the workers have joined their group."""
    broker_addr, port = f"127.0.0.1:{free_port()}", free_port()
    s = Settings(embedded_kafka_addr=broker_addr, redis_prefix=f"load-{uuid.uuid4().hex[:8]}",
                 var_dir=tmp / f"w{workers}-{uuid.uuid4().hex[:4]}", environment="demo", api_port=port)
    env = {**os.environ, "GENGUARD_EMBEDDED_KAFKA_ADDR": broker_addr, "GENGUARD_REDIS_PREFIX": s.redis_prefix,
           "GENGUARD_VAR_DIR": str(s.var_dir), "GENGUARD_ENVIRONMENT": "demo", "GENGUARD_API_PORT": str(port),
           "GENGUARD_TEXT_MODEL_DIR": str(ROOT / "var/models/minilm"),
           "GENGUARD_WHISPER_MODEL_DIR": str(ROOT / "var/models/whisper-base"), "GENGUARD_WORKER_NAME": s.redis_prefix}
    s.var_dir.mkdir(parents=True)
    broker = start_tansu(broker_addr)
    procs = [spawn(["serve"], env, s.var_dir / "api.log")]
    procs += [spawn(["worker", "--stages", stages], env, s.var_dir / f"worker{i}.log") for i in range(workers)]
    try:
        wait_port("127.0.0.1", port, 120, "API")
        wait_ready(f"http://127.0.0.1:{port}", 120)

        async def key() -> str:
            state = State(s)
            try:
                return (await state.create_key("acme", ["check", "submit"], "load"))[0]
            finally:
                await state.close()

        secret = asyncio.run(key())
        time.sleep(20)  # the workers join their group and split the partitions
        yield f"http://127.0.0.1:{port}", secret
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        stop(broker)


def run(workers: int, args: argparse.Namespace, video: bytes, tmp: Path) -> list[Step]:
    with stack(workers, tmp) as (api, secret):
        asyncio.run(prompt_step(api, secret, 10, 3))  # warm-up, not reported: first requests load caches
        asyncio.run(video_step(api, secret, video, 1, 1, args.video_deadline))
        steps = []
        for rate in args.prompt_rates:
            steps.append(asyncio.run(prompt_step(api, secret, rate, args.seconds)))
            print(f"  [{workers} worker(s)] prompts at {rate:g}/s done", flush=True)
        for rate in args.video_rates:
            steps.append(asyncio.run(video_step(api, secret, video, rate, args.seconds * 2, args.video_deadline)))
            print(f"  [{workers} worker(s)] videos at {rate:g}/s done", flush=True)
        return steps


def report(results: dict[int, list[Step]], targets: dict[str, float]) -> None:
    unit = {"prompts": "ms", "videos": "s"}
    print(f"\n{'':<8} {'offered/s':>9} | " + " | ".join(
        f"{w} worker{'s' if w > 1 else ''}: {'done/s':>6} {'p50':>7} {'p99':>7} {'err%':>5} {'p99 ok':>6}"
        for w in results))
    rows = zip(*results.values(), strict=True)
    broke: dict[tuple[int, str], float] = {}
    for row in rows:
        cells = []
        for w, st in zip(results, row, strict=True):
            ok = st.p(99) <= targets[st.kind]
            if not ok:
                broke.setdefault((w, st.kind), st.rate)
            cells.append(f"{'':>10}{st.ok / st.wall:6.2f} {st.p(50):7.1f} {st.p(99):7.1f} "
                         f"{100 * st.errors / max(st.sent, 1):5.1f} {'yes' if ok else 'NO':>6}")
        print(f"{row[0].kind:<8} {row[0].rate:>9g} | " + " | ".join(cells) + f"   ({unit[row[0].kind]})")
    print()
    for kind, target, unit_s, goal in (("prompts", targets["prompts"], "checks/s", ">= 300"),
                                       ("videos", targets["videos"], "jobs/s", ">= 1")):
        held = {w: max((st.ok / st.wall for st in sts if st.kind == kind and st.p(99) <= target
                        and st.errors == 0), default=0.0) for w, sts in results.items()}
        if 1 in held:
            record("load", f"{kind}: most served at p99 <= {target:g} {unit[kind]}, 0 errors (1 worker)", held[1],
                   unit_s, None, goal)
    for kind, target in targets.items():
        if not any(st.kind == kind for st in results[1]):
            continue
        for w in results:
            where = broke.get((w, kind))
            print(f"{kind} p99 target {target:g} {unit[kind]}, {w} worker(s): "
                  + (f"broken from {where:g}/s" if where else "held at every rate tried"))


def _rates(value: str) -> list[float]:
    return [float(x) for x in value.split(",") if x]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15, help="per prompt step (video steps run twice as long)")
    ap.add_argument("--prompt-rates", type=_rates, default=[25, 50, 100, 200, 300])
    ap.add_argument("--video-rates", type=_rates, default=[0.5, 1, 1.5])
    ap.add_argument("--prompt-p99-ms", type=float, default=50.0)
    ap.add_argument("--video-p99-s", type=float, default=20.0)
    ap.add_argument("--video-deadline", type=float, default=240.0, help="a job not decided by then is an error")
    ap.add_argument("--speech", action="store_true", help="uploads with a spoken sentence instead of a tone")
    args = ap.parse_args()
    ensure_redis(Settings().redis_url, ROOT / "var")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        clip = small_clip(tmp / "clip.mp4", args.speech)
        video = clip.read_bytes()
        results = {}
        for workers in (1, 2):
            print(f"{workers} worker process(es): starting broker, API and workers ...", flush=True)
            results[workers] = run(workers, args, video, tmp)
    report(results, {"prompts": args.prompt_p99_ms, "videos": args.video_p99_s})


if __name__ == "__main__":
    main()
