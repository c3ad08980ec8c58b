"""``POST /v1/images:check``: the reference image of an image-to-video request, checked before generation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from pipeline.api.deps import require, services, spooled
from pipeline.api.errors import CONFLICT, ERRORS, MEDIA_STATUS, ApiError, ErrorResponse
from pipeline.media import MediaError
from pipeline.records import CREATOR, ImageVerdict, new_id
from pipeline.stages import InProgress
from pipeline.store.state import ApiKey
from pipeline.video import image as image_stage

router = APIRouter(tags=["images"])
ID = r"^[A-Za-z0-9_.:-]{1,128}$"


@router.post("/v1/images:check", response_model=ImageVerdict,
             responses={**ERRORS, **CONFLICT, 415: {"model": ErrorResponse}})
async def check_image(request: Request, key: Annotated[ApiKey, Depends(require("check"))],
                      image: Annotated[UploadFile, File(description="JPEG, PNG, WebP, GIF, BMP or TIFF; one still")],
                      request_id: Annotated[str | None, Form(pattern=ID, description="Idempotency key")] = None,
                      creator: Annotated[str | None, Form(pattern=CREATOR, description="Who asked (grants)")] = None,
                      consent_attested: Annotated[bool, Form(description="The requester attests that every person "
                                                                         "shown consented")] = False,
                      ) -> ImageVerdict | JSONResponse:
    """Check a reference image: frame signals, hash lists and faces against the consent registry."""
    svc = services(request)
    gate = await svc.frames_gate()
    async with spooled(image, svc.settings, Path(image.filename or "").suffix.lower(), svc.settings.max_image_bytes) \
            as path:
        try:
            verdict, replayed = await image_stage.check(
                svc.stages, gate, path, key.tenant, key.key_id, request_id or new_id("img"), creator,
                consent_attested, idempotent=request_id is not None)
        except MediaError as e:
            raise ApiError(MEDIA_STATUS.get(e.code, 422), e.code, str(e)) from e
        except InProgress as e:
            raise ApiError(409, "in_progress", f"request {request_id} is being checked; retry shortly") from e
    if replayed:
        return JSONResponse(verdict.model_dump(mode="json"), headers={"Idempotent-Replay": "true"})
    return verdict
