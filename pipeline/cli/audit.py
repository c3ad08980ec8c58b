"""``genguard audit``: run the writer, verify the chain, export and show records."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.common import settings, with_state

if TYPE_CHECKING:
    from pipeline.audit.chain import AuditSink


@click.group()
def audit() -> None:
    """The compliance trail: write, verify, export, show."""


def _sink() -> AuditSink:
    from pipeline.audit.chain import AuditSink

    s = settings()
    return AuditSink(s.audit_dir, s.audit_segment_records)


@audit.command("writer")
def audit_writer() -> None:
    """Run the audit writer: genguard.audit -> hash-chained, fsync'd segment files."""
    from pipeline.audit import writer

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await writer.run(settings(), stop)

    asyncio.run(run())


@audit.command("verify")
@click.option("--no-head-check", is_flag=True, help="Skip comparing chain ends with the heads recorded in Redis.")
def audit_verify(no_head_check: bool) -> None:
    """Prove no audit record was altered, removed or reordered; name the first broken one."""
    from pipeline.audit.chain import verify

    sink = _sink()
    started = time.monotonic()
    report = verify(sink, None if no_head_check else with_state(lambda state: state.audit_heads()))
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
    from pipeline.audit.export import export
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
