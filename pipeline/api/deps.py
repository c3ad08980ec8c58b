"""What routes share: the per-process services, API-key auth by scope, upload spooling, tenant-scoped
job lookup. Routes stay thin: auth, parse, call the stage function, answer."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import Header, Request, UploadFile
from redis import RedisError

from pipeline.api.errors import ApiError
from pipeline.policy_source import PolicySource
from pipeline.prompt.gate import PromptGate
from pipeline.records import Job, Topics
from pipeline.settings import Settings
from pipeline.stages import StageContext
from pipeline.store.media import LocalMediaStore
from pipeline.store.signals import LocalSignalStore
from pipeline.store.state import ApiKey, JobLedger, Scope, State

if TYPE_CHECKING:
    from pipeline.video.gate import VideoGate


class Services:
    """What the routes need, created at start-up and closed at shutdown. ``stages`` is the same
    context the workers run stages in, without video models: the API submits, checks and reviews."""

    def __init__(self, settings: Settings, prompts: PromptGate, state: State, producer: AIOKafkaProducer | None,
                 frames: VideoGate | None = None):
        self.settings, self.state, self.producer = settings, state, producer
        self._frames, self._frames_lock = frames, asyncio.Lock()
        self.stages = StageContext(settings, state, JobLedger(state), LocalMediaStore(settings.media_dir),
                                   prompts.policies, self.publish, prompts=prompts,
                                   signals=LocalSignalStore(settings.signals_dir))

    @property
    def policies(self) -> PolicySource:
        return self.stages.policies

    async def frames_gate(self) -> VideoGate:
        """The frame models and the face finder, loaded on the first image check or enrolment: an API
        that only checks prompts and takes uploads never holds them."""
        async with self._frames_lock:
            if self._frames is None:
                from pipeline.video.gate import VideoGate

                self._frames = await asyncio.to_thread(
                    VideoGate.from_settings, self.settings, self.stages.prompts, None, frozenset({"frames", "judge"}),
                    self.policies)
        return self._frames

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        """Nothing is accepted or decided without its message acknowledged; a verdict not without its audit."""
        try:
            await self._send(topic, key, value)
        except ApiError as e:
            if topic == Topics.AUDIT:
                raise ApiError(503, "audit_unavailable", f"no verdict without its audit record: {e.message}") from e
            raise

    async def _send(self, topic: str, key: str, value: bytes) -> None:
        if self.producer is None:
            raise ApiError(503, "broker_unavailable", "the broker cannot be reached; nothing is accepted or decided")
        try:
            await self.producer.send_and_wait(topic, key=key.encode(), value=value)
        except KafkaError as e:
            raise ApiError(503, "broker_unavailable", f"publishing to {topic} failed: {type(e).__name__}") from e


def services(request: Request) -> Services:
    return request.app.state.services


def require(*scopes: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency: the caller's API key, which must hold one of ``scopes``."""
    async def dependency(request: Request, authorization: Annotated[str | None, Header()] = None) -> ApiKey:
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(401, "unauthenticated", "send 'Authorization: Bearer <api key>'")
        try:
            key = await services(request).state.lookup_key(authorization.removeprefix("Bearer ").strip())
        except RedisError as e:
            raise ApiError(503, "state_unavailable", "key store unreachable") from e
        if key is None:
            raise ApiError(401, "invalid_api_key", "API key not recognised")
        if not set(scopes) & set(key.scopes):
            raise ApiError(403, "missing_scope", f"this key lacks the '{' or '.join(scopes)}' scope")
        return key
    return dependency


@asynccontextmanager
async def spooled(upload: UploadFile, settings: Settings, suffix: str, limit: int | None = None) -> AsyncIterator[Path]:
    """The upload in a temporary file, refused past the size limit while it streams in."""
    limit = limit or settings.max_upload_bytes
    tmp_dir = settings.var_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=suffix) as tmp:
        size = 0
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "too_large", f"the upload exceeds {limit} bytes")
            tmp.write(chunk)
        tmp.flush()
        yield Path(tmp.name)


async def owned_job(request: Request, job_id: str, key: ApiKey) -> Job:
    job = await services(request).stages.jobs.get(job_id)
    if job is None or job.tenant != key.tenant:  # another tenant's job does not exist for you
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return job
