"""The watermarks, in one encode: the invisible pattern (``pipeline.release.invisible``), then the visible,
moving mark: semi-transparent, it holds in one corner, glides to the opposite one, and so on, so
no fixed crop removes it. ffmpeg's filters do the pixel work (no Python loop per pixel); audio is
copied when it is AAC already; H.264/AAC MP4 with faststart."""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from pipeline.media import Probe
from pipeline.release.invisible import pattern_yuv


@dataclass(frozen=True, slots=True)
class MarkStyle:
    text: str = "AI-generated · genguard"
    opacity: float = 0.65
    width_frac: float = 0.28  # mark width as a share of the video width
    period_s: float = 3.0  # one corner-to-corner leg
    hold_frac: float = 0.6  # share of a leg spent still in its corner
    crf: int = 23
    preset: str = "veryfast"


def mark_png(style: MarkStyle, video_width: int) -> bytes:
    """The mark as an RGBA PNG sized to the video: white text on a dark translucent plate."""
    width = max(64, int(video_width * style.width_frac))
    font = ImageFont.load_default(size=max(10, width // max(8, len(style.text) // 2 + 4)))
    box = ImageDraw.Draw(Image.new("RGBA", (1, 1))).textbbox((0, 0), style.text, font=font)
    pad = max(4, width // 40)
    img = Image.new("RGBA", (box[2] - box[0] + 2 * pad, box[3] - box[1] + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    alpha = int(255 * style.opacity)
    draw.rounded_rectangle((0, 0, img.width - 1, img.height - 1), radius=pad, fill=(0, 0, 0, alpha // 2))
    draw.text((pad - box[0], pad - box[1]), style.text, font=font, fill=(255, 255, 255, alpha))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def path_expr(style: MarkStyle) -> tuple[str, str]:
    """ffmpeg overlay x/y expressions: corners TL -> BR -> TR -> BL -> TL, smooth steps between."""
    margin = "0.03*main_w"
    xs = [margin, f"main_w-overlay_w-{margin}", f"main_w-overlay_w-{margin}", margin]
    ys = [margin, f"main_h-overlay_h-{margin}", margin, f"main_h-overlay_h-{margin}"]
    p, h = style.period_s, style.hold_frac
    leg = f"mod(floor(t/{p}),4)"
    s = f"clip((mod(t,{p})/{p}-{h})/{1 - h},0,1)"
    smooth = f"({s}*{s}*(3-2*{s}))"

    def pick(values: list[str], offset: int) -> str:
        expr = values[(3 + offset) % 4]
        for i in (2, 1, 0):
            expr = f"if(eq({leg},{i}),{values[(i + offset) % 4]},{expr})"
        return expr

    def axis(values: list[str]) -> str:
        a, b = pick(values, 0), pick(values, 1)
        return f"({a})+(({b})-({a}))*{smooth}"

    return axis(xs), axis(ys)


def apply_marks(src: Path, dest: Path, probe: Probe, style: MarkStyle, work_dir: Path,
                payload: tuple[int, bytes] | None = None) -> None:
    """One encode: the invisible pattern of ``payload`` (value, watermark key) added to every frame,
    then the visible mark on top."""
    mark = work_dir / "mark.png"
    mark.write_bytes(mark_png(style, probe.width))
    x, y = path_expr(style)
    inputs = ["-i", str(src), "-i", str(mark)]
    # A format filter only where the source is not yuv420p already: the pattern is yuv420p, and a
    # format filter in the chain cost 35% of the encode even when it converted nothing (bench/release.py).
    base = "[0:v]" if probe.pix_fmt == "yuv420p" else "[0:v]format=yuv420p[v0];[v0]"
    if payload is not None:
        pattern = work_dir / "pattern.yuv"
        pattern.write_bytes(pattern_yuv(payload[0], probe.width, probe.height, payload[1]))
        inputs += ["-stream_loop", "-1", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s",
                   f"{probe.width}x{probe.height}", "-i", str(pattern)]
        base += "[2:v]blend=all_mode=grainmerge:shortest=1[w];[w]"
    audio = ["-c:a", "copy"] if probe.audio_codec == "aac" else ["-c:a", "aac", "-b:a", "160k"]
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *inputs,
           "-filter_complex", f"{base}[1:v]overlay=x='{x}':y='{y}':format=yuv420[v]",
           "-map", "[v]", "-map", "0:a?", "-c:v", "libx264", "-preset", style.preset, "-crf", str(style.crf),
           *audio, "-movflags", "+faststart", str(dest)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"watermarking failed: {result.stderr.strip()[-500:]}")
