"""The review console's job page on loopback: how long a reviewer waits for a job with 48 sampled frames.

A 60 s clip with speech is decided in-process (48 frames sampled: the cap), stored as a job held for
review, and served by the real API; Debian's Chromium (Playwright) signs in and opens the job page.
Figures: the server's HTML time, the browser's DOMContentLoaded and load events, and the time until
every one of the 48 frames has been fetched and decoded (scrolled into view), best of a few rounds.

    .venv/bin/python bench/console.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import record  # noqa: E402
from pipeline.local import ensure_redis  # noqa: E402
from pipeline.prompt.gate import PromptGate  # noqa: E402
from pipeline.records import Job  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store.media import LocalMediaStore  # noqa: E402
from pipeline.store.state import JobLedger, RedisVectorCache, State  # noqa: E402
from pipeline.video.gate import VideoGate  # noqa: E402
from tests.helpers import ffmpeg, make_key, serve_api  # noqa: E402  (the same real API the tests run)

ALL_FRAMES = """async () => {
  const imgs = Array.from(document.querySelectorAll('.frame img'));
  for (const img of imgs) { img.loading = 'eager'; img.scrollIntoView(); }
  await Promise.all(imgs.map((img) => img.decode()));
  return imgs.length;
}"""


def held_job(settings: Settings, tmp: Path) -> str:
    """A 60 s clip with speech, decided in-process and stored as a job waiting for review."""
    wav, clip = tmp / "s.wav", tmp / "long.mp4"
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(wav), "he punched the man and kicked him on the ground"],
                   check=True)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=60", "-i", str(wav), "-af",
           "adelay=5000|5000,apad", "-t", "60", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(clip))
    cache = RedisVectorCache(settings)
    gate = VideoGate.from_settings(settings, PromptGate.from_settings(settings, cache), cache)
    job_id = f"job_bench_{uuid.uuid4().hex[:8]}"
    decision, media, _ = gate.run(clip, None, "acme", job_id)
    store = LocalMediaStore(settings.media_dir)
    uri, sha = store.put_upload(clip, ".mp4")
    store.save_samples(job_id, media)

    async def create() -> None:
        state = State(settings)
        try:
            job = Job(job_id=job_id, tenant="acme", sha256=sha, media_uri=uri, status="review",
                      decision=decision.model_dump(mode="json"), creator="c-bench")
            await JobLedger(state).create(job)
        finally:
            await state.close()

    asyncio.run(create())
    print(f"job {job_id}: {len(media.frames)} frames sampled, decision {decision.action}")
    return job_id


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        models = ROOT / "var" / "models"
        settings = Settings(var_dir=Path(t) / "var", environment="demo", redis_prefix=f"bench-{uuid.uuid4().hex[:6]}",
                            text_model_dir=models / "minilm", whisper_model_dir=models / "whisper-base")
        ensure_redis(settings.redis_url, ROOT / "var")
        job_id = held_job(settings, Path(t))
        key = make_key(settings, "acme", ["review"])
        gate = PromptGate.from_settings(settings, RedisVectorCache(settings))
        with serve_api(settings, gate) as api, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{api}/console/login")
            page.fill("#api_key", key)
            page.click("button[type=submit]")
            page.wait_for_url(f"{api}/console")
            cookies = {c["name"]: c["value"] for c in page.context.cookies()}
            html, dom, load, frames = [], [], [], []
            for _ in range(args.rounds):
                started = time.perf_counter()
                assert httpx.get(f"{api}/console/jobs/{job_id}", cookies=cookies).status_code == 200
                html.append(time.perf_counter() - started)
                started = time.perf_counter()
                page.goto(f"{api}/console/jobs/{job_id}", wait_until="domcontentloaded")
                dom.append(time.perf_counter() - started)
                page.wait_for_load_state("load")
                load.append(time.perf_counter() - started)
                shown = page.evaluate(ALL_FRAMES)
                frames.append(time.perf_counter() - started)
            browser.close()
    for name, values in (("server HTML", html), ("DOMContentLoaded", dom), ("load event", load),
                         (f"all {shown} frames fetched and decoded", frames)):
        print(f"{'job page with ' + str(shown) + ' frames, ' + name:<60} {min(values) * 1000:7.0f} ms")
    record("console", f"job page, {shown} frames: load event", round(min(load) * 1000), "ms")
    record("console", f"job page, {shown} frames: all frames decoded", round(min(frames) * 1000), "ms",
           baseline=("server HTML alone", round(min(html) * 1000)))


if __name__ == "__main__":
    main()
