"""Release cost on a 10 s 720p30 clip: watermark + re-encode, then signing, each apart, next to a
plain ffmpeg re-encode with the same encoder settings (the floor). Target: release <= 1.5x floor.

    .venv/bin/python bench/release.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.media import Limits, probe  # noqa: E402
from pipeline.records import Job  # noqa: E402
from pipeline.release.produce import find_watermark, moderation_summary  # noqa: E402
from pipeline.release.provenance import dev_credentials, sign_media, signer_from  # noqa: E402
from pipeline.release.watermark import MarkStyle, apply_marks  # noqa: E402


def best(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    style = MarkStyle()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        src = tmp / "clip.mp4"
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=1280x720:rate=30:duration=10", "-f", "lavfi", "-i", "sine=frequency=440",
                        "-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(src)], check=True)
        info = probe(src, Limits())
        floor = best(lambda: subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-c:v", "libx264", "-preset",
             style.preset, "-crf", str(style.crf), "-c:a", "copy", "-movflags", "+faststart", str(tmp / "plain.mp4")],
            check=True), args.rounds)
        marked = tmp / "marked.mp4"
        visible = best(lambda: apply_marks(src, marked, info, style, tmp), args.rounds)
        mark = best(lambda: apply_marks(src, marked, info, style, tmp, payload=0x5EC0DE42), args.rounds)
        started = time.perf_counter()
        found = find_watermark(marked)
        detect_s = time.perf_counter() - started
        signer = signer_from(dev_credentials(tmp / "keys"))
        job = Job(job_id="bench", tenant="bench", sha256="", media_uri="", status="allowed", decision={})
        sign = best(lambda: sign_media(marked, tmp / "signed.mp4", signer, moderation_summary(job), ingredient=src),
                    args.rounds)
        print(f"release benchmark: 10 s 1280x720 30 fps, libx264 {style.preset} CRF {style.crf}, "
              f"{os.cpu_count()} cores")
        print(f"{'baseline: plain ffmpeg re-encode':<40} {floor:6.2f} s  RTF {floor / info.duration_s:.2f}")
        print(f"{'visible mark only + re-encode':<40} {visible:6.2f} s  RTF {visible / info.duration_s:.2f}")
        print(f"{'visible + invisible marks + re-encode':<40} {mark:6.2f} s  RTF {mark / info.duration_s:.2f}")
        print(f"{'C2PA sign (ES256, with ingredient)':<40} {sign:6.2f} s")
        total = mark + sign
        print(f"{'release total':<40} {total:6.2f} s  = {total / floor:.2f}x the plain re-encode (target <= 1.5x)")
        print(f"{'invisible watermark read-back (verify)':<40} {detect_s:6.2f} s  "
              f"(payload {'found' if found.payload == 0x5EC0DE42 else 'NOT found'})")


if __name__ == "__main__":
    main()
