"""``genguard check`` and ``genguard moderate``: one prompt or one video, judged in-process (not audited;
the API and the workers audit every decision)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.common import EXIT, print_evaluation, print_verdict, settings, with_state

if TYPE_CHECKING:
    from pipeline.records import VideoDecision
    from pipeline.video.gate import VideoGate


@click.command()
@click.argument("prompt")
@click.option("--tenant", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def check(prompt: str, tenant: str, as_json: bool) -> None:
    """Check PROMPT in-process (not audited; the API and worker audit). Exit 0 allow, 1 review, 2 block."""
    from pipeline.prompt.gate import PromptGate
    from pipeline.prompt.stage import decide
    from pipeline.records import PromptRequest
    from pipeline.store.state import RedisVectorCache

    s = settings()
    gate = PromptGate.from_settings(s, RedisVectorCache(s))
    verdict = decide(gate, PromptRequest(tenant=tenant, prompt=prompt, actor="cli"), "cli")
    if as_json:
        click.echo(verdict.model_dump_json(indent=2))
    else:
        print_verdict(verdict)
    sys.exit(EXIT[verdict.action])


def _print_decision(decision: VideoDecision, sheet: Path | None) -> None:
    p = decision.probe
    print_evaluation(decision, f"{decision.job_id}  {decision.policy_id}@{decision.policy_version}  "
                               f"{p['width']}x{p['height']} {p['codec']} {p['duration_s']:.1f}s, "
                               f"{len(decision.frames)} frames sampled")
    for seg in decision.transcript:
        click.echo(f"  said {seg['start']:.1f}-{seg['end']:.1f}s: {seg['text']}")
    click.echo("  timings: " + ", ".join(f"{k} {v:.0f} ms" for k, v in decision.timings_ms.items()))
    if sheet is not None:
        click.echo(f"  contact sheet: {sheet}")


def _release(video: Path, out: Path, decision: VideoDecision, gate: VideoGate, tenant: str, prompt: str | None,
             quiet: bool) -> None:
    """Mark and sign an allowed video into ``out``, and remember its watermark so verify can name the job."""
    from pipeline.records import Job
    from pipeline.release import wmkeys
    from pipeline.release.produce import release_file, sign_with, trust_anchors
    from pipeline.release.trace import index_release
    from pipeline.store.releases import ReleaseStore
    from pipeline.store.state import JobLedger

    s = settings()
    job = Job(job_id=decision.job_id, tenant=tenant, sha256="", media_uri="", status="allowed",
              prompt=prompt, decision=decision.model_dump(mode="json"))
    keyring = wmkeys.load(s)
    released = release_file(video, out, job, sign_with(s), keyring.key, gate.policies.for_tenant(tenant).policy.release)
    job = job.model_copy(update={"watermark": f"{released.payload:08x}", "watermark_key": keyring.current})
    index_release(ReleaseStore(s.releases_dir), job, out, released.manifest, trust_anchors(s))
    with_state(lambda state: JobLedger(state).map_watermark(job.watermark, job.job_id))
    click.echo(f"  released: {out} (check it with: genguard verify {out})", err=quiet)


@click.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prompt", default=None, help="The prompt that generated the video.")
@click.option("--tenant", default="default", show_default=True)
@click.option("--creator", default=None, help="Who asked for the video (their likeness grants count).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--contact-sheet", type=click.Path(path_type=Path), default=None,
              help="Write a PNG of the frames that drove the decision.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="If allowed, release here: moving visible watermark + signed C2PA manifest.")
def moderate(video: Path, prompt: str | None, tenant: str, creator: str | None, as_json: bool,
             contact_sheet: Path | None, out: Path | None) -> None:
    """Moderate VIDEO in-process (not audited); with --out, release it when allowed.
    Exit 0 allow, 1 review, 2 block, 3 rejected input."""
    from pipeline.cli.common import gates
    from pipeline.media import MediaError
    from pipeline.records import new_id
    from pipeline.store.likeness import LikenessStore
    from pipeline.video.evidence import contact_sheet as draw_sheet

    click.echo("loading models ...", err=True)
    _, gate = gates(with_video=True)
    assert gate is not None
    click.echo(f"moderating {video} ...", err=True)
    enrolled = with_state(lambda state: LikenessStore(state, settings()).view(tenant, creator))
    try:
        decision, media, _ = gate.run(video, prompt, tenant, new_id("job"), enrolled, creator)
    except MediaError as e:
        if as_json:
            click.echo(json.dumps({"error": {"code": e.code, "message": str(e)}}))
        else:
            click.secho(f"REJECTED ({e.code}): {e}", fg="red", err=True)
        sys.exit(3)
    if contact_sheet is not None:
        contact_sheet.write_bytes(draw_sheet(decision, [f.image for f in media.frames]))
    if as_json:
        click.echo(decision.model_dump_json(indent=2))
    else:
        _print_decision(decision, contact_sheet)
    if out is not None and decision.action != "allow":
        click.secho(f"  not released: the decision is {decision.action}", fg="red", err=True)
    elif out is not None:
        _release(video, out, decision, gate, tenant, prompt, as_json)
    sys.exit(EXIT[decision.action])
