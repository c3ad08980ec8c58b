"""HTTP API. Routes are thin: auth, parse, call the stage function, answer.

Errors always have the shape ``{"error": {"code": ..., "message": ...}}``.
"""


import asyncio
import dataclasses
import itertools
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from redis import RedisError

from pipeline import __version__, jobs, provenance, release
from pipeline.audit import AuditSink
from pipeline.evidence import contact_sheet
from pipeline.gate import PromptGate, audit_record
from pipeline.media import MediaError
from pipeline.media_store import LocalMediaStore
from pipeline.metrics import OVERLOADED
from pipeline.prompts import LEDGER, announce_policy, decide
from pipeline.records import AuditRecord, Job, PromptRequest, Topics, Verdict, VideoDecision
from pipeline.services import ensure_topics
from pipeline.settings import Settings, get_settings
from pipeline.signal_store import LocalSignalStore
from pipeline.state import ApiKey, JobLedger, RedisVectorCache, Scope, State
from pipeline.timeutil import parse_since
from pipeline.video import limits_of

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


class JobView(BaseModel):
    job_id: str
    status: str
    tenant: str
    history: list[dict[str, str]]
    action: str | None = None
    error: dict[str, str] | None = None
    decision: dict[str, Any] | None = None
    review: dict[str, str] | None = None


def job_view(job: Job) -> JobView:
    decided = job.decision if job.decision and "action" in job.decision else None
    return JobView(job_id=job.job_id, status=job.status, tenant=job.tenant, history=job.history,
                   action=((job.review or {}).get("decision") and ("allow" if job.status == "allowed" else "block"))
                   or (decided or {}).get("action"), error=job.error, decision=decided, review=job.review)


class VerifyReport(BaseModel):
    present: bool
    state: str | None = None
    codes: list[str] = []
    signer: str | None = None
    assertions: dict[str, Any] = {}
    error: str | None = None
    watermark: dict[str, Any] = Field({}, description="the invisible watermark: present, payload, job_id")


class ReviewBody(BaseModel):
    decision: Literal["approve", "reject"]
    reason: str = Field(min_length=3, max_length=2000)


MEDIA_STATUS = {"too_large": 413, "unsupported_container": 415, "unsupported_codec": 415}
UNSHED = ("/healthz", "/readyz", "/metrics")
ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 403, 404, 413, 422, 503)}


class Services:
    """What the routes need, created at start-up and closed at shutdown."""

    def __init__(self, settings: Settings, gate: PromptGate, state: State, producer: AIOKafkaProducer | None):
        self.settings, self.gate, self.state, self.producer = settings, gate, state, producer
        self.store = LocalSignalStore(settings.signals_dir)
        self.stages = jobs.Stages(settings, state, JobLedger(state), LocalMediaStore(settings.media_dir), None,
                                  self.publish)

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        if self.producer is None:
            raise ApiError(503, "broker_unavailable", "the broker cannot be reached; nothing is accepted or decided")
        try:
            await self.producer.send_and_wait(topic, key=key.encode(), value=value)
        except KafkaError as e:
            raise ApiError(503, "broker_unavailable", f"publishing to {topic} failed: {type(e).__name__}") from e

    async def audit(self, key: str, value: bytes) -> None:
        try:
            await self.publish(Topics.AUDIT, key, value)
        except ApiError as e:
            raise ApiError(503, "audit_unavailable", f"no verdict without its audit record: {e.message}") from e


