"""The reference image of an image-to-video request, checked before anything is generated.

An image is read defensively (its header is checked against the pixel limit before a single pixel
is decoded; animated and truncated files are refused with their own codes; EXIF orientation is
applied; CMYK, palette and 16-bit images are converted), then judged as one sampled video frame
would be: open_nsfw, NudeNet where installed, CLIP where a model is placed, PDQ hash lists, and
faces against the tenant's consent registry. A face with no consent attestation in the request
fires the likeness category at medium (review by default; a tenant may allow or block it).
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.audit import events
from pipeline.media import Frame, MediaError
from pipeline.records import ImageVerdict
from pipeline.stages import StageContext
from pipeline.store.likeness import Enrolled, LikenessStore
from pipeline.video.gate import VideoGate
from pipeline.video.likeness import face_signals
from policies import engine
from policies.engine import CompiledPolicy, Match

FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"}
LEDGER = "image"  # the image check's claims in the Redis ledger


def read_image(path: Path, max_pixels: int, side: int) -> tuple[np.ndarray, int, int]:
    """RGB uint8 with at most ``side`` pixels on its long side, upright, plus the original size.
    Raises MediaError with a stable code for anything genguard will not judge."""
    if path.stat().st_size == 0:
        raise MediaError("image_empty", "the image has zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            if image.format not in FORMATS:
                raise MediaError("unsupported_image", f"{image.format} images are not accepted; send JPEG, PNG, "
                                 "WebP, GIF, BMP or TIFF")
            width, height = image.size
            if width * height > max_pixels:
                raise MediaError("image_too_large", f"{width}x{height} is {width * height / 1e6:.0f} megapixels; "
                                 f"the limit is {max_pixels / 1e6:.0f}")
            if getattr(image, "n_frames", 1) > 1:
                raise MediaError("animated_image", f"an animated {image.format} ({image.n_frames} frames) is not a "
                                 "reference image: send one still frame")
            image.load()
            upright = ImageOps.exif_transpose(image)
    except MediaError:
        raise
    except UnidentifiedImageError as e:
        raise MediaError("unsupported_image", "not an image genguard can read (JPEG, PNG, WebP, GIF, BMP, "
                         "TIFF)") from e
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise MediaError("image_too_large", f"decompression bomb: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's words for a cut-off or corrupt file
        raise MediaError("image_truncated", f"the image is truncated or corrupt: {e}") from e
    rgb = _to_rgb(upright)
    rgb.thumbnail((side, side), Image.Resampling.BOX)
    return np.asarray(rgb, dtype=np.uint8), width, height


def _to_rgb(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey images scaled to 8 bits (Pillow's own conversion clips them), the rest by Pillow."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or grey.max() > 255 else 255.0
        image = Image.fromarray(np.clip(grey / top * 255, 0, 255).astype(np.uint8))
    elif image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        flat = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(flat, image.convert("RGBA"))
    return image.convert("RGB")


def judge_image(gate: VideoGate, image: np.ndarray, policy: CompiledPolicy, request_id: str, tenant: str,
                enrolled: Sequence[Enrolled], creator: str | None, consent: bool) -> ImageVerdict:
    """One image judged like one sampled frame, plus the reference-face rule; pure but for the models."""
    started = time.perf_counter()
    h, w = image.shape[:2]
    obs = gate.observe_frames([Frame(t=0.0, reasons={"first"}, image=image)], {"width": w, "height": h}, [],
                              faces="embed" if enrolled else "detect")
    sig, used = gate.frame_signals(obs, policy)
    judged = face_signals(obs, policy, sig, used, enrolled, creator)
    faces = judged[0].faces if judged else []
    spec = policy.policy.faces
    if spec is not None and faces and not consent:
        sig.matches.setdefault(spec.category, []).append(Match(
            kind="face", id="reference-face", severity="medium",
            detail=f"{len(faces)} face(s) in the reference image and no consent attestation in the request"))
    evaluation = engine.evaluate_many(policy, [("image", sig)])
    return ImageVerdict(**evaluation.model_dump(), request_id=request_id, tenant=tenant, sha256="", width=w,
                        height=h, faces=faces, consent_attested=consent, model_versions=obs.models,
                        latency_ms=round((time.perf_counter() - started) * 1000, 1))


async def check(st: StageContext, gate: VideoGate, path: Path, tenant: str, actor: str, request_id: str,
                creator: str | None, consent: bool, idempotent: bool) -> tuple[ImageVerdict, bool]:
    """The audited, idempotent image check (the API's and the CLI's); raises MediaError for bad input,
    after recording it. Returns the verdict and whether it replays an earlier one."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()

    async def work() -> ImageVerdict:
        s = st.settings
        try:
            image, width, height = await st.run(lambda: read_image(path, s.max_image_pixels, s.frame_side), "read")
        except MediaError as e:
            await st.audit(events.image_rejected(request_id, tenant, actor, sha, e.code, str(e)))
            raise
        enrolled = await LikenessStore(st.state, s).view(tenant, creator)
        policy = st.policies.for_tenant(tenant)
        verdict = await st.run(lambda: judge_image(gate, image, policy, request_id, tenant, enrolled, creator,
                                                   consent), "image check")
        verdict = verdict.model_copy(update={"sha256": sha, "width": width, "height": height})
        await st.audit(events.image_verdict(verdict, actor))
        return verdict

    if not idempotent:
        return await work(), False
    return await st.once(LEDGER, f"{tenant}:{request_id}", ImageVerdict, work)
