"""Every error a client sees has one shape, ``{"error": {"code": ..., "message": ...}}``, and a
precise code; nothing a client can send turns into a 5xx."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis import RedisError

log = logging.getLogger("genguard.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 403, 404, 413, 422, 503)}
CONFLICT = {409: {"model": ErrorResponse}}
MEDIA_STATUS = {"too_large": 413, "unsupported_container": 415, "unsupported_codec": 415, "image_too_large": 413,
                "unsupported_image": 415, "animated_image": 415}


def body(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def api_error(_: Request, e: ApiError) -> JSONResponse:
    return body(e.code, e.message, e.status)


async def state_down(_: Request, e: RedisError) -> JSONResponse:
    log.error("redis: %s", e)  # nothing is accepted or decided without the ledger
    return body("state_unavailable", f"job state store: {type(e).__name__}", 503, {"Retry-After": "5"})


async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
    errors = e.errors()
    if bad_json := next((err for err in errors if err["type"] == "json_invalid"), None):
        return body("invalid_json", f"body is not valid JSON: {bad_json['ctx'].get('error', '')}", 400)
    return body("invalid_request", "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in errors), 422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RedisError, state_down)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid)  # type: ignore[arg-type]
