"""The ``genguard`` command line: one group, one module per command group (imports stay lazy, so a
command loads only what it uses)."""

from __future__ import annotations

import logging

import click

from pipeline.cli import audit, check, hashes, keys, likeness, models, ops, policy, verify


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """genguard: moderation and provenance gate for generative video."""
    for noisy in ("httpx", "faiss.loader", "faster_whisper"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


for command in (check.check, check.moderate, likeness.check_image, likeness.likeness, verify.verify, verify.trace,
                hashes.hashes, policy.policy, policy.replay, policy.tune, models.models, keys.keys, audit.audit,
                ops.broker, ops.redis_cmd, ops.worker, ops.health, ops.topics, ops.serve, ops.up, ops.down):
    main.add_command(command)
