"""The one stage table, and the context every stage works in.

A stage's name is its role (``genguard worker --stages``), its claim in the Redis ledger, its part
of the consumer group and its agent's name; the table adds the topic it consumes, the job status
it sets while it works, the function that handles one message and the models it loads. The worker,
the CLI, the deploy files and their tests all read this table. Topic names and job statuses are
the wire and API contract, so they keep their published names (a job is "sampling" in the media
stage, and release consumes ``genguard.allowed``, the outcome topic of an allowed decision).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from pipeline.records import AuditRecord, Job, JobMessage, JobStatus, PromptRequest, Topics
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.policy_source import PolicySource
    from pipeline.prompt.gate import PromptGate
    from pipeline.prompt.stage import Batcher
    from pipeline.store.media import MediaStore
    from pipeline.store.signals import SignalStore
    from pipeline.store.state import JobLedger, State
    from pipeline.video.gate import VideoGate

log = logging.getLogger("genguard.stages")
Publish = Callable[[str, str, bytes], Awaitable[None]]
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


RETRIES, RETRY_BACKOFF_S = 3, 1.0  # a failed job stage is tried again 3 times, 1 s, 2 s, 3 s apart


class InProgress(RuntimeError):
    """The same request id is being checked elsewhere right now."""


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    topic: str  # what it consumes
    handler: str  # "module:function" run per message ("" for the audit writer, a loop of its own)
    status: JobStatus | None = None  # the job's status while this stage works on it
    models: frozenset[str] = frozenset()  # model groups it loads: text, speech, frames, judge
    message: type[BaseModel] = JobMessage  # what its topic carries (malformed ones go to the DLQ)
    batched: bool = False  # its messages share model calls: the worker runs up to prompt_batch_max at once

    def concurrency(self, settings: Settings) -> int:
        """Messages one worker runs at once in this stage."""
        s = settings
        return max(s.worker_concurrency, s.prompt_batch_max) if self.batched else s.worker_concurrency

    def load_handler(self) -> Callable[..., Awaitable[Any]]:
        module, _, fn = self.handler.partition(":")
        return getattr(importlib.import_module(module), fn)


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("prompt", Topics.PROMPTS, "pipeline.prompt.stage:prompt", models=frozenset({"text"}),
          message=PromptRequest, batched=True),
    Stage("media", Topics.MEDIA, "pipeline.video.stages:media", "sampling"),
    Stage("frames", Topics.FRAMES, "pipeline.video.stages:frames", "scoring", frozenset({"frames"})),
    Stage("audio", Topics.AUDIO, "pipeline.video.stages:audio", "transcribing", frozenset({"speech", "text"})),
    Stage("decide", Topics.DECIDE, "pipeline.video.stages:decide", "deciding", frozenset({"text", "judge"})),
    Stage("release", Topics.ALLOWED, "pipeline.release.stage:release"),
    Stage("audit", Topics.AUDIT, ""),
)}
VIDEO_MODELS = frozenset({"frames", "speech", "judge"})  # the model groups the video gate loads
JOB_STAGES = ("media", "frames", "audio", "decide", "release")  # the stages a video job passes
DEFAULT_STAGES = tuple(n for n in STAGES if n != "audit")  # the audit writer runs alone unless asked for


def parse(value: str | Iterable[str]) -> list[str]:
    """Stage names from ``--stages`` (comma-separated) or a list; unknown or no names are errors."""
    names = [s.strip() for s in value.split(",")] if isinstance(value, str) else list(value)
    names = [n for n in names if n]
    if unknown := sorted(set(names) - set(STAGES)):
        raise ValueError(f"unknown stages {unknown}; choose from {', '.join(STAGES)}")
    if not names:
        raise ValueError(f"no stages chosen; choose from {', '.join(STAGES)}")
    return names


def group_id(settings: Settings, stages: Iterable[str]) -> str:
    """The consumer group of a worker: ``<name>`` for the default set, else ``<name>-<stages>``."""
    chosen = set(stages)
    if chosen == set(DEFAULT_STAGES):
        return settings.worker_name
    return f"{settings.worker_name}-{'-'.join(s for s in STAGES if s in chosen)}"


def models_for(stages: Iterable[str]) -> frozenset[str]:
    return frozenset().union(*(STAGES[s].models for s in stages))


def audit_id(job_id: str, event: str) -> str:
    """A job's stage records one event once: a re-run after a crash repeats the same id, and the audit
    writer keeps only the first."""
    return f"aud_{job_id}.{event}"


@dataclass(slots=True)
class StageContext:
    """What a stage needs: settings, Redis, the media store, the policies, the models its role
    loaded (none for media and release), and how to publish. The API holds one too, without video
    models, and calls the same stage functions."""

    settings: Settings
    state: State
    jobs: JobLedger
    store: MediaStore
    policies: PolicySource
    publish: Publish
    gate: VideoGate | None = None  # the API, media and release roles load no video models
    prompts: PromptGate | None = None  # the prompt role and the API
    signals: SignalStore | None = None  # observations kept for replay
    batcher: Batcher | None = None  # the prompt stage's micro-batcher, made on first use

    @property
    def video(self) -> VideoGate:
        if self.gate is None:
            raise RuntimeError("this process has no video models loaded")
        return self.gate

    async def send(self, stage: str, job: Job, part: str = "") -> None:
        """Hand ``job`` to ``stage`` (a name in the table) or to an outcome topic."""
        topic = STAGES[stage].topic if stage in STAGES else stage
        msg = JobMessage.model_validate({"job_id": job.job_id, "tenant": job.tenant, "part": part})
        await self.publish(topic, job.job_id, msg.model_dump_json().encode())

    async def audit(self, record: AuditRecord) -> None:
        await self.publish(Topics.AUDIT, record.subject, record.model_dump_json().encode())

    async def run(self, fn: Callable[[], T], what: str) -> T:
        """Blocking model work off the event loop, bounded by the stage timeout."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn), self.settings.stage_timeout_s)
        except TimeoutError as e:
            raise TimeoutError(f"{what} exceeded {self.settings.stage_timeout_s:g}s") from e

    async def claim(self, stage: str, msg: JobMessage) -> Job | None:
        """Claim (job, stage) and mark the job as in that stage; None when done already or leased
        by another worker."""
        if not await self.state.claim(stage, msg.job_id):
            return None
        job = await self.jobs.get(msg.job_id)
        if job is None or job.tenant != msg.tenant:
            log.warning("%s: no job %s for tenant %s", stage, msg.job_id, msg.tenant)
            return None
        await self.jobs.touch(job.job_id)
        log.info("%s: %s claimed", stage, job.job_id)
        return job

    async def done(self, stage: str, job_id: str, result: str = "done") -> None:
        await self.state.complete(stage, job_id, result)

    async def retry(self, stage: str, msg: JobMessage, raw: bytes) -> bool:
        """After a stage failed on a job (a broker or Redis hiccup, say): give its claim back and send
        the message again after a short backoff, up to RETRIES times; False when they are used up
        (the caller dead-letters it, and the job's lease brings it back later)."""
        counter = self.state._key("retries", stage, msg.job_id)
        attempt = int(await self.state.redis.incr(counter))
        await self.state.redis.expire(counter, 3600)
        if attempt > RETRIES:
            return False
        await self.state.release(stage, msg.job_id)
        await asyncio.sleep(RETRY_BACKOFF_S * attempt)
        await self.publish(STAGES[stage].topic, msg.job_id, raw)
        return True

    async def once(self, ledger: str, subject: str, model: type[M], work: Callable[[], Awaitable[M]]) -> tuple[M, bool]:
        """``work``'s result and whether it is a replay: a subject already done returns what it
        returned then (nothing published again); one claimed elsewhere raises InProgress; a failure
        gives the claim back so a retry can run."""
        if cached := await self.state.result(ledger, subject):
            return model.model_validate_json(cached), True
        if not await self.state.claim(ledger, subject):
            raise InProgress(subject)
        try:
            result = await work()
        except BaseException:
            await self.state.release(ledger, subject)
            raise
        await self.state.complete(ledger, subject, result.model_dump_json())
        return result, False
