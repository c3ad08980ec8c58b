"""The policy owners' commands: lint, test, show and diff policies; replay stored traffic; tune a threshold."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.common import gates, settings

if TYPE_CHECKING:
    from pipeline.owner.tune import Point
    from pipeline.prompt.gate import PromptGate
    from policies.engine import CompiledPolicy


@click.group()
def policy() -> None:
    """Lint, test and inspect policies."""


@policy.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--base", type=click.Path(path_type=Path), help="Base policy for overlays (default: configured).")
def lint(files: tuple[Path, ...], base: Path | None) -> None:
    """Report every error in policy or overlay FILES as file:line: message."""
    from policies.loader import lint as lint_file

    base = base or settings().policy_path
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
@click.option("--compare", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also judge every prompt under this policy, side by side (e.g. policies/baselines/...).")
@click.option("--keywords", is_flag=True, help="Also the live policy's rules alone: a keyword-list baseline.")
@click.option("--limit", default=None, type=int, help="Only the first N rows.")
def policy_test(labelled: Path, tenant: str, show_errors: bool, compare: tuple[Path, ...], keywords: bool,
                limit: int | None) -> None:
    """Per-category precision and recall of the policy on labelled JSONL (the corpus's .jsonl.gz too: its
    `labelled` masks apply); with --compare/--keywords, P/R/F1 side by side, per language, benign prompts stopped."""
    from pipeline.owner.labelled import judge_rows, read_labelled, report, score_flags

    rows = read_labelled(labelled)[:limit]
    gate, video = gates(any(r.media for r in rows))
    compiled = gate.policies.for_tenant(tenant)
    cats = [c for c, spec in compiled.policy.categories.items() if spec.reportable]
    click.echo(f"policy {compiled.id}@{compiled.version} on {labelled} ({len(rows)} examples)")
    if compare or keywords:
        flags = _side_by_side(gate, rows, compiled, compare, keywords, cats)
    else:
        with click.progressbar(rows, label=f"checking {len(rows)} examples", file=sys.stderr) as bar:
            flags = [v.flagged() for v in judge_rows(gate, video, bar, tenant)]
    click.echo(report(score_flags(rows, flags, cats)))
    if show_errors:
        for r, f in zip(rows, flags, strict=True):
            if set(r.categories) != f:
                click.echo(f"  want {sorted(r.categories)} got {sorted(f)}: {r.media or r.text}")


def _side_by_side(gate: PromptGate, rows: list, live: CompiledPolicy, compare: tuple[Path, ...], keywords: bool,
                  cats: list[str]) -> list[set[str]]:
    """Print the comparison table; return the live policy's flags."""
    from pipeline.owner.labelled import judge_many
    from pipeline.owner.text_eval import Truth, figures, table
    from policies import engine

    policies = {f"live {live.version[:8]}": live, **{p.stem: engine.load_any(p, settings().policy_path)
                                                     for p in compare}}
    with click.progressbar(rows, label=f"observing {len(rows)} prompts", file=sys.stderr) as bar:
        flags = judge_many(gate, bar, policies, live if keywords else None)
    truth = Truth.of_labelled(rows, cats)
    langs = sorted({r.lang for r in rows if r.categories}, key=lambda lang: (lang != "en", lang))  # with positives
    click.echo(table({name: figures(truth, f, cats) for name, f in flags.items()}, cats, langs))
    return flags[next(iter(policies))]


@policy.command()
@click.option("--tenant", default=None)
def show(tenant: str | None) -> None:
    """Print the effective policy (base plus the tenant's overlay) as JSON, with its version."""
    from pipeline.policy_source import PolicySource

    source = PolicySource(settings())
    compiled = source.for_tenant(tenant) if tenant else source.base
    click.echo(json.dumps({"id": compiled.id, "version": compiled.version, "source": compiled.source,
                           "policy": compiled.policy.model_dump(mode="json")}, indent=2))


@policy.command("diff")
@click.argument("old", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
def policy_diff(old: Path, new: Path) -> None:
    """Explain in words what changes from policy OLD to policy NEW (overlays apply to the configured base)."""
    from policies import engine
    from policies.diff import diff_policies

    base = settings().policy_path
    a, b = engine.load_any(old, base), engine.load_any(new, base)
    click.echo(f"{a.id}@{a.version} -> {b.id}@{b.version}")
    lines = diff_policies(a.policy, b.policy)
    for line in lines:
        click.echo(f"  {line}")
    click.echo(f"{len(lines)} changes" if lines else "no changes")


@click.command()
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
    from pipeline.owner.replay import render
    from pipeline.owner.replay import replay as run_replay
    from pipeline.policy_source import PolicySource
    from pipeline.prompt.gate import PromptGate
    from pipeline.store.signals import LocalSignalStore
    from pipeline.timeutil import parse_since
    from pipeline.video.gate import VideoGate

    s = settings()
    # the encoder embeds the candidate's exemplar phrases only; stored prompts keep their embeddings
    gate = PromptGate(s, PolicySource(s), TextEncoder(s.text_model, s.text_precision))
    rows = list(LocalSignalStore(s.signals_dir).scan(parse_since(since), tenant))
    video = VideoGate.from_settings(s, gate, parts=frozenset({"judge"})) if any(r.video for r in rows) else None
    diff = run_replay(gate, rows, candidate, video)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(diff), indent=2, default=str))
    else:
        click.echo(render(diff, show))


def _print_curve(points: list[Point], chosen: Point | None) -> None:
    click.echo(f"{'threshold':>9} {'precision':>9} {'recall':>7} {'f1':>6}  tp  fp  fn   (where recall steps)")
    for i, p in enumerate(points):
        if i and p.recall == points[i - 1].recall and p is not chosen:
            continue
        mark = "  <- chosen" if p is chosen else ""
        click.echo(f"{p.threshold:>9.4f} {p.precision:>9.3f} {p.recall:>7.3f} {p.f1:>6.3f} {p.tp:>3} {p.fp:>3} "
                   f"{p.fn:>3}{mark}")


@click.command()
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

    from pipeline.owner.labelled import read_labelled
    from pipeline.owner.tune import choose, draw, overlay, study, write_overlay

    if (target_precision is None) == (target_recall is None):
        raise click.UsageError("give exactly one of --target-precision and --target-recall")
    rows = read_labelled(labelled)
    gate, video = gates(any(r.media for r in rows))
    click.echo(f"scoring {len(rows)} labelled examples ...", err=True)
    st = study(gate, rows, category, signal, tenant, video)
    chosen = choose(st.points, target_precision, target_recall)
    _print_curve(st.points, chosen)
    draw(st, chosen, plot, html)
    click.echo(f"PR curve: {plot}" + (f", report: {html}" if html else ""))
    if chosen is None:
        raise click.ClickException("no threshold meets the target on this data")
    compiled = gate.policies.for_tenant(tenant)
    current = compiled.policy.categories[category].thresholds.get(signal)
    was = getattr(current, st.level) if current else None
    click.echo(f"{category}: {signal} {st.level} threshold {was} -> {chosen.threshold:.4f} "
               f"(precision {chosen.precision:.3f}, recall {chosen.recall:.3f})")
    if overlay_out is not None:
        current_file = settings().tenants_dir / f"{tenant}.yaml"
        existing = yaml.safe_load(current_file.read_text()) if current_file.exists() else None
        write_overlay(overlay(compiled, tenant, category, signal, st.level, chosen.threshold, existing), overlay_out)
        click.echo(f"overlay written to {overlay_out}; check it with: genguard policy lint {overlay_out}")
