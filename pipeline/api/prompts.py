"""``POST /v1/prompts:check``: the prompt stage's own audited, idempotent function, called in-process."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pipeline.api.deps import require, services
from pipeline.api.errors import CONFLICT, ERRORS, ApiError
from pipeline.prompt import stage
from pipeline.records import CREATOR, PromptRequest, Verdict
from pipeline.store.state import ApiKey

router = APIRouter(tags=["prompts"])


class CheckRequest(BaseModel):
    prompt: str = Field(description="The text-to-video prompt to check.")
    tenant: str | None = Field(None, description="Defaults to the API key's tenant.")
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$",
                                   description="Idempotency key: a repeat returns the first verdict.")
    creator: str | None = Field(None, pattern=CREATOR, description="Your pseudonymous id of who asked (strikes); "
                                "never an e-mail")


@router.post("/v1/prompts:check", response_model=Verdict, responses={**ERRORS, **CONFLICT})
async def check_prompt(body: CheckRequest, request: Request,
                       key: Annotated[ApiKey, Depends(require("check"))]) -> Verdict | JSONResponse:
    """Check a prompt before generation: allow, review or block, with categories and reasons."""
    svc = services(request)
    tenant = body.tenant or key.tenant
    if tenant != key.tenant and "admin" not in key.scopes:
        raise ApiError(403, "tenant_mismatch", f"this key belongs to tenant '{key.tenant}', not '{tenant}'")
    limit = svc.settings.max_prompt_chars
    if len(body.prompt) > limit:
        raise ApiError(413, "prompt_too_long", f"prompt has {len(body.prompt)} characters; the limit is {limit}")
    if not body.prompt.strip():
        raise ApiError(422, "prompt_empty", "prompt is empty")
    req = PromptRequest(tenant=tenant, prompt=body.prompt, actor=key.key_id, creator=body.creator,
                        **({"request_id": body.request_id} if body.request_id else {}))
    try:
        verdict, replayed = await stage.check(svc.stages, req, "api", reply=False,
                                              idempotent=body.request_id is not None)
    except stage.InProgress as e:
        raise ApiError(409, "in_progress", f"request {body.request_id} is being checked; retry shortly") from e
    if replayed:
        return JSONResponse(verdict.model_dump(mode="json"), headers={"Idempotent-Replay": "true"})
    return verdict
