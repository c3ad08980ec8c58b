"""Pipeline overhead: one video job at a time through the API, Kafka and one worker process (every
job stage), next to the same clip judged, released and indexed for trace in-process (the baseline:
the work itself, the same work the release stage does).
Where the rest goes: the time from one status to the next in the job's own history.

    .venv/bin/python bench/pipeline.py [--jobs 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import record  # noqa: E402
from bench.load import small_clip, stack  # noqa: E402
from pipeline.local import ensure_redis  # noqa: E402
from pipeline.prompt.gate import PromptGate  # noqa: E402
from pipeline.records import Job  # noqa: E402
from pipeline.release import wmkeys  # noqa: E402
from pipeline.release.produce import release_file, sign_with, trust_anchors  # noqa: E402
from pipeline.release.trace import index_release  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store.releases import ReleaseStore  # noqa: E402
from pipeline.store.state import RedisVectorCache  # noqa: E402
from pipeline.video.gate import VideoGate  # noqa: E402


def in_process(clip: Path, tmp: Path, jobs: int) -> float:
    models = ROOT / "var" / "models"
    settings = Settings(var_dir=tmp / "inproc", environment="demo", text_model_dir=models / "minilm",
                        whisper_model_dir=models / "whisper-base")
    cache = RedisVectorCache(settings)
    gate = VideoGate.from_settings(settings, PromptGate.from_settings(settings, cache), cache)
    signer, keyring = sign_with(settings), wmkeys.load(settings)
    releases, anchors = ReleaseStore(settings.releases_dir), trust_anchors(settings)
    times = []
    for n in range(jobs + 1):  # the first warms up
        started = time.perf_counter()
        decision, _, _ = gate.run(clip, None, "acme", f"inproc-{n}")
        job = Job(job_id=f"inproc-{n}", tenant="acme", sha256="", media_uri="", status="allowed",
                  decision=decision.model_dump(mode="json"))
        out = tmp / f"released-{n}.mp4"
        released = release_file(clip, out, job, signer, keyring.key)
        index_release(releases, job, out, released.manifest, anchors)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def through_pipeline(clip: Path, tmp: Path, jobs: int) -> tuple[float, dict[str, float]]:
    """Median seconds from POST /v1/videos to `released`, and the median time in each status."""
    video = clip.read_bytes()
    with stack(1, tmp) as (api, key), httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"},
                                                   timeout=60) as client:
        totals, spans = [], {}
        for n in range(jobs + 1):
            started = time.perf_counter()
            job_id = client.post("/v1/videos", files={"video": ("c.mp4", video, "video/mp4")}).json()["job_id"]
            while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] not in ("released", "blocked",
                                                                                   "review", "failed"):
                time.sleep(0.01)
            if job["status"] != "released":
                raise SystemExit(f"job {job_id} ended {job['status']}: {job.get('error') or job.get('decision')}")
            if n == 0:
                continue  # warm-up
            totals.append(time.perf_counter() - started)
            at = [(h["status"], datetime.fromisoformat(h["at"])) for h in job["history"]]
            spent: dict[str, float] = {}  # a status can come back (frames and audio set theirs in turn)
            for (status, t0), (_, t1) in pairwise(at):
                spent[status] = spent.get(status, 0.0) + (t1 - t0).total_seconds()
            for status, seconds in spent.items():
                spans.setdefault(status, []).append(seconds)
    return statistics.median(totals), {k: statistics.median(v) for k, v in spans.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=6)
    args = ap.parse_args()
    ensure_redis(Settings().redis_url, ROOT / "var")
    for speech in (False, True):  # the clip (a tone), then the same with a spoken sentence
        sound = "speech" if speech else "a tone"
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            clip = small_clip(tmp / "clip.mp4", speech)
            base = in_process(clip, tmp, args.jobs)
            print(f"{f'in-process: judge, release, index ({sound})':<48} {base:6.2f} s a job (median of {args.jobs})")
            total, spans = through_pipeline(clip, tmp, args.jobs)
            print(f"{'API + Kafka + 1 worker, one job at a time':<48} {total:6.2f} s a job = {total / base:.2f}x "
                  "(target <= 1.25x)")
            for status, seconds in spans.items():
                print(f"    in {status:<12} {seconds:6.2f} s")
        record("pipeline", f"one 3 s 360p job at a time ({sound}), API + Kafka + worker", total, "s",
               ("in-process", base), "<= 1.25x")


if __name__ == "__main__":
    main()
