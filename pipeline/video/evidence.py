"""Contact sheets: the frames that drove a decision, with their time, labels and scores."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.records import VideoDecision

COLOURS = {"allow": (46, 160, 67), "review": (230, 160, 0), "block": (210, 40, 40)}
THUMB_W, COLUMNS = 320, 4


def contact_sheet(decision: VideoDecision, images: list[np.ndarray], max_frames: int = 16) -> bytes:
    """PNG bytes. Evidence frames first; when nothing fired, an even spread of the sampled frames."""
    chosen = list(decision.evidence)[:max_frames] or [
        int(i) for i in np.linspace(0, len(images) - 1, min(len(images), 8)).round()] if images else []
    font = ImageFont.load_default(size=14)
    title_font = ImageFont.load_default(size=18)
    h = round(THUMB_W * images[0].shape[0] / images[0].shape[1]) if images else 180
    label_h, header = 64, 56
    rows = max(1, -(-len(chosen) // COLUMNS))
    sheet = Image.new("RGB", (COLUMNS * THUMB_W, header + rows * (h + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    colour = COLOURS[decision.action]
    draw.rectangle((0, 0, sheet.width, header), fill=colour)
    fired = ", ".join(f"{c.category} ({c.severity})" for c in decision.categories) or "no category fired"
    draw.text((10, 6), f"{decision.action.upper()}  job {decision.job_id}  {decision.policy_id}@"
              f"{decision.policy_version}", fill="white", font=title_font)
    draw.text((10, 32), fired[:150], fill="white", font=font)
    for n, i in enumerate(chosen):
        x, y = (n % COLUMNS) * THUMB_W, header + (n // COLUMNS) * (h + label_h)
        thumb = Image.fromarray(images[i]).resize((THUMB_W - 8, h - 8))
        sheet.paste(thumb, (x + 4, y + 4))
        scale = (THUMB_W - 8) / images[i].shape[1], (h - 8) / images[i].shape[0]
        for face in decision.frames[i].faces:  # matched faces boxed with the person id and the distance
            if face.person_id is not None:
                left, top, right, bottom = face.box
                box = (x + 4 + left * scale[0], y + 4 + top * scale[1], x + 4 + right * scale[0],
                       y + 4 + bottom * scale[1])
                tint = COLOURS["allow"] if face.granted else COLOURS["block"]
                draw.rectangle(box, outline=tint, width=3)
                label = f"{face.person_id} d={face.distance:.2f}"
                at = (box[0], max(y + 4, box[1] - 18))
                draw.rectangle(draw.textbbox(at, label, font=font), fill=tint)
                draw.text(at, label, fill="white", font=font)
        if i in decision.evidence:
            draw.rectangle((x + 1, y + 1, x + THUMB_W - 2, y + h - 2), outline=colour, width=4)
        lines = [f"t={decision.frames[i].t:.1f}s  ({', '.join(decision.frames[i].reasons)})",
                 *decision.evidence.get(i, [])[:2]]
        for k, line in enumerate(lines):
            draw.text((x + 6, y + h + 2 + k * 18), line[:44], fill="black", font=font)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
