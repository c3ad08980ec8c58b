"""Faces on this machine: what the likeness check costs and how well it separates people.

1. Detection + embedding per frame (dlib HOG + ResNet), on frames of a real clip made from a photo:
   at the pipeline's sampled size (long side GENGUARD_FRAME_SIDE, 640), at 720p and at 1080p.
2. A whole 10 s 720p job in-process with faces on, for a tenant with nobody enrolled (faces found,
   not embedded) and one with people enrolled, next to the same job with the face model off.
3. Verification on the test photos (../shared/faces, fixtures only): same-person and
   different-person distance ranges next to the policy's threshold.

    .venv/bin/python bench/faces.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import record  # noqa: E402
from classifiers.faces import DlibFaces  # noqa: E402
from pipeline.local import ensure_redis  # noqa: E402
from pipeline.media import Limits, decode  # noqa: E402
from pipeline.prompt.gate import PromptGate  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store.likeness import Enrolled  # noqa: E402
from pipeline.store.state import RedisVectorCache  # noqa: E402
from pipeline.video.gate import VideoGate  # noqa: E402
from pipeline.video.image import read_image  # noqa: E402
from policies import engine  # noqa: E402
from tests.helpers import FACES, pan_clip  # noqa: E402  (the same real clip the tests make)

PEOPLE = {"obama.jpg": "obama", "obama2.jpg": "obama", "obama3.jpg": "obama", "obama_partial_face.jpg": "obama",
          "biden.jpg": "biden", "biden2.jpg": "biden"}


def per_frame(faces: DlibFaces, tmp: Path, rounds: int) -> dict[str, float]:
    """Milliseconds per frame of detection + embedding, by frame size; each frame shows one face."""
    costs = {}
    for label, size, side in [("640x360 (sampled, as the pipeline runs it)", "1280x720", 640),
                              ("1280x720", "1280x720", 1280), ("1920x1080", "1920x1080", 1920)]:
        clip = pan_clip(FACES / "obama.jpg", tmp / f"pan{size}.mp4", size=size)
        frames = [f.image for f in decode(clip, Limits(frame_side=side)).frames]
        faces.faces(frames[:1])
        took = min(_timed(lambda frames=frames: faces.faces(frames)) for _ in range(rounds))
        found = sum(len(f) for f in faces.faces(frames))
        costs[label] = took / len(frames) * 1000
        print(f"{'faces, detect + embed, ' + label:<60} {costs[label]:6.0f} ms/frame  ({found} faces in "
              f"{len(frames)} frames)")
    record("faces", "detect + embed per sampled frame (640x360)", round(costs[next(iter(costs))], 1), "ms")
    record("faces", "detect + embed per 1280x720 frame", round(costs["1280x720"], 1), "ms")
    record("faces", "detect + embed per 1920x1080 frame", round(costs["1920x1080"], 1), "ms")
    return costs


def _timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


def whole_job(tmp: Path, rounds: int) -> None:
    clip = pan_clip(FACES / "obama.jpg", tmp / "job720.mp4", size="1280x720")
    models = ROOT / "var" / "models"
    settings = Settings(var_dir=tmp / "var", environment="demo", text_model_dir=models / "minilm",
                        whisper_model_dir=models / "whisper-base")
    ensure_redis(settings.redis_url, ROOT / "var")
    cache = RedisVectorCache(settings)
    gate = VideoGate.from_settings(settings, PromptGate.from_settings(settings, cache), cache)
    finder, took = gate.faces, {}
    someone = [Enrolled("p-bench", np.zeros((1, 128), dtype=np.float32), False)]  # a stranger: no match
    for label, model, enrolled in (("faces off", None, []), ("faces on, nobody enrolled", finder, []),
                                   ("faces on, people enrolled", finder, someone)):
        gate.faces = model
        gate.run(clip, None, "default", "warm-up", enrolled)
        took[label] = min(_timed(lambda e=enrolled: gate.run(clip, None, "default", "bench", e))
                          for _ in range(rounds))
        print(f"{'whole job, 10 s 720p in-process, ' + label:<60} {took[label]:6.2f} s")
    for label in ("faces on, nobody enrolled", "faces on, people enrolled"):
        record("faces", f"whole 10 s 720p job, {label}", round(took[label], 2), "s",
               baseline=("the same job, faces off", round(took["faces off"], 2)))


def verification(faces: DlibFaces) -> None:
    limit = engine.load(ROOT / "policies" / "default.yaml").policy.faces.max_distance
    vectors = {}
    for name in PEOPLE:
        image, _, _ = read_image(FACES / name, 40_000_000, 640)
        (face,) = faces.faces([image])[0]
        vectors[name] = face.embedding
    same, other = [], []
    for a, b in itertools.combinations(vectors, 2):
        (same if PEOPLE[a] == PEOPLE[b] else other).append(float(np.linalg.norm(vectors[a] - vectors[b])))
    print(f"{'verification on the test photos':<60} same person {min(same):.2f}-{max(same):.2f} "
          f"({len(same)} pairs), different {min(other):.2f}-{max(other):.2f} ({len(other)} pairs); "
          f"threshold {limit}: {sum(d <= limit for d in same)}/{len(same)} matched, "
          f"{sum(d <= limit for d in other)}/{len(other)} false matches")
    record("faces", "same-person pairs matched at the shipped threshold", sum(d <= limit for d in same), "pairs",
           target=f"{len(same)} of {len(same)}")
    record("faces", "different-person pairs matched", sum(d <= limit for d in other), "pairs", target="0")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    faces = DlibFaces()
    print(f"faces benchmark: {faces.version}")
    with tempfile.TemporaryDirectory() as t:
        per_frame(faces, Path(t), args.rounds)
        verification(faces)
        whole_job(Path(t), args.rounds)


if __name__ == "__main__":
    main()
