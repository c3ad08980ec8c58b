"""The consent registry: enrol a person's likeness, grant and revoke its use per creator, erase it.

Scope ``likeness`` (or ``admin``); a key sees and changes only its own tenant's people.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from pydantic import BaseModel, Field

from pipeline.api.deps import Services, require, services, spooled
from pipeline.api.errors import CONFLICT, ERRORS, ApiError
from pipeline.records import CREATOR
from pipeline.store.likeness import PERSON, LikenessStore, Person
from pipeline.store.state import ApiKey
from pipeline.video import consent

router = APIRouter(tags=["likeness"])
LIKENESS = require("likeness", "admin")
STATUS = {"person_exists": 409, "person_not_found": 404, "faces_unavailable": 503, "image_too_large": 413,
          "unsupported_image": 415, "animated_image": 415}


class PersonView(BaseModel):
    person_id: str
    tenant: str
    photos: int
    grants: list[str]
    consent_sha256: str
    enrolled_at: str


class GrantRequest(BaseModel):
    creator: str = Field(pattern=CREATOR, description="The creator id this person lets use their likeness")


def view(p: Person) -> PersonView:
    """What the API shows of a person: never the embeddings."""
    return PersonView(person_id=p.person_id, tenant=p.tenant, photos=len(p.embeddings), grants=p.grants,
                      consent_sha256=p.consent_sha256, enrolled_at=p.enrolled_at)


def registry(request: Request) -> tuple[Services, LikenessStore]:
    svc = services(request)
    return svc, LikenessStore(svc.state, svc.settings)


@asynccontextmanager
async def refused() -> AsyncIterator[None]:
    try:
        yield
    except consent.ConsentError as e:
        raise ApiError(STATUS.get(e.code, 422), e.code, str(e)) from e


@router.post("/v1/likeness", status_code=201, response_model=PersonView, responses={**ERRORS, **CONFLICT})
async def enrol(request: Request, key: Annotated[ApiKey, Depends(LIKENESS)],
                person_id: Annotated[str, Form(pattern=PERSON, description="Your pseudonymous id for the person")],
                photos: Annotated[list[UploadFile], File(description="1-10 photos, each of the person alone")],
                consent_file: Annotated[UploadFile, File(description="The signed consent document (only its "
                                                                     "sha256 is kept)")]) -> PersonView:
    """Enrol a person: one embedding per photo and the consent document's hash; the photos are dropped."""
    svc, store = registry(request)
    gate = await svc.frames_gate()
    async with AsyncExitStack() as stack, refused():
        paths = [await stack.enter_async_context(spooled(p, svc.settings, Path(p.filename or "").suffix.lower(),
                                                         svc.settings.max_image_bytes)) for p in photos]
        embeddings = await asyncio.to_thread(consent.embed_photos, gate, paths, svc.settings)
        signed = await consent_file.read(svc.settings.max_image_bytes)
        person = await consent.enrol(store, svc.stages.audit, key.tenant, person_id, embeddings, signed, key.key_id)
    return view(person)


@router.get("/v1/likeness", response_model=list[PersonView], responses=ERRORS)
async def people(request: Request, key: Annotated[ApiKey, Depends(LIKENESS)]) -> list[PersonView]:
    """The tenant's enrolled people and their grants."""
    _, store = registry(request)
    return [view(p) for p in (await store.people(key.tenant)).values()]


@router.post("/v1/likeness/{person_id}/grants", response_model=PersonView, responses=ERRORS)
async def grant(person_id: str, body: GrantRequest, request: Request,
                key: Annotated[ApiKey, Depends(LIKENESS)]) -> PersonView:
    """Let ``creator`` use this person's likeness."""
    svc, store = registry(request)
    async with refused():
        return view(await consent.grant(store, svc.stages.audit, key.tenant, person_id, body.creator, key.key_id))


@router.delete("/v1/likeness/{person_id}/grants/{creator}", response_model=PersonView, responses=ERRORS)
async def revoke(person_id: str, creator: str, request: Request,
                 key: Annotated[ApiKey, Depends(LIKENESS)]) -> PersonView:
    """Withdraw a grant: the next decision on any of that creator's videos sees it."""
    svc, store = registry(request)
    async with refused():
        return view(await consent.revoke(store, svc.stages.audit, key.tenant, person_id, creator, key.key_id))


@router.delete("/v1/likeness/{person_id}", status_code=204, responses=ERRORS)
async def erase(person_id: str, request: Request, key: Annotated[ApiKey, Depends(LIKENESS)]) -> Response:
    """Erase a person: embeddings and grants deleted; the audit trail keeps only that it happened."""
    svc, store = registry(request)
    async with refused():
        await consent.erase(store, svc.stages.audit, key.tenant, person_id, key.key_id)
    return Response(status_code=204)
