"""HTTP API. Routes are thin: auth, parse, call the stage function, answer.

Errors always have the shape ``{"error": {"code": ..., "message": ...}}``.
"""


import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from redis import RedisError

from pipeline import __version__
from pipeline.audit import AuditSink
from pipeline.gate import PromptGate, audit_record
from pipeline.prompts import LEDGER, announce_policy, decide
from pipeline.records import AuditRecord, PromptRequest, Topics, Verdict
from pipeline.services import ensure_topics
from pipeline.settings import Settings, get_settings
from pipeline.signal_store import LocalSignalStore
from pipeline.state import ApiKey, RedisVectorCache, Scope, State
from pipeline.timeutil import parse_since

log = logging.getLogger("genguard.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class CheckRequest(BaseModel):
    prompt: str = Field(description="The text-to-video prompt to check.")
    tenant: str | None = Field(None, description="Defaults to the API key's tenant.")
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$",
                                   description="Idempotency key: a repeat returns the first verdict.")


class AuditPage(BaseModel):
    records: list[AuditRecord]
    next: str | None = Field(None, description="Pass as `after` for the next page; null at the end.")


def audit_page(sink: AuditSink, tenant: str, since: datetime | None, after: str | None, limit: int) -> AuditPage:
    records = sink.records(since, tenant)
    if after:
        for rec in records:
            if rec.audit_id == after:
                break
    page = list(itertools.islice(records, limit + 1))
    return AuditPage(records=page[:limit], next=page[limit - 1].audit_id if len(page) > limit else None)


ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 403, 413, 422, 503)}


class Services:
    """What the routes need, created at start-up and closed at shutdown."""

    def __init__(self, settings: Settings, gate: PromptGate, state: State, producer: AIOKafkaProducer | None):
        self.settings, self.gate, self.state, self.producer = settings, gate, state, producer
        self.store = LocalSignalStore(settings.signals_dir)

    async def audit(self, key: str, value: bytes) -> None:
        if self.producer is None:
            raise ApiError(503, "audit_unavailable", "the audit topic cannot be reached; no verdict is given")
        try:
            await self.producer.send_and_wait(Topics.AUDIT, key=key.encode(), value=value)
        except KafkaError as e:
            raise ApiError(503, "audit_unavailable", f"audit write failed: {type(e).__name__}") from e


async def _start_producer(settings: Settings) -> AIOKafkaProducer | None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                max_batch_size=64 if settings.embedded_broker else 16384)
    try:
        await producer.start()
        await ensure_topics(settings.kafka_bootstrap, [Topics.AUDIT])
    except KafkaError as e:
        log.error("broker %s unreachable at start-up: %s", settings.kafka_bootstrap, e)
        await producer.stop()
        return None
    return producer


def create_app(settings: Settings | None = None, gate: PromptGate | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = State(settings)
        the_gate = gate or PromptGate.from_settings(settings, RedisVectorCache(settings))
        the_gate.warm()
        services = Services(settings, the_gate, state, await _start_producer(settings))
        app.state.services = services
        if services.producer is not None:
            await announce_policy(the_gate, state, lambda _topic, key, value: services.audit(key, value), "api")
        yield
        if services.producer:
            await services.producer.stop()
        await state.close()

    app = FastAPI(title="genguard", version=__version__, lifespan=lifespan,
                  description="Moderation and provenance gate for generative video.")

    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse({"error": {"code": e.code, "message": e.message}}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        if any(err["type"] == "json_invalid" for err in errors):
            err = next(err for err in errors if err["type"] == "json_invalid")
            return JSONResponse({"error": {"code": "invalid_json",
                                           "message": f"body is not valid JSON: {err['ctx'].get('error', '')}"}},
                                status_code=400)
        detail = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in errors)
        return JSONResponse({"error": {"code": "invalid_request", "message": detail}}, status_code=422)

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            return JSONResponse({"error": {"code": "body_too_large", "message":
                                           f"body has {length} bytes; the limit is {settings.max_body_bytes}"}},
                                status_code=413)
        return await call_next(request)

    def services(request: Request) -> Services:
        return request.app.state.services

    def require(scope: Scope) -> Callable[..., Awaitable[ApiKey]]:
        async def dependency(request: Request,
                             authorization: Annotated[str | None, Header()] = None) -> ApiKey:
            if not authorization or not authorization.startswith("Bearer "):
                raise ApiError(401, "unauthenticated", "send 'Authorization: Bearer <api key>'")
            try:
                key = await services(request).state.lookup_key(authorization.removeprefix("Bearer ").strip())
            except RedisError as e:
                raise ApiError(503, "state_unavailable", "key store unreachable") from e
            if key is None:
                raise ApiError(401, "invalid_api_key", "API key not recognised")
            if scope not in key.scopes:
                raise ApiError(403, "missing_scope", f"this key lacks the '{scope}' scope")
            return key
        return dependency

    @app.post("/v1/prompts:check", response_model=Verdict, responses=ERRORS, tags=["prompts"])
    async def check_prompt(body: CheckRequest, request: Request,
                           key: Annotated[ApiKey, Depends(require("check"))]) -> Verdict | JSONResponse:
        """Check a prompt before generation: allow, review or block, with categories and reasons."""
        svc = services(request)
        tenant = body.tenant or key.tenant
        if tenant != key.tenant and "admin" not in key.scopes:
            raise ApiError(403, "tenant_mismatch", f"this key belongs to tenant '{key.tenant}', not '{tenant}'")
        if len(body.prompt) > settings.max_prompt_chars:
            raise ApiError(413, "prompt_too_long",
                           f"prompt has {len(body.prompt)} characters; the limit is {settings.max_prompt_chars}")
        if not body.prompt.strip():
            raise ApiError(422, "prompt_empty", "prompt is empty")
        req = PromptRequest(tenant=tenant, prompt=body.prompt, actor=key.key_id,
                            **({"request_id": body.request_id} if body.request_id else {}))
        subject = f"{tenant}:{req.request_id}"
        if body.request_id and (cached := await svc.state.result(LEDGER, subject)):
            return JSONResponse(Verdict.model_validate_json(cached).model_dump(mode="json"),
                                headers={"Idempotent-Replay": "true"})
        verdict = decide(svc.gate, req, "api", svc.store)
        await svc.audit(req.request_id, audit_record(req, verdict).model_dump_json().encode())
        if body.request_id:
            await svc.state.complete(LEDGER, subject, verdict.model_dump_json())
        return verdict

    @app.get("/v1/audit", response_model=AuditPage, responses=ERRORS, tags=["audit"])
    async def list_audit(key: Annotated[ApiKey, Depends(require("audit"))],
                         since: str | None = None, after: str | None = None,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AuditPage:
        """Page through the caller's tenant's audit records, oldest first; pass ``next`` as ``after``."""
        try:
            start = parse_since(since)
        except ValueError as e:
            raise ApiError(422, "invalid_request", str(e)) from e
        return audit_page(AuditSink(settings.audit_dir), key.tenant, start, after, limit)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "a dependency is down"}})
    async def readyz(request: Request) -> JSONResponse:
        """Broker and Redis reachable, policy loaded."""
        svc = services(request)
        try:
            redis_ok = await svc.state.ping()
        except (RedisError, OSError):
            redis_ok = False
        broker_ok = False
        if svc.producer is not None:
            try:
                await svc.producer.client.fetch_all_metadata()
                broker_ok = True
            except KafkaError:
                broker_ok = False
        checks = {"broker": broker_ok, "redis": redis_ok, "policy": svc.gate.base.version}
        ok = broker_ok and redis_ok
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
