"""``genguard verify``: a file's C2PA manifest and invisible watermark, in one report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from pipeline.cli.common import settings, with_state


def _print_report(video: Path, found: dict[str, Any], tsa_url: str | None) -> None:
    from pipeline.release.provenance import MODERATION_LABEL

    mark = found["watermark"]
    if mark["present"]:
        job = mark["job_id"] or "unknown to this deployment"
        click.echo(f"{video}: invisible watermark {mark['payload']} (key {mark['key_id']}) -> job {job}")
    else:
        click.echo(f"{video}: no invisible watermark found")
    if not found["present"]:
        click.secho(f"{video}: no C2PA manifest", fg="red")
        return
    ok, trusted = found["state"] in ("Valid", "Trusted"), "signingCredential.trusted" in found["codes"]
    click.secho(f"{video}: manifest {found['state']}" + ("" if trusted else " (signer untrusted)"),
                fg="green" if ok and trusted else "yellow" if ok else "red")
    click.echo(f"  signer: {found['signer']}")
    for action in (found["assertions"].get("c2pa.actions.v2") or {}).get("actions", []):
        click.echo(f"  action: {action.get('action')} {action.get('digitalSourceType', '')}")
    if moderation := found["assertions"].get(MODERATION_LABEL):
        click.echo(f"  moderation: {moderation.get('decision')} job {moderation.get('job_id')} policy "
                   f"{moderation.get('policy_id')}@{moderation.get('policy_version')}")
    click.echo("  codes: " + ", ".join(found["codes"]))
    if found["error"]:
        click.echo(f"  error: {found['error']}")
    if not tsa_url:
        click.echo("  note: signed without a timestamp authority; once the certificate expires the signature "
                   "reads as outside its validity (set GENGUARD_TSA_URL)")


@click.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--trust", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="PEM trust anchors (default: GENGUARD_TRUST_ANCHORS_PATH, else the dev root if present).")
@click.option("--json", "as_json", is_flag=True)
def verify(video: Path, trust: Path | None, as_json: bool) -> None:
    """Check VIDEO's C2PA manifest (present, signer, validation state and codes, what it says) and its
    invisible watermark (which job it points to, even with the manifest stripped or the file
    re-encoded). Exit 0 when the manifest is valid (trusted or not), 1 otherwise."""
    from pipeline.media import limits_of
    from pipeline.release import verify as layers
    from pipeline.release import wmkeys
    from pipeline.release.produce import trust_anchors
    from pipeline.store.state import JobLedger

    s = settings()
    anchors = trust.read_bytes() if trust else trust_anchors(s)
    found = with_state(lambda state: layers.report(video, anchors, JobLedger(state), wmkeys.load(s), limits_of(s)))
    ok = found["present"] and found["state"] in ("Valid", "Trusted")
    if as_json:
        click.echo(json.dumps(found, indent=2))
    else:
        _print_report(video, found, s.tsa_url)
    sys.exit(0 if ok else 1)
