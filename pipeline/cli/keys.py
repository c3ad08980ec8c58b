"""``genguard keys``: API keys, stored hashed in Redis; every change audited, the secret never."""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.common import settings, with_state

if TYPE_CHECKING:
    from pipeline.records import AuditEvent
    from pipeline.store.state import ApiKey, State


async def _audited(event: AuditEvent, key: ApiKey) -> None:
    from pipeline.audit import events
    from pipeline.kafka import publish_audit

    record = events.key_changed(event, key.key_id, key.tenant, key.name, list(key.scopes), f"cli:{getpass.getuser()}")
    await publish_audit(settings(), [record])


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (stored hashed in Redis)."""


@keys.command("create")
@click.option("--tenant", required=True)
@click.option("--scopes", default="check", show_default=True, help="Comma-separated, or 'all'.")
@click.option("--name", default="")
@click.option("--secret-file", type=click.Path(path_type=Path),
              help="Reuse the secret in this file if present, else write the new one there (mode 600).")
def keys_create(tenant: str, scopes: str, name: str, secret_file: Path | None) -> None:
    """Create a key; prints the secret once."""
    from pipeline.store.state import ALL_SCOPES

    wanted = list(ALL_SCOPES) if scopes == "all" else [s.strip() for s in scopes.split(",") if s.strip()]
    if bad := [s for s in wanted if s not in ALL_SCOPES]:
        raise click.BadParameter(f"unknown scopes {bad}; choose from {', '.join(ALL_SCOPES)}")
    secret = secret_file.read_text().strip() if secret_file and secret_file.exists() else None

    async def create(state: State) -> tuple[str, str]:
        if secret and (existing := await state.lookup_key(secret)):
            return secret, existing.key_id  # already registered: nothing to create or audit
        made, key = await state.create_key(tenant, wanted, name, secret)  # type: ignore[arg-type]
        try:
            await _audited("key.created", key)
        except Exception:
            await state.revoke_key(key.key_id)  # no key without its audit record
            raise
        return made, key.key_id

    made, key_id = with_state(create)
    if secret_file and not secret_file.exists():
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(made + "\n")
        secret_file.chmod(0o600)
    click.echo(made if not secret_file else f"key {key_id} for tenant {tenant} ({','.join(wanted)}): {made}")


@keys.command("list")
def keys_list() -> None:
    for k in with_state(lambda state: state.list_keys()):
        click.echo(f"{k.key_id}  tenant={k.tenant}  scopes={','.join(k.scopes)}  name={k.name}  created={k.created_at}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    async def revoke(state: State) -> bool:
        key = await state.revoke_key(key_id)
        if key is not None:
            await _audited("key.revoked", key)
        return key is not None

    if not with_state(revoke):
        raise click.ClickException(f"no key {key_id}")
    click.echo(f"revoked {key_id}")


@keys.command("rotate-watermark")
def keys_rotate_watermark() -> None:
    """Make a new current key for the invisible watermark (GENGUARD_WATERMARK_KEY_PATH, else the dev
    keyring); earlier keys stay, so earlier releases stay readable. Prints the new key's id only."""
    from pipeline.audit import events
    from pipeline.kafka import publish_audit
    from pipeline.release import wmkeys

    s = settings()
    key_id = wmkeys.rotate(s)
    record = events.watermark_key_rotated(key_id, f"cli:{getpass.getuser()}")
    asyncio.run(publish_audit(s, [record]))
    click.echo(f"watermark key {key_id} is now current ({wmkeys.path_of(s)})")
