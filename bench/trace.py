"""Trace robustness: real footage released (watermark + manifest + index), attacked, traced back.

Releases: Sintel, three cuts of the cooking clip and two phone-style clips (portrait, narrated by
espeak-ng over Sintel and over the cooking clip). Attacks on each: re-encode CRF 28 and 35, 480p and
360p, crop 10% and 20%, horizontal mirror, 15 fps, a 3 s excerpt inside a 30 s compilation of other
footage, a screen recording (scaled, padded, noisy), and the sound alone under a new picture (only
where the release has sound worth fingerprinting). Then unrelated clips that must not trace:
synthetic test patterns of many kinds and sizes, and re-cuts of the same footage outside every
released span.

    .venv/bin/python bench/trace.py [--unrelated 500]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import record  # noqa: E402
from classifiers.chromaprint import informative  # noqa: E402
from pipeline.media import Limits  # noqa: E402
from pipeline.records import Job  # noqa: E402
from pipeline.release import wmkeys  # noqa: E402
from pipeline.release.produce import release_file, sign_with, trust_anchors  # noqa: E402
from pipeline.release.trace import ReleaseIndex, index_release, trace  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store.releases import ReleaseStore  # noqa: E402

SINTEL = ROOT / "var/testdata/sintel.mp4"
COOKING = ROOT / "var/testdata/cooking_droid_speed.mp4"
NARRATION = ("Here is how we make the sauce: onions first, slowly, then the tomatoes and a pinch of salt.",
             "The dragon flew over the mountains at dawn, and the girl followed its shadow into the valley.")
PATTERNS = ("testsrc", "testsrc2", "smptebars", "smptehdbars", "rgbtestsrc", "yuvtestsrc", "mandelbrot", "life",
            "cellauto", "pal75bars", "gradients")


def ff(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def sources(tmp: Path) -> dict[str, Path]:
    """What gets released. The cooking clip is cut so that the rest of it serves as unrelated footage."""
    out = {"sintel": SINTEL}
    for name, start in (("cooking-a", 0), ("cooking-b", 9)):
        out[name] = tmp / f"{name}.mp4"
        ff("-ss", str(start), "-t", "5", "-i", str(COOKING), "-c:v", "libx264", "-c:a", "aac", str(out[name]))
    for n, (base, start) in enumerate(((SINTEL, 0), (COOKING, 18))):
        wav = tmp / f"narration-{n}.wav"
        subprocess.run(["espeak-ng", "-s", "160", "-w", str(wav), NARRATION[n]], check=True)
        out[f"phone-{n}"] = tmp / f"phone-{n}.mp4"  # portrait 540x960, like a phone's
        ff("-ss", str(start), "-t", "6", "-i", str(base), "-i", str(wav), "-map", "0:v", "-map", "1:a", "-vf",
           "scale=540:960:force_original_aspect_ratio=increase,crop=540:960", "-af", "apad", "-t", "6",
           "-c:v", "libx264", "-c:a", "aac", str(out[f"phone-{n}"]))
    return out


def attacks(released: Path, tmp: Path, has_sound: bool) -> dict[str, Path]:
    def out(name: str) -> Path:
        return tmp / f"{released.stem}-{name}.mp4"
    enc = ["-map_metadata", "-1", "-c:v", "libx264", "-c:a", "aac"]
    made = {}
    for name, vf in (("crf28", None), ("crf35", None), ("480p", "scale=-2:480"), ("360p", "scale=-2:360"),
                     ("crop10", "crop=iw*0.9:ih*0.9"), ("crop20", "crop=iw*0.8:ih*0.8"), ("mirror", "hflip"),
                     ("screen", "scale=768:432:force_original_aspect_ratio=decrease:force_divisible_by=2,"
                                "pad=1280:720:(ow-iw)/2:(oh-ih)/2,noise=alls=10:allf=t")):
        crf = "35" if name == "crf35" else "28"
        ff("-i", str(released), *(["-vf", vf] if vf else []), *enc, "-crf", crf, str(out(name)))
        made[name] = out(name)
    ff("-i", str(released), "-r", "15", *enc, str(out("15fps")))
    made["15fps"] = out("15fps")
    # a 3 s excerpt between 13 s and 14 s of other footage, all at 640x360
    ff("-f", "lavfi", "-i", "mandelbrot=size=640x360:rate=25:end_scale=0.5", "-f", "lavfi", "-i",
       "anoisesrc=a=0.05:d=30", "-ss", "1", "-t", "3", "-i", str(released), "-filter_complex",
       "[0:v]trim=0:13,setpts=PTS-STARTPTS[a];[0:v]trim=16:30,setpts=PTS-STARTPTS[b];"
       "[2:v]scale=640:360:force_original_aspect_ratio=decrease,pad=640:360:(ow-iw)/2:(oh-ih)/2,fps=25,"
       "setsar=1[x];[a][x][b]concat=n=3:v=1:a=0[v];"
       "[1:a]atrim=0:13[aa];[2:a]aresample=44100,atrim=0:3[xa];[1:a]atrim=16:30,asetpts=PTS-STARTPTS[ba];"
       "[aa][xa][ba]concat=n=3:v=0:a=1[au]", "-map", "[v]", "-map", "[au]", *enc, str(out("excerpt")))
    made["excerpt"] = out("excerpt")
    if has_sound:
        ff("-f", "lavfi", "-i", "life=size=640x360:rate=25:mold=10", "-i", str(released), "-map", "0:v", "-map",
           "1:a", "-shortest", *enc, str(out("audio-only")))
        made["audio-only"] = out("audio-only")
    return made


def unrelated(tmp: Path, n: int) -> list[Path]:
    """Clips that share nothing with any release: test patterns, and cooking footage from 24 s on
    (releases use 0-5 s, 9-14 s, 18-24 s)."""
    made = []
    sizes = ("640x360", "1280x720", "720x1280", "480x480", "320x240")
    for i in range(n):
        path = tmp / f"unrelated-{i}.mp4"
        if i % 10 == 9:
            ff("-ss", str(24 + (i // 10) % 2 * 0.8), "-t", "1.2", "-i", str(COOKING), "-vf",
               f"scale={sizes[i % 5].replace('x', ':')}", "-c:v", "libx264", "-c:a", "aac", str(path))
        else:
            source = PATTERNS[i % len(PATTERNS)]
            size = f"size={sizes[(i // len(PATTERNS)) % 5]}:"
            ff("-f", "lavfi", "-i", f"{source}={size}rate=25", "-f", "lavfi", "-i",
               f"sine=frequency={200 + 7 * i}:duration=3", "-t", "3", "-vf", f"hue=h={i * 13 % 360}",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", "-shortest", str(path))
        made.append(path)
    return made


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--unrelated", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        s = Settings(var_dir=tmp / "var")
        ring, signer, anchors = wmkeys.load(s), sign_with(s), trust_anchors(s)
        store = ReleaseStore(s.releases_dir)
        copies: list[tuple[str, str, Path]] = []
        started = time.perf_counter()
        for name, src in sources(tmp).items():
            job = Job(job_id=f"job-{name}", tenant="bench", sha256="", media_uri="", status="allowed")
            dest = tmp / f"{name}-released.mp4"
            done = release_file(src, dest, job, signer, ring.key)
            job = job.model_copy(update={"watermark": f"{done.payload:08x}", "watermark_key": ring.current})
            rec = index_release(store, job, dest, done.manifest, anchors)
            sound = rec.audio is not None and informative(np.array(rec.audio, np.uint32))
            copies += [(job.job_id, attack, path) for attack, path in attacks(dest, tmp, sound).items()]
            print(f"released {name}: {len(rec.frames)} frame hashes, sound {'yes' if sound else 'no'}", flush=True)
        print(f"{len(copies)} attacked copies made in {time.perf_counter() - started:.0f} s", flush=True)
        index = ReleaseIndex(store)
        limits = Limits()

        def run(path: Path) -> dict:
            return asyncio.run(trace(path, index, ring, anchors, limits, None))

        per_attack: dict[str, list[bool]] = {}
        layers: Counter[str] = Counter()
        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            for (job_id, attack, _path), found in zip(copies, pool.map(run, [p for _, _, p in copies]), strict=True):
                ok = found["match"] is not None and found["match"]["job_id"] == job_id
                per_attack.setdefault(attack, []).append(ok)
                layers[found["match"]["via"] if ok else "missed"] += 1
                hits = {k: (v or {}).get("job_id") == job_id for k, v in found["layers"].items() if isinstance(v, dict)}
                print(f"  {job_id:<16} {attack:<10} {'traced' if ok else 'MISSED':<7} via "
                      f"{found['match']['via'] if found['match'] else '-':<9} layers {hits}", flush=True)
        took = time.perf_counter() - started
        print("\n| attack | traced |\n|---|---|")
        for attack, oks in per_attack.items():
            print(f"| {attack} | {sum(oks)}/{len(oks)} |")
        traced = sum(sum(v) for v in per_attack.values())
        print(f"traced {traced}/{len(copies)} ({traced / len(copies):.1%}); first layer: {dict(layers)}; "
              f"{took / len(copies):.2f} s a trace")
        record("trace", "attacked copies traced to the right job", traced / len(copies) * 100, "%", None, ">= 99%")
        clips = unrelated(tmp, args.unrelated)
        false = 0
        with ThreadPoolExecutor(2) as pool:
            for path, found in zip(clips, pool.map(run, clips), strict=True):
                if found["match"] is not None:
                    false += 1
                    print(f"  FALSE TRACE {path.name} -> {found['match']['job_id']} via {found['match']['via']}")
        print(f"false traces: {false} of {len(clips)} unrelated clips")
        record("trace", f"false traces over {len(clips)} unrelated clips", false, "", None, "0")


if __name__ == "__main__":
    main()
