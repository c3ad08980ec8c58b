"""Trace a copy back to its release, shaped after the C2PA 2.2 Soft Binding Resolution API:
``POST /v1/trace`` (by asset upload, SBR's ``/matches/byContent``), ``GET /v1/trace/by-binding``
(by soft-binding value, SBR's ``/matches/byBinding``) and ``GET /v1/releases/{id}/manifest`` (the
original manifest store, ``application/c2pa``, SBR's ``/manifests/{manifestId}``). Differences: a
match's ``manifestId`` is the job id; matches also carry the layer, the matched time ranges and the
tenant; every route needs an API key (scope ``verify`` or ``audit``) and answers only from the caller's
tenant, an ``admin`` key from all.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from pydantic import BaseModel

from pipeline.api.deps import require, services, spooled
from pipeline.api.errors import ERRORS, ApiError
from pipeline.media import limits_of
from pipeline.release import trace, wmkeys
from pipeline.release.produce import trust_anchors
from pipeline.release.provenance import SOFT_BINDING_ALG
from pipeline.store.releases import ReleaseStore
from pipeline.store.state import ApiKey

router = APIRouter(tags=["provenance"])


class SbrMatch(BaseModel):
    manifestId: str
    similarityScore: float
    via: str
    tenant: str
    ranges: list[list[float]] | None = None


class TraceReport(BaseModel):
    traced: bool
    matches: list[SbrMatch]
    match: dict[str, Any] | None
    layers: dict[str, Any]


def _tenant(key: ApiKey) -> str | None:
    return None if "admin" in key.scopes else key.tenant


def _index(request: Request) -> trace.ReleaseIndex:
    app = request.app.state
    if not hasattr(app, "release_index"):
        app.release_index = trace.ReleaseIndex(ReleaseStore(services(request).settings.releases_dir))
    return app.release_index


def _matches(match: dict[str, Any] | None) -> list[SbrMatch]:
    if match is None:
        return []
    return [SbrMatch(manifestId=match["job_id"], similarityScore=match["confidence"], via=match["via"],
                     tenant=match["tenant"], ranges=match["ranges"])]


@router.post("/v1/trace", response_model=TraceReport, responses=ERRORS)
async def trace_upload(request: Request, key: Annotated[ApiKey, Depends(require("verify", "audit", "admin"))],
                       video: Annotated[UploadFile, File(description="Any copy: stripped, re-encoded, cropped")]
                       ) -> TraceReport:
    """Which of your releases is this a copy of: manifest, else invisible watermark, else fingerprints."""
    svc = services(request)
    async with spooled(video, svc.settings, ".mp4") as path:
        found = await trace.trace(path, _index(request), wmkeys.load(svc.settings), trust_anchors(svc.settings),
                                  limits_of(svc.settings), _tenant(key))
    return TraceReport(matches=_matches(found["match"]), **found)


@router.get("/v1/trace/by-binding", response_model=TraceReport, responses=ERRORS)
async def trace_binding(request: Request, key: Annotated[ApiKey, Depends(require("verify", "audit", "admin"))],
                        alg: Annotated[str, Query(description=f"soft-binding algorithm: {SOFT_BINDING_ALG}")],
                        value: Annotated[str, Query(description="the binding's value, base64")]) -> TraceReport:
    """The release a soft-binding value (the invisible watermark's payload, as a manifest records it) names."""
    if alg != SOFT_BINDING_ALG:
        raise ApiError(422, "unknown_binding_alg", f"this resolver answers for {SOFT_BINDING_ALG} only")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ApiError(422, "bad_binding_value", "value must be base64") from e
    if len(raw) != 4:
        raise ApiError(422, "bad_binding_value", f"a {SOFT_BINDING_ALG} value is 4 bytes")
    index = _index(request).current()
    job_id = index.by_watermark.get(raw.hex())
    record = index.records.get(job_id or "")
    tenant = _tenant(key)
    if record is None or (tenant is not None and record.tenant != tenant):
        return TraceReport(traced=False, matches=[], match=None, layers={"watermark": {"payload": raw.hex()}})
    match = trace.release_match(record, "watermark", 1.0, None)
    return TraceReport(traced=True, matches=_matches(match), match=match, layers={"watermark": {"payload": raw.hex()}})


@router.get("/v1/releases/{job_id}/manifest", responses={**ERRORS, 200: {"content": {"application/c2pa": {}}}})
async def release_manifest(request: Request, job_id: str,
                           key: Annotated[ApiKey, Depends(require("verify", "audit", "admin"))]) -> Response:
    """The signed manifest store of a release, as it was embedded before anyone stripped it."""
    store = ReleaseStore(services(request).settings.releases_dir)
    try:
        record, manifest = store.get(job_id), store.manifest_bytes(job_id)
    except ValueError as e:
        raise ApiError(404, "not_found", "no such release") from e
    tenant = _tenant(key)
    if record is None or manifest is None or (tenant is not None and record.tenant != tenant):
        raise ApiError(404, "not_found", "no such release")
    return Response(manifest, media_type="application/c2pa")
