"""The review queue: jobs held for a human decision, and the decision itself (audited)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from pipeline.api.deps import require, services
from pipeline.api.errors import CONFLICT, ERRORS, ApiError
from pipeline.api.videos import JobView, job_view
from pipeline.store.state import ApiKey
from pipeline.video import review

router = APIRouter(tags=["review"])


class ReviewBody(BaseModel):
    decision: Literal["approve", "reject"]
    reason: str = Field(min_length=3, max_length=2000)


@router.get("/v1/review", response_model=list[JobView], responses=ERRORS)
async def review_queue(request: Request, key: Annotated[ApiKey, Depends(require("review"))]) -> list[JobView]:
    """Jobs of your tenant waiting for a human decision, oldest first."""
    ledger = services(request).stages.jobs
    found = [await ledger.get(j) for j in await ledger.review_queue(key.tenant)]
    return [job_view(j) for j in found if j is not None]


@router.post("/v1/review/{job_id}", response_model=JobView, responses={**ERRORS, **CONFLICT})
async def review_job(job_id: str, body: ReviewBody, request: Request,
                     key: Annotated[ApiKey, Depends(require("review"))]) -> JobView:
    """Approve (on to release) or reject (blocked) a job held for review; audited."""
    try:
        job = await review.review(services(request).stages, job_id, key.tenant, key.key_id,
                                  body.decision == "approve", body.reason)
    except KeyError as e:
        raise ApiError(404, "job_not_found", f"no job {job_id}") from e
    except ValueError as e:
        raise ApiError(409, "not_in_review", str(e)) from e
    return job_view(job)
