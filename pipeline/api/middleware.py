"""What every request passes before its route: the body-size cap and the load shedder."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response

from pipeline.api.errors import body
from pipeline.metrics import OVERLOADED
from pipeline.settings import Settings

UNSHED = ("/healthz", "/readyz", "/metrics")
UPLOADS = ("/v1/videos", "/v1/verify", "/v1/trace")
IMAGE_UPLOADS = {"/v1/images:check": 1, "/v1/likeness": 11}  # images per request: one, or 10 photos + consent
Next = Callable[[Request], Awaitable[Response]]


def install(app: FastAPI, settings: Settings) -> None:
    in_flight = 0

    @app.middleware("http")
    async def shed_load(request: Request, call_next: Next) -> Response:
        """Past ``api_max_in_flight`` requests at once, answer 503 at once rather than queue: a caller
        in front of a generator would rather retry than wait seconds (probes are never shed)."""
        nonlocal in_flight
        if in_flight >= settings.api_max_in_flight and request.url.path not in UNSHED:
            OVERLOADED.inc()
            return body("overloaded", f"{in_flight} requests in flight; retry shortly", 503, {"Retry-After": "1"})
        in_flight += 1
        try:
            return await call_next(request)
        finally:
            in_flight -= 1

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Next) -> Response:
        """Uploads have their own, larger cap, enforced again while streaming (multipart adds a little)."""
        length = request.headers.get("content-length")
        path = request.url.path
        upload = path in UPLOADS or path in IMAGE_UPLOADS
        limit = settings.max_upload_bytes + 65536 if path in UPLOADS else settings.max_body_bytes
        if path in IMAGE_UPLOADS and request.method == "POST":
            limit = settings.max_image_bytes * IMAGE_UPLOADS[path] + 65536
        if length and length.isdigit() and int(length) > limit:
            return body("too_large" if upload else "body_too_large", f"body has {length} bytes; the limit is {limit}",
                        413)
        return await call_next(request)
