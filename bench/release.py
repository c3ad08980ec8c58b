"""Release cost on a 10 s 720p30 clip: watermark + re-encode, then signing, each apart, next to a
plain ffmpeg re-encode with the same encoder settings (the floor). Target: release <= 1.1x floor.

    .venv/bin/python bench/release.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import record  # noqa: E402
from pipeline.media import Limits, probe  # noqa: E402
from pipeline.records import Job  # noqa: E402
from pipeline.release import wmkeys  # noqa: E402
from pipeline.release.produce import moderation_summary  # noqa: E402
from pipeline.release.provenance import dev_credentials, sign_media, signer_from  # noqa: E402
from pipeline.release.verify import find_watermark  # noqa: E402
from pipeline.release.watermark import MarkStyle, apply_marks  # noqa: E402
from pipeline.settings import Settings  # noqa: E402


def cost(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Wall seconds and CPU seconds (this process and its children: ffmpeg) of one call."""
    def cpu() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    wall, used = time.perf_counter(), cpu()
    fn()
    return time.perf_counter() - wall, cpu() - used


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    style = MarkStyle()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        src = tmp / "clip.mp4"
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=1280x720:rate=30:duration=10", "-f", "lavfi", "-i", "sine=frequency=440",
                        "-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(src)], check=True)
        info = probe(src, Limits())
        marked, signed = tmp / "marked.mp4", tmp / "signed.mp4"
        signer = signer_from(dev_credentials(tmp / "keys"))
        ring = wmkeys.load(Settings(var_dir=tmp))
        job = Job(job_id="bench", tenant="bench", sha256="", media_uri="", status="allowed", decision={})
        steps = {
            "baseline: plain ffmpeg re-encode": lambda: subprocess.run(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-c:v", "libx264", "-preset",
                 style.preset, "-crf", str(style.crf), "-c:a", "copy", "-movflags", "+faststart",
                 str(tmp / "plain.mp4")], check=True),
            "visible mark only + re-encode": lambda: apply_marks(src, marked, info, style, tmp),
            "visible + invisible marks + re-encode": lambda: apply_marks(src, marked, info, style, tmp,
                                                                         payload=(0x5EC0DE42, ring.key)),
            "C2PA sign (ES256, with ingredient)": lambda: sign_media(marked, signed, signer, moderation_summary(job),
                                                                     ingredient=src),
        }
        # interleaved rounds, so a noisy neighbour slows every step alike; medians of each
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, fn in steps.items():
                runs[name].append(cost(fn))
        wall = {n: statistics.median(w for w, _ in r) for n, r in runs.items()}
        cpu = {n: statistics.median(c for _, c in r) for n, r in runs.items()}
        print(f"release benchmark: 10 s 1280x720 30 fps, libx264 {style.preset} CRF {style.crf}, "
              f"{os.cpu_count()} cores, median of {args.rounds} interleaved rounds")
        for name in steps:
            print(f"{name:<40} {wall[name]:6.2f} s wall  {cpu[name]:6.2f} s CPU")
        names = list(steps)
        floor_wall, floor_cpu = wall[names[0]], cpu[names[0]]
        total_wall, total_cpu = wall[names[2]] + wall[names[3]], cpu[names[2]] + cpu[names[3]]
        print(f"{'release total':<40} {total_wall:6.2f} s wall = {total_wall / floor_wall:.2f}x, "
              f"{total_cpu:6.2f} s CPU = {total_cpu / floor_cpu:.2f}x the plain re-encode (target <= 1.1x)")
        record("release", "release (marks + re-encode + sign), wall", total_wall, "s",
               ("plain re-encode", floor_wall), "<= 1.1x")
        record("release", "release, CPU time", total_cpu, "s", ("plain re-encode", floor_cpu), "<= 1.1x")
        started = time.perf_counter()
        found, _ = find_watermark(signed, ring)
        detect_s = time.perf_counter() - started
        print(f"{'invisible watermark read-back (verify)':<40} {detect_s:6.2f} s  "
              f"(payload {'found' if found.payload == 0x5EC0DE42 else 'NOT found'})")


if __name__ == "__main__":
    main()
