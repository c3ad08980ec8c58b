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
    """Add PDQ hashes (64 hex digits), or image/video files whose frames are hashed, to LIST_NAME."""
    from classifiers.pdq import pdq
    from pipeline.media import decode, limits_of
    from pipeline.store.hashes import HashStore

    s = settings()
    entries = []
    for item in items:
        path = Path(item)
        if path.exists():
            media = decode(path, limits_of(s))
            entries += [(pdq(f.image)[0], label or f"{path.name}@{f.t:.1f}s") for f in media.frames]
        else:
            entries.append((item, label))
    n = HashStore(s.hashes_dir).add(list_name, entries)
    click.echo(f"added {n} hashes to {list_name}")


@hashes.command("import")
@click.argument("list_name")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def hashes_import(list_name: str, source: Path) -> None:
    """Import a CSV (a hash/pdq column, optional label) or a file of one hash per line."""
    from pipeline.store.hashes import HashStore

    try:
        n = HashStore(settings().hashes_dir).import_file(list_name, source)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"imported {n} hashes into {list_name}")


@hashes.command("list")
def hashes_list() -> None:
    from pipeline.store.hashes import HashStore

    store = HashStore(settings().hashes_dir)
    for name in store.lists():
        click.echo(f"{name}: {sum(1 for _ in (store.root / f'{name}.csv').open()) - 1} hashes")
