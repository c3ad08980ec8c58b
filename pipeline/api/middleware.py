"""What every request passes before its route: the body-size cap and the load shedder.

One plain ASGI middleware, not ``@app.middleware("http")``: each of those wraps the request in an anyio
task group and memory streams, which took a quarter of the API's event-loop time at 150 checks/s."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.api.errors import body
from pipeline.metrics import OVERLOADED
from pipeline.settings import Settings

UNSHED = ("/healthz", "/readyz", "/metrics")
UPLOADS = ("/v1/videos", "/v1/verify", "/v1/trace")
IMAGE_UPLOADS = {"/v1/images:check": 1, "/v1/likeness": 11}  # images per request: one, or 10 photos + consent


class Admission:
    """Refuses a body over its cap (413), then, past ``api_max_in_flight`` requests at once, answers 503
    at once rather than queue: a caller in front of a generator would rather retry than wait seconds
    (probes are never shed)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings, self.in_flight = app, settings, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.too_large(scope) or self.overloaded(scope["path"])
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def too_large(self, scope: Scope) -> Response | None:
        """Uploads have their own, larger cap, enforced again while streaming (multipart adds a little)."""
        s, path = self.settings, scope["path"]
        length = Headers(scope=scope).get("content-length")
        upload = path in UPLOADS or path in IMAGE_UPLOADS
        limit = s.max_upload_bytes + 65536 if path in UPLOADS else s.max_body_bytes
        if path in IMAGE_UPLOADS and scope["method"] == "POST":
            limit = s.max_image_bytes * IMAGE_UPLOADS[path] + 65536
        if length and length.isdigit() and int(length) > limit:
            return body("too_large" if upload else "body_too_large", f"body has {length} bytes; the limit is {limit}",
                        413)
        return None

    def overloaded(self, path: str) -> Response | None:
        if self.in_flight < self.settings.api_max_in_flight or path in UNSHED:
            return None
        OVERLOADED.inc()
        return body("overloaded", f"{self.in_flight} requests in flight; retry shortly", 503, {"Retry-After": "1"})
