"""``POST /v1/verify``: what an uploaded file says about its provenance (manifest and watermark)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Request, UploadFile
from pydantic import BaseModel, Field

from pipeline.api.deps import require, services, spooled
from pipeline.api.errors import ERRORS
from pipeline.media import limits_of
from pipeline.release import verify, wmkeys
from pipeline.release.produce import trust_anchors
from pipeline.store.state import ApiKey

router = APIRouter(tags=["provenance"])


class VerifyReport(BaseModel):
    present: bool
    state: str | None = None
    codes: list[str] = []
    signer: str | None = None
    assertions: dict[str, Any] = {}
    error: str | None = None
    watermark: dict[str, Any] = Field({}, description="the invisible watermark: present, payload, job_id")


@router.post("/v1/verify", response_model=VerifyReport, responses=ERRORS)
async def verify_video(request: Request, key: Annotated[ApiKey, Depends(require("check"))],
                       video: Annotated[UploadFile, File(description="An MP4 or MOV to check")]) -> VerifyReport:
    """Is there a C2PA manifest, who signed it, is it valid and trusted, what does it say?"""
    svc = services(request)
    async with spooled(video, svc.settings, ".mp4") as path:
        found = await verify.report(path, trust_anchors(svc.settings), svc.stages.jobs, wmkeys.load(svc.settings),
                                    limits_of(svc.settings))
    return VerifyReport(**found)