async def _start_producer(settings: Settings) -> AIOKafkaProducer | None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                max_batch_size=64 if settings.embedded_broker else 16384)
    try:
        await producer.start()
        await ensure_topics(settings, Topics.all())
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

    @app.exception_handler(RedisError)
    async def state_down(_: Request, e: RedisError) -> JSONResponse:
        log.error("redis: %s", e)  # nothing is accepted or decided without the ledger
        return JSONResponse({"error": {"code": "state_unavailable", "message": f"job state store: {type(e).__name__}"}},
                            status_code=503, headers={"Retry-After": "5"})

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

    in_flight = 0

    @app.middleware("http")
    async def shed_load(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Past ``api_max_in_flight`` requests at once, answer 503 at once rather than queue: a caller
        in front of a generator would rather retry than wait seconds (probes are never shed)."""
        nonlocal in_flight
        if in_flight >= settings.api_max_in_flight and request.url.path not in UNSHED:
            OVERLOADED.inc()
            return JSONResponse({"error": {"code": "overloaded", "message": f"{in_flight} requests in flight; "
                                           "retry shortly"}}, status_code=503, headers={"Retry-After": "1"})
        in_flight += 1
        try:
            return await call_next(request)
        finally:
            in_flight -= 1

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        # uploads have their own, larger cap, enforced again while streaming (multipart adds a little)
        uploads = ("/v1/videos", "/v1/verify")
        limit = settings.max_upload_bytes + 65536 if request.url.path in uploads else settings.max_body_bytes
        if length and length.isdigit() and int(length) > limit:
            code = "too_large" if request.url.path in uploads else "body_too_large"
            return JSONResponse({"error": {"code": code, "message": f"body has {length} bytes; the limit is {limit}"}},
                                status_code=413)
        return await call_next(request)

    @asynccontextmanager
    async def spooled(upload: UploadFile, suffix: str) -> AsyncIterator[Path]:
        """The upload in a temporary file, refused past the size limit while it streams in."""
        tmp_dir = settings.var_dir / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=suffix) as tmp:
            size = 0
            while chunk := await upload.read(1 << 20):
                size += len(chunk)
                if size > settings.max_upload_bytes:
                    raise ApiError(413, "too_large", f"the upload exceeds {settings.max_upload_bytes} bytes")
                tmp.write(chunk)
            tmp.flush()
            yield Path(tmp.name)

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
        # off the event loop: requests queue where the load shedder sees them, and ONNX runs in parallel
        verdict = await asyncio.to_thread(decide, svc.gate, req, "api", svc.store)
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

    @app.post("/v1/videos", status_code=202, response_model=JobView, tags=["videos"],
              responses={**ERRORS, 415: {"model": ErrorResponse}})
    async def submit_video(request: Request, key: Annotated[ApiKey, Depends(require("submit"))],
                           video: Annotated[UploadFile, File(description="MP4, MOV, WebM or MKV")],
                           prompt: Annotated[str | None, Form(max_length=settings.max_prompt_chars)] = None,
                           job_id: Annotated[str | None, Form(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")] = None
                           ) -> JobView:
        """Submit a generated video for moderation; poll GET /v1/jobs/{job_id} for the decision."""
        svc = services(request)
        suffix = Path(video.filename or "").suffix.lower()
        suffix = suffix if suffix in (".mp4", ".mov", ".webm", ".mkv", ".m4v") else ".bin"
        async with spooled(video, suffix) as path:
            try:
                job = await jobs.submit(svc.stages, path, suffix, key.tenant, key.key_id, prompt, job_id)
            except MediaError as e:
                raise ApiError(MEDIA_STATUS.get(e.code, 422), e.code, str(e)) from e
        return job_view(job)

    async def owned_job(request: Request, job_id: str, key: ApiKey) -> Job:
        job = await services(request).stages.jobs.get(job_id)
        if job is None or job.tenant != key.tenant:  # another tenant's job does not exist for you
            raise ApiError(404, "job_not_found", f"no job {job_id}")
        return job

    @app.get("/v1/jobs/{job_id}", response_model=JobView, responses=ERRORS, tags=["videos"])
    async def get_job(job_id: str, request: Request, key: Annotated[ApiKey, Depends(require("submit"))]) -> JobView:
        """Status with timestamps, and once decided: action, categories, frames and transcript evidence."""
        return job_view(await owned_job(request, job_id, key))

    @app.get("/v1/jobs/{job_id}/evidence.png", responses={200: {"content": {"image/png": {}}}, **ERRORS,
                                                           409: {"model": ErrorResponse}}, tags=["videos"])
    async def job_evidence(job_id: str, request: Request, key: Annotated[ApiKey, Depends(require("submit"))]
                           ) -> Response:
        """A contact sheet of the frames that drove the decision, with labels and scores."""
        job = await owned_job(request, job_id, key)
        if job.decision is None or "action" not in job.decision:
            raise ApiError(409, "not_decided", f"job {job_id} is {job.status}; no decision yet")
        decision = VideoDecision.model_validate(job.decision)
        frames = await asyncio.to_thread(services(request).stages.store.load_frames, job_id)
        png = await asyncio.to_thread(contact_sheet, decision, [f.image for f in frames])
        return Response(png, media_type="image/png")

    @app.get("/v1/jobs/{job_id}/video", responses={200: {"content": {"video/mp4": {}}}, **ERRORS,
                                                    409: {"model": ErrorResponse}}, tags=["videos"])
    async def released_video(job_id: str, request: Request, key: Annotated[ApiKey, Depends(require("submit"))]
                             ) -> FileResponse:
        """The released file: moving visible watermark and signed C2PA manifest. Owner tenant only."""
        job = await owned_job(request, job_id, key)
        if job.status != "released" or not job.released_uri:
            raise ApiError(409, "not_released", f"job {job_id} is {job.status}; nothing released")
        path = services(request).stages.store.local_path(job.released_uri)
        return FileResponse(path, media_type="video/mp4", filename=f"{job_id}.mp4")

    @app.post("/v1/verify", response_model=VerifyReport, responses=ERRORS, tags=["provenance"])
    async def verify_video(request: Request, key: Annotated[ApiKey, Depends(require("check"))],
                           video: Annotated[UploadFile, File(description="An MP4 or MOV to check")]) -> VerifyReport:
        """Is there a C2PA manifest, who signed it, is it valid and trusted, what does it say?"""
        async with spooled(video, ".mp4") as path:
            found = await asyncio.to_thread(provenance.read, path, release.trust_anchors(settings))
            mark = await release.watermark_report(path, services(request).stages.jobs, limits_of(settings))
        return VerifyReport(**dataclasses.asdict(found), watermark=mark)

    @app.get("/v1/review", response_model=list[JobView], responses=ERRORS, tags=["review"])
    async def review_queue(request: Request, key: Annotated[ApiKey, Depends(require("review"))]) -> list[JobView]:
        """Jobs of your tenant waiting for a human decision, oldest first."""
        ledger = services(request).stages.jobs
        found = [await ledger.get(j) for j in await ledger.review_queue(key.tenant)]
        return [job_view(j) for j in found if j is not None]

    @app.post("/v1/review/{job_id}", response_model=JobView, responses={**ERRORS, 409: {"model": ErrorResponse}},
              tags=["review"])
    async def review_job(job_id: str, body: ReviewBody, request: Request,
                         key: Annotated[ApiKey, Depends(require("review"))]) -> JobView:
        """Approve (on to release) or reject (blocked) a job held for review; audited."""
        try:
            job = await jobs.review(services(request).stages, job_id, key.tenant, key.key_id,
                                    body.decision == "approve", body.reason)
        except KeyError as e:
            raise ApiError(404, "job_not_found", f"no job {job_id}") from e
        except ValueError as e:
            raise ApiError(409, "not_in_review", str(e)) from e
        return job_view(job)

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
