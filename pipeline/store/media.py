"""Where media bytes live (never in Kafka): uploads by sha256, and per-job working files
(sampled frames, audio). One local-directory implementation; an S3-compatible one is one class."""

from __future__ import annotations

import abc
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.media import Frame, Media


class MediaStore(abc.ABC):
    @abc.abstractmethod
    def put_upload(self, src: Path, suffix: str) -> tuple[str, str]:
        """Store an upload; return its URI and sha256."""

    @abc.abstractmethod
    def local_path(self, uri: str) -> Path: ...

    @abc.abstractmethod
    def uri_of(self, path: Path) -> str: ...

    @abc.abstractmethod
    def released_path(self, job_id: str) -> Path: ...

    @abc.abstractmethod
    def save_samples(self, job_id: str, media: Media) -> None: ...

    @abc.abstractmethod
    def load_frames(self, job_id: str) -> list[Frame]: ...

    @abc.abstractmethod
    def load_frame(self, job_id: str, index: int) -> np.ndarray | None:
        """One sampled frame (the console shows them one by one); None when there is no such frame."""

    @abc.abstractmethod
    def load_audio(self, job_id: str) -> np.ndarray | None: ...


class LocalMediaStore(MediaStore):
    def __init__(self, root: Path) -> None:
        self.root = root

    def put_upload(self, src: Path, suffix: str) -> tuple[str, str]:
        digest = hashlib.sha256()
        with src.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        sha = digest.hexdigest()
        dest = self.root / "uploads" / sha[:2] / f"{sha}{suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copyfile(src, dest)
        return f"media://uploads/{sha[:2]}/{sha}{suffix}", sha

    def local_path(self, uri: str) -> Path:
        rel = uri.removeprefix("media://")
        path = (self.root / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"media URI {uri!r} points outside the media store")
        return path

    def uri_of(self, path: Path) -> str:
        return "media://" + path.resolve().relative_to(self.root.resolve()).as_posix()

    def released_path(self, job_id: str) -> Path:
        return self.root / "released" / f"{job_id}.mp4"

    def _job(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def save_samples(self, job_id: str, media: Media) -> None:
        d = self._job(job_id)
        d.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(media.frames):
            Image.fromarray(f.image).save(d / f"frame{i:03d}.png", compress_level=1)
        (d / "frames.json").write_text(json.dumps([{"t": f.t, "reasons": sorted(f.reasons)} for f in media.frames]))
        if media.audio is not None:
            np.save(d / "audio.npy", media.audio)

    def load_frames(self, job_id: str) -> list[Frame]:
        d = self._job(job_id)
        meta = json.loads((d / "frames.json").read_text())
        return [Frame(m["t"], set(m["reasons"]), np.asarray(Image.open(d / f"frame{i:03d}.png").convert("RGB")))
                for i, m in enumerate(meta)]

    def load_frame(self, job_id: str, index: int) -> np.ndarray | None:
        path = self._job(job_id) / f"frame{index:03d}.png"
        return np.asarray(Image.open(path).convert("RGB")) if index >= 0 and path.is_file() else None

    def load_audio(self, job_id: str) -> np.ndarray | None:
        path = self._job(job_id) / "audio.npy"
        return np.load(path) if path.exists() else None
