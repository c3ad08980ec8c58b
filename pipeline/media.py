"""The media stage: probe a video, sample its frames, extract its audio. One decode pass.

Probing first rejects what cannot be moderated, each with a stable error code. Frames are
sampled uniformly, at scene cuts, and first and last, capped per job; audio comes out as
16 kHz mono float32 for Whisper.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import av
import numpy as np

from pipeline.settings import Settings

log = logging.getLogger("genguard.media")

CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"}  # FFmpeg demuxer names
VIDEO_CODECS = {"h264", "hevc", "vp9", "av1", "vp8"}
MAX_FPS = 240  # more decoded frames per second of allowed duration than this is a bomb, not a video
HELD_FRAMES = 4  # sampled frames held while decoding, as a multiple of max_frames: bounds memory
Reason = Literal["first", "last", "uniform", "scene"]


class MediaError(ValueError):
    """A video genguard will not moderate; ``code`` is stable for clients, the message says why."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 500 * 1024 * 1024
    max_duration_s: float = 300.0
    max_width: int = 3840
    max_height: int = 3840
    sample_fps: float = 1.0
    max_frames: int = 48
    scene_threshold: float = 0.35
    frame_side: int = 640  # sampled frames are kept with at most this long side


def limits_of(settings: Settings) -> Limits:
    """The configured upload limits, applied to everything decoded from outside."""
    return Limits(max_bytes=settings.max_upload_bytes, max_duration_s=settings.max_video_seconds,
                  max_width=settings.max_video_side, max_height=settings.max_video_side,
                  sample_fps=settings.sample_fps, max_frames=settings.max_frames, frame_side=settings.frame_side)


@dataclass(frozen=True, slots=True)
class Probe:
    container: str
    codec: str
    width: int
    height: int
    fps: float
    duration_s: float
    has_audio: bool
    audio_codec: str | None
    pix_fmt: str = ""  # the decoder's pixel format, e.g. yuv420p


@dataclass(slots=True)
class Frame:
    t: float
    reasons: set[Reason]
    image: np.ndarray  # RGB uint8, H x W x 3


@dataclass(slots=True)
class Media:
    probe: Probe
    frames: list[Frame]
    audio: np.ndarray | None  # 16 kHz mono float32
    decoded_frames: int = 0
    notes: list[str] = field(default_factory=list)


def probe(path: Path, limits: Limits) -> Probe:
    size = path.stat().st_size
    if size == 0:
        raise MediaError("empty_file", "the upload is empty (0 bytes)")
    if size > limits.max_bytes:
        raise MediaError("too_large", f"the upload is {size} bytes; the limit is {limits.max_bytes}")
    try:
        with av.open(str(path)) as container:
            return _probe(container, limits)
    except av.error.FFmpegError as e:
        raise MediaError("not_a_video", f"not a readable video container: {e}") from e


def _probe(container: av.container.InputContainer, limits: Limits) -> Probe:
    fmt = container.format.name
    if fmt not in CONTAINERS:
        raise MediaError("unsupported_container", f"container {fmt!r} is not accepted (MP4, MOV, WebM, MKV)")
    if not container.streams.video:
        raise MediaError("no_video_stream", "the file has no video stream")
    video = container.streams.video[0]
    codec = video.codec_context.name
    if codec not in VIDEO_CODECS:
        accepted = ", ".join(sorted(VIDEO_CODECS))
        raise MediaError("unsupported_codec", f"video codec {codec!r} is not accepted ({accepted})")
    width, height = video.codec_context.width, video.codec_context.height
    if width <= 0 or height <= 0:
        raise MediaError("undecodable", "the video stream has no picture size")
    if width > limits.max_width or height > limits.max_height:
        raise MediaError("resolution_too_high",
                         f"{width}x{height} exceeds the limit of {limits.max_width}x{limits.max_height}")
    if video.duration is not None and video.time_base is not None:
        duration = float(video.duration * video.time_base)
    else:
        duration = (container.duration or 0) / av.time_base
    if duration <= 0:
        raise MediaError("zero_duration", "the video has no duration")
    if duration > limits.max_duration_s:
        raise MediaError("too_long", f"the video lasts {duration:.1f}s; the limit is {limits.max_duration_s:.0f}s")
    audio = container.streams.audio[0] if container.streams.audio else None
    fps = float(video.average_rate) if video.average_rate else 0.0
    return Probe(fmt, codec, width, height, fps, duration, audio is not None,
                 audio.codec_context.name if audio else None, video.codec_context.pix_fmt or "")


def _thumb(frame: av.VideoFrame) -> np.ndarray:
    return frame.reformat(width=32, height=18, format="gray").to_ndarray().astype(np.float32) / 255.0


def _sample(frame: av.VideoFrame, side: int) -> np.ndarray:
    """A sampled frame as RGB, scaled once (area filter) so its long side is at most ``side``: every
    frame model (PDQ 64, open_nsfw 224, CLIP 224, NudeNet 320) works below that, and a 4K frame
    costs each of them a full-size resize otherwise."""
    scale = min(1.0, side / max(frame.width, frame.height))
    if scale == 1.0:
        return frame.to_ndarray(format="rgb24")
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    return frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()


