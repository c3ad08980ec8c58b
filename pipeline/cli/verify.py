"""``genguard verify`` and ``genguard trace``: what a file says about where it came from (manifest,
invisible watermark, fingerprints), and the release it traces back to."""

from __future__ import annotations

import asyncio
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
    if any(c.startswith("c2pa.unreadable.") for c in found["codes"]):
        click.secho(f"{video}: manifest could not be read ({', '.join(found['codes'])}): {found['error']}", fg="red")
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
    if not any(c.startswith("timeStamp.") for c in found["codes"]):
        click.echo("  note: signed without a timestamp authority; once the certificate expires the signature "
                   "reads as outside its validity" + ("" if tsa_url else " (set GENGUARD_TSA_URL)"))
    elif "timeStamp.trusted" in found["codes"]:
        click.echo("  timestamp: trusted")
    else:
        click.echo("  timestamp: present, not trusted (" + ", ".join(c for c in found["codes"]
                                                                     if c.startswith("timeStamp.")) + ")")


@click.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--trust", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="PEM trust anchors (default: GENGUARD_TRUST_ANCHORS_PATH, else the dev root if present).")
@click.option("--json", "as_json", is_flag=True)
def verify(video: Path, trust: Path | None, as_json: bool) -> None:
    """Check VIDEO's C2PA manifest (present, signer, validation state and codes, what it says), its
    invisible watermark (which job it points to, even with the manifest stripped or the file
    re-encoded) and its frame and audio fingerprints against every release (`genguard trace` says
    which release it is). Exit 0 when the manifest is valid (trusted or not), 1 otherwise."""
    from pipeline.media import limits_of
    from pipeline.release import trace as tracing
    from pipeline.release import verify as layers
    from pipeline.release import wmkeys
    from pipeline.release.produce import trust_anchors
    from pipeline.store.releases import ReleaseStore
    from pipeline.store.state import JobLedger

    s = settings()
    anchors = trust.read_bytes() if trust else trust_anchors(s)
    found = with_state(lambda state: layers.report(video, anchors, JobLedger(state), wmkeys.load(s), limits_of(s)))
    found["fingerprint"] = asyncio.run(tracing.fingerprint_layers(
        video, tracing.ReleaseIndex(ReleaseStore(s.releases_dir)).current(), limits_of(s), None))
    ok = found["present"] and found["state"] in ("Valid", "Trusted")
    if as_json:
        click.echo(json.dumps(found, indent=2))
    else:
        _print_report(video, found, s.tsa_url)
        _print_fingerprints(video, found["fingerprint"])
    sys.exit(0 if ok else 1)


def _print_fingerprints(video: Path, layers: dict[str, Any]) -> None:
    for name in ("frames", "audio"):
        if found := layers.get(name):
            spans = ", ".join(f"{a:.1f}-{b:.1f}s" for a, b in found["ranges"])
            click.echo(f"{video}: {name} fingerprint -> job {found['job_id']} at {spans} "
                       f"(confidence {found['confidence']})")
        else:
            click.echo(f"{video}: no {name} fingerprint match")


@click.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", default=None, help="Trace among this tenant's releases only (default: all).")
@click.option("--json", "as_json", is_flag=True)
def trace(video: Path, tenant: str | None, as_json: bool) -> None:
    """Which release VIDEO is a copy of: by its C2PA manifest, else its invisible watermark, else its
    frames' and sound's fingerprints; with the job, tenant, matched time ranges, a confidence and the
    original release's manifest. Exit 0 when traced, 1 when not."""
    from pipeline.media import limits_of
    from pipeline.release import trace as tracing
    from pipeline.release import wmkeys
    from pipeline.release.produce import trust_anchors
    from pipeline.store.releases import ReleaseStore

    s = settings()
    index = tracing.ReleaseIndex(ReleaseStore(s.releases_dir))
    found = asyncio.run(tracing.trace(video, index, wmkeys.load(s), trust_anchors(s), limits_of(s), tenant))
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif (match := found["match"]) is None:
        click.secho(f"{video}: not traced to any release", fg="yellow")
    else:
        spans = ", ".join(f"{a:.1f}-{b:.1f}s" for a, b in match["ranges"] or [])
        click.secho(f"{video}: job {match['job_id']} (tenant {match['tenant']}) via {match['via']}, confidence "
                    f"{match['confidence']}, at {spans}", fg="green")
        moderation = match["manifest"].get("assertions", {})
        click.echo(f"  released {match['released_at']}; original manifest {match['manifest'].get('state')} signed by "
                   f"{match['manifest'].get('signer')}; {len(moderation)} assertions")
    sys.exit(0 if found["traced"] else 1)
