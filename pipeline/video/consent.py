"""Enrol, grant, revoke, erase: the consent registry's changes, for the CLI and the API alike.

Enrolment takes photos of the person, keeps one identity embedding per photo and the sha256 of the
signed consent document, and drops the photos. Every change is audited by person id; an enrolment
or grant whose audit record cannot be written is undone (nothing changes unrecorded). A revocation
or erasure stands even then (the safe direction) and the error is raised for the caller to retry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from pipeline.audit import events
from pipeline.media import MediaError
from pipeline.records import AuditRecord, encode_vector
from pipeline.settings import Settings
from pipeline.store.likeness import LikenessStore, Person
from pipeline.video.gate import VideoGate
from pipeline.video.image import read_image

Audit = Callable[[AuditRecord], Awaitable[None]]
MAX_PHOTOS = 10


class ConsentError(ValueError):
    """A change the registry refuses; ``code`` is stable for clients."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def embed_photos(gate: VideoGate, photos: Sequence[Path], settings: Settings) -> list[str]:
    """One embedding per photo, each of which must show exactly one face (whose else would it be?)."""
    if gate.faces is None:
        raise ConsentError("faces_unavailable", f"the face model is not loaded: {gate.load_errors.get('faces')}")
    if not 1 <= len(photos) <= MAX_PHOTOS:
        raise ConsentError("photo_count", f"send 1 to {MAX_PHOTOS} photos of the person, not {len(photos)}")
    vectors = []
    for n, photo in enumerate(photos, 1):
        try:
            image, _, _ = read_image(photo, settings.max_image_pixels, settings.frame_side)
        except MediaError as e:
            raise ConsentError(e.code, f"photo {n}: {e}") from e
        faces = gate.faces.faces([image])[0]
        if len(faces) != 1:
            code = "no_face" if not faces else "several_faces"
            raise ConsentError(code, f"photo {n} shows {len(faces)} faces; each photo must show exactly the one person")
        vectors.append(encode_vector(faces[0].embedding))
    return vectors


async def enrol(store: LikenessStore, audit: Audit, tenant: str, person_id: str, embeddings: list[str],
                consent: bytes, actor: str) -> Person:
    if not consent:
        raise ConsentError("consent_missing", "enrolment needs the person's signed consent document")
    person = Person(person_id=person_id, tenant=tenant, embeddings=embeddings,
                    consent_sha256=hashlib.sha256(consent).hexdigest(), enrolled_by=actor)
    if not await store.enroll(person):
        raise ConsentError("person_exists", f"person {person_id} is enrolled already (erase first to re-enrol)")
    try:
        await audit(events.likeness_changed("likeness.enrolled", tenant, person_id, actor,
                                            f"{len(embeddings)} photo(s); consent sha256 {person.consent_sha256}"))
    except Exception:
        await store.erase(tenant, person_id)
        raise
    return person


async def grant(store: LikenessStore, audit: Audit, tenant: str, person_id: str, creator: str, actor: str) -> Person:
    person = await _known(store.grant(tenant, person_id, creator), person_id)
    try:
        await audit(events.likeness_changed("likeness.granted", tenant, person_id, actor, f"creator {creator}"))
    except Exception:
        await store.revoke(tenant, person_id, creator)
        raise
    return person


async def revoke(store: LikenessStore, audit: Audit, tenant: str, person_id: str, creator: str, actor: str) -> Person:
    person = await _known(store.revoke(tenant, person_id, creator), person_id)
    await audit(events.likeness_changed("likeness.revoked", tenant, person_id, actor, f"creator {creator}"))
    return person


async def erase(store: LikenessStore, audit: Audit, tenant: str, person_id: str, actor: str) -> None:
    if not await store.erase(tenant, person_id):
        raise ConsentError("person_not_found", f"no person {person_id} is enrolled")
    await audit(events.likeness_changed("likeness.erased", tenant, person_id, actor,
                                        "embeddings and grants deleted; only this record remains"))


async def _known(change: Awaitable[Person], person_id: str) -> Person:
    try:
        return await change
    except KeyError as e:
        raise ConsentError("person_not_found", f"no person {person_id} is enrolled") from e
