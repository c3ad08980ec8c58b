"""``genguard hashes``: the known-content PDQ lists that policies name under ``hash_lists``."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.common import settings


@click.group()
def hashes() -> None:
    """Known-content hash lists (PDQ) that policies name under hash_lists."""


@hashes.command("add")
@click.argument("list_name")
@click.argument("items", nargs=-1, required=True)
@click.option("--label", default="")
def hashes_add(list_name: str, items: tuple[str, ...], label: str) -> None:
    """Add PDQ hashes (64 hex digits), or image/video files whose frames are hashed, to LIST_NAME.
    Frames whose hash quality is below 50 (flat, featureless) are not added."""
    from classifiers.pdq import pdq
    from pipeline.media import decode, limits_of
    from pipeline.store.hashes import HashStore

    s = settings()
    entries: list[tuple[str, str, int | None]] = []
    for item in items:
        path = Path(item)
        if path.exists():
            media = decode(path, limits_of(s))
            for f in media.frames:
                h, quality = pdq(f.image)
                entries.append((h, label or f"{path.name}@{f.t:.1f}s", quality))
        else:
            entries.append((item, label, None))
    try:
        n = HashStore(s.hashes_dir).add(list_name, entries)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"added {n} hashes to {list_name}" + (f" ({len(entries) - n} below quality 50 left out)"
                                                       if n < len(entries) else ""))


@hashes.command("import")
@click.argument("list_name")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def hashes_import(list_name: str, source: Path) -> None:
    """Import a CSV (a hash/pdq column, optional label and quality) or a file of one hash per line.
    Running workers pick the list up within seconds."""
    from pipeline.store.hashes import HashStore

    try:
        n, low = HashStore(settings().hashes_dir).import_file(list_name, source)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"imported {n} hashes into {list_name}" + (f" ({low} below quality 50 left out)" if low else ""))


@hashes.command("list")
def hashes_list() -> None:
    from pipeline.store.hashes import HashStore

    for info in HashStore(settings().hashes_dir).lists():
        click.echo(f"{info.name}: {info.hashes} hashes" + ("" if info.enabled else " (disabled)"))


@hashes.command("enable")
@click.argument("list_name")
def hashes_enable(list_name: str) -> None:
    """Match against LIST_NAME again (running workers reload within seconds)."""
    _set(list_name, True)


@hashes.command("disable")
@click.argument("list_name")
def hashes_disable(list_name: str) -> None:
    """Stop matching against LIST_NAME without deleting it (running workers reload within seconds)."""
    _set(list_name, False)


def _set(list_name: str, enabled: bool) -> None:
    from pipeline.store.hashes import HashStore

    try:
        HashStore(settings().hashes_dir).set_enabled(list_name, enabled)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"{list_name}: {'enabled' if enabled else 'disabled'}")