def decode(path: Path, limits: Limits) -> Media:
    """Probe, then one threaded pass over video and audio packets."""
    info = probe(path, limits)
    frames: list[Frame] = []
    chunks: list[np.ndarray] = []
    decoded = samples = 0
    next_uniform = 0.0
    prev_thumb: np.ndarray | None = None
    last: av.VideoFrame | None = None
    last_t = 0.0
    try:
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            video.thread_type = "AUTO"
            streams = [video]
            resampler = None
            if info.has_audio:
                streams.append(container.streams.audio[0])
                resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if isinstance(frame, av.AudioFrame):
                        samples = _audio(resampler, frame, chunks, samples, limits)  # type: ignore[arg-type]
                        continue
                    if frame.pts is None:
                        continue
                    t = float(frame.pts * frame.time_base)
                    decoded += 1
                    _within(frame, t, decoded, limits)
                    reasons: set[Reason] = set()
                    if decoded == 1:
                        reasons.add("first")
                    if t + 1e-6 >= next_uniform:
                        reasons.add("uniform")
                        next_uniform += 1.0 / limits.sample_fps
                    thumb = _thumb(frame)
                    if prev_thumb is not None and float(np.abs(thumb - prev_thumb).mean()) > limits.scene_threshold / 4:
                        reasons.add("scene")
                    prev_thumb = thumb
                    if reasons:
                        frames.append(Frame(t, reasons, _sample(frame, limits.frame_side)))
                        if len(frames) >= HELD_FRAMES * limits.max_frames:  # e.g. a strobe: a cut every frame
                            frames = _cap(frames, limits.max_frames)
                    last, last_t = frame, t
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as e:
        raise MediaError("undecodable", f"decoding failed after {decoded} frames: {e}") from e
    if decoded == 0 or last is None:
        raise MediaError("undecodable", "no frame could be decoded")
    if frames[-1].t != last_t:
        frames.append(Frame(last_t, {"last"}, _sample(last, limits.frame_side)))
    else:
        frames[-1].reasons.add("last")
    media = Media(info, _cap(frames, limits.max_frames), np.concatenate(chunks) if chunks else None, decoded)
    if len(frames) > limits.max_frames:
        media.notes.append(f"{len(frames)} frames sampled, capped at {limits.max_frames}")
    return media


def _audio(resampler: av.AudioResampler, frame: av.AudioFrame, chunks: list[np.ndarray], samples: int,
           limits: Limits) -> int:
    """Append ``frame`` as 16 kHz mono float32; the total so far, refused past the duration limit."""
    for out in resampler.resample(frame):
        chunks.append(out.to_ndarray().reshape(-1))
        samples += chunks[-1].size
    if samples > (limits.max_duration_s + 1) * 16000:
        raise MediaError("too_long", f"the audio runs past its declared length "
                         f"({samples / 16000:.1f}s); the limit is {limits.max_duration_s:.0f}s")
    return samples


def _within(frame: av.VideoFrame, t: float, decoded: int, limits: Limits) -> None:
    """The stream itself, not only its header, keeps to the limits: a header can lie about duration or size."""
    if frame.width > limits.max_width or frame.height > limits.max_height:
        raise MediaError("resolution_too_high", f"a frame at {t:.2f}s is {frame.width}x{frame.height}; the limit "
                                                f"is {limits.max_width}x{limits.max_height}")
    if t > limits.max_duration_s + 1 or decoded > limits.max_duration_s * MAX_FPS:
        raise MediaError("too_long", f"the stream runs past its declared length ({decoded} frames, {t:.1f}s); "
                                     f"the limit is {limits.max_duration_s:.0f}s")


def _cap(frames: list[Frame], cap: int) -> list[Frame]:
    """Keep first and last, then share the rest between scene cuts and uniform samples (half each
    when both are plentiful), each spread evenly over the video: a burst of cuts cannot crowd out
    the rest of it (a strobe at the start would otherwise take every sample)."""
    if len(frames) <= cap:
        return frames
    ends = [f for f in frames if f.reasons & {"first", "last"}]
    rest = [f for f in frames if not f.reasons & {"first", "last"}]
    scenes = [f for f in rest if "scene" in f.reasons]
    uniform = [f for f in rest if "scene" not in f.reasons]
    room = max(0, cap - len(ends))
    take = min(len(scenes), max(room // 2, room - len(uniform)))
    span = (frames[0].t, frames[-1].t)
    return sorted(ends + _spread(scenes, take, span) + _spread(uniform, room - take, span), key=lambda f: f.t)


def _spread(frames: list[Frame], n: int, span: tuple[float, float]) -> list[Frame]:
    """Up to ``n`` of ``frames`` (in time order): those nearest to ``n`` evenly spaced times inside ``span``."""
    if n >= len(frames):
        return frames
    if n <= 0:
        return []
    times = np.array([f.t for f in frames])
    chosen: set[int] = set()
    for target in np.linspace(*span, n + 2)[1:-1]:  # the nearest frame not taken yet, so n are kept
        chosen.add(next(i for i in np.argsort(np.abs(times - target)).tolist() if i not in chosen))
    return [frames[i] for i in sorted(chosen)]
