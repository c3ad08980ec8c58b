"""Video jobs: submit an upload, poll its status, fetch its evidence sheet and its released file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from pipeline.api.deps import owned_job, require, services, spooled
from pipeline.api.errors import CONFLICT, ERRORS, MEDIA_STATUS, ApiError, ErrorResponse
from pipeline.media import MediaError
from pipeline.records import CREATOR, Job, VideoDecision
from pipeline.store.state import ApiKey
from pipeline.video import review, stages
from pipeline.video.evidence import contact_sheet

router = APIRouter(tags=["videos"])
SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".m4v")


class JobView(BaseModel):
    job_id: str
    status: str
    tenant: str
    creator: str | None = None
    history: list[dict[str, str]]
    action: str | None = None
    error: dict[str, str] | None = None
    decision: dict[str, Any] | None = None
    review: dict[str, str] | None = None
    watermark_key: str | None = None  # the id of the invisible watermark's key, once released (never the key)
    appeal: dict[str, str] | None = None  # state: open, upheld or overturned


def job_view(job: Job) -> JobView:
    decided = job.decision if job.decision and "action" in job.decision else None
    reviewed = {"allowed": "allow", "blocked": "block"}.get((job.review or {}).get("decision", ""))  # not escalated
    return JobView(job_id=job.job_id, status=job.status, tenant=job.tenant, creator=job.creator, history=job.history,
                   action=reviewed or (decided or {}).get("action"), error=job.error, decision=decided,
                   review=job.review, watermark_key=job.watermark_key, appeal=job.appeal)


@router.post("/v1/videos", status_code=202, response_model=JobView, responses={**ERRORS, 415: {"model": ErrorResponse}})
async def submit_video(request: Request, key: Annotated[ApiKey, Depends(require("submit"))],
                       video: Annotated[UploadFile, File(description="MP4, MOV, WebM or MKV")],
                       prompt: Annotated[str | None, Form()] = None,
                       job_id: Annotated[str | None, Form(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")] = None,
                       creator: Annotated[str | None, Form(pattern=CREATOR, description="Your pseudonymous id of "
                                                           "the person who asked (likeness grants); never an e-mail")]
                       = None) -> JobView:
    """Submit a generated video for moderation; poll GET /v1/jobs/{job_id} for the decision."""
    svc = services(request)
    if prompt is not None and len(prompt) > svc.settings.max_prompt_chars:
        raise ApiError(422, "invalid_request", f"prompt: String should have at most {svc.settings.max_prompt_chars} "
                       "characters")
    suffix = Path(video.filename or "").suffix.lower()
    suffix = suffix if suffix in SUFFIXES else ".bin"
    async with spooled(video, svc.settings, suffix) as path:
        try:
            job = await stages.submit(svc.stages, path, suffix, key.tenant, key.key_id, prompt, job_id, creator)
        except MediaError as e:
            raise ApiError(MEDIA_STATUS.get(e.code, 422), e.code, str(e)) from e
    return job_view(job)


@router.get("/v1/jobs/{job_id}", response_model=JobView, responses=ERRORS)
async def get_job(job_id: str, request: Request, key: Annotated[ApiKey, Depends(require("submit"))]) -> JobView:
    """Status with timestamps, and once decided: action, categories, frames and transcript evidence."""
    return job_view(await owned_job(request, job_id, key))


class AppealBody(BaseModel):
    reason: str = Field(min_length=3, max_length=2000, description="Why the block is wrong")


@router.post("/v1/jobs/{job_id}/appeal", response_model=JobView, responses={**ERRORS, **CONFLICT})
async def appeal_job(job_id: str, body: AppealBody, request: Request,
                     key: Annotated[ApiKey, Depends(require("submit"))]) -> JobView:
    """Contest a blocked job (once): a senior reviewer upholds or overturns it (overturned: released)."""
    job = await owned_job(request, job_id, key)
    try:
        return job_view(await review.appeal(services(request).stages, job.job_id, job.tenant, key.key_id,
                                            body.reason))
    except ValueError as e:
        raise ApiError(409, "not_blocked", str(e)) from e
    except FileExistsError as e:
        raise ApiError(409, "appeal_exists", str(e)) from e


@router.get("/v1/jobs/{job_id}/evidence.png", responses={200: {"content": {"image/png": {}}}, **ERRORS, **CONFLICT})
async def job_evidence(job_id: str, request: Request, key: Annotated[ApiKey, Depends(require("submit"))]) -> Response:
    """A contact sheet of the frames that drove the decision, with labels and scores."""
    job = await owned_job(request, job_id, key)
    if job.decision is None or "action" not in job.decision:
        raise ApiError(409, "not_decided", f"job {job_id} is {job.status}; no decision yet")
    decision = VideoDecision.model_validate(job.decision)
    frames = await asyncio.to_thread(services(request).stages.store.load_frames, job_id)
    png = await asyncio.to_thread(contact_sheet, decision, [f.image for f in frames])
    return Response(png, media_type="image/png")


@router.get("/v1/jobs/{job_id}/video", responses={200: {"content": {"video/mp4": {}}}, **ERRORS, **CONFLICT})
async def released_video(job_id: str, request: Request,
                         key: Annotated[ApiKey, Depends(require("submit"))]) -> FileResponse:
    """The released file: moving visible watermark and signed C2PA manifest. Owner tenant only."""
    job = await owned_job(request, job_id, key)
    if job.status != "released" or not job.released_uri:
        raise ApiError(409, "not_released", f"job {job_id} is {job.status}; nothing released")
    path = services(request).stages.store.local_path(job.released_uri)
    return FileResponse(path, media_type="video/mp4", filename=f"{job_id}.mp4")
