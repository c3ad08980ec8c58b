"""``genguard likeness``: the consent registry from the command line (enrol, grant, revoke, erase, list),
every change audited like the API's; and ``genguard check-image``, a reference image judged in-process."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from pipeline.cli.common import EXIT, print_evaluation, settings, with_state

if TYPE_CHECKING:
    from pipeline.records import AuditRecord
    from pipeline.store.likeness import LikenessStore
    from pipeline.video.consent import Audit
    from pipeline.video.gate import VideoGate

T = TypeVar("T")
TENANT = click.option("--tenant", required=True, help="The tenant whose registry this is.")


def _frames_gate() -> VideoGate:
    """The frame models and the face finder only: no Whisper, no text models (a still image has neither)."""
    from pipeline.policy_source import PolicySource
    from pipeline.video.gate import VideoGate

    s = settings()
    return VideoGate.from_settings(s, None, parts=frozenset({"frames", "judge"}), policies=PolicySource(s))


def _registry(work: Callable[[LikenessStore, Audit, str], Awaitable[T]]) -> T:
    """Run ``work`` on the registry with an audit publisher and the operator's name; a refused change
    becomes a clear error (its code and message), never a traceback."""
    from pipeline.kafka import publish_audit
    from pipeline.store.likeness import LikenessStore
    from pipeline.video.consent import ConsentError

    s = settings()

    async def audit(record: AuditRecord) -> None:
        await publish_audit(s, [record])

    try:
        return with_state(lambda state: work(LikenessStore(state, s), audit, f"cli:{getpass.getuser()}"))
    except ConsentError as e:
        raise click.ClickException(f"{e.code}: {e}") from e


@click.group()
def likeness() -> None:
    """The consent registry: whose likeness is enrolled, and which creators may use it."""


@likeness.command("enroll")
@TENANT
@click.option("--person", "person_id", required=True, help="Your pseudonymous id for the person (never a name).")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--consent-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The person's signed consent document; only its sha256 is kept.")
def enroll(tenant: str, person_id: str, images: tuple[Path, ...], consent_file: Path) -> None:
    """Enrol PERSON from IMAGES (each showing that person alone): embeddings are kept, photos are not."""
    from pipeline.video import consent

    click.echo("loading the face model ...", err=True)
    try:
        embeddings = consent.embed_photos(_frames_gate(), list(images), settings())
    except consent.ConsentError as e:
        raise click.ClickException(f"{e.code}: {e}") from e
    person = _registry(lambda store, audit, actor: consent.enrol(
        store, audit, tenant, person_id, embeddings, consent_file.read_bytes(), actor))
    click.echo(f"enrolled {person.person_id} in {tenant}: {len(person.embeddings)} photo(s), "
               f"consent sha256 {person.consent_sha256[:16]}...")


def _grants(change: str, tenant: str, person_id: str, creator: str) -> None:
    """``grant`` or ``revoke`` one creator, then show the person's grants."""
    from pipeline.video import consent

    fn = getattr(consent, change)
    person = _registry(lambda store, audit, actor: fn(store, audit, tenant, person_id, creator, actor))
    click.echo(f"{person.person_id}: grants {', '.join(person.grants) or '(none)'}")


@likeness.command("grant")
@TENANT
@click.argument("person_id")
@click.option("--creator", required=True, help="The creator id who may use the likeness.")
def grant(tenant: str, person_id: str, creator: str) -> None:
    """Let CREATOR use PERSON_ID's likeness."""
    _grants("grant", tenant, person_id, creator)


@likeness.command("revoke")
@TENANT
@click.argument("person_id")
@click.option("--creator", required=True)
def revoke(tenant: str, person_id: str, creator: str) -> None:
    """Withdraw CREATOR's grant: the next decision of any running worker sees it."""
    _grants("revoke", tenant, person_id, creator)


@likeness.command("erase")
@TENANT
@click.argument("person_id")
def erase(tenant: str, person_id: str) -> None:
    """Delete PERSON_ID's embeddings and grants; the audit trail keeps only that it happened."""
    from pipeline.video import consent

    _registry(lambda store, audit, actor: consent.erase(store, audit, tenant, person_id, actor))
    click.echo(f"erased {person_id} from {tenant}")


@likeness.command("list")
@TENANT
def list_people(tenant: str) -> None:
    from pipeline.store.likeness import LikenessStore

    people = with_state(lambda state: LikenessStore(state, settings()).people(tenant))
    for p in people.values():
        click.echo(f"{p.person_id}  photos={len(p.embeddings)}  grants={','.join(p.grants) or '-'}  "
                   f"enrolled={p.enrolled_at}")


@click.command("check-image")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", default="default", show_default=True)
@click.option("--creator", default=None, help="Who asked (their likeness grants count).")
@click.option("--consent-attested", is_flag=True, help="The requester attests every person shown consented.")
@click.option("--json", "as_json", is_flag=True)
def check_image(image: Path, tenant: str, creator: str | None, consent_attested: bool, as_json: bool) -> None:
    """Check a reference IMAGE in-process (not audited; the API audits). Exit 0 allow, 1 review, 2 block,
    3 rejected input."""
    import json

    from pipeline.media import MediaError
    from pipeline.records import new_id
    from pipeline.store.likeness import LikenessStore
    from pipeline.video.image import judge_image, read_image

    s = settings()
    try:
        pixels, width, height = read_image(image, s.max_image_pixels, s.frame_side)
    except MediaError as e:
        error = {"error": {"code": e.code, "message": str(e)}}
        click.echo(json.dumps(error) if as_json else f"REJECTED ({e.code}): {e}")
        sys.exit(3)
    gate = _frames_gate()
    enrolled = with_state(lambda state: LikenessStore(state, s).view(tenant, creator))
    verdict = judge_image(gate, pixels, gate.policies.for_tenant(tenant), new_id("img"), tenant, enrolled, creator,
                          consent_attested).model_copy(update={"width": width, "height": height})
    if as_json:
        click.echo(verdict.model_dump_json(indent=2))
    else:
        print_evaluation(verdict, f"{image.name} {width}x{height}  {len(verdict.faces)} face(s)  "
                                  f"policy {verdict.policy_id}@{verdict.policy_version}")
        for f in verdict.faces:
            who = f"person {f.person_id} (distance {f.distance}, {'granted' if f.granted else 'no grant'})" \
                if f.person_id else "not enrolled"
            click.echo(f"  face at {f.box}: {who}")
    sys.exit(EXIT[verdict.action])
