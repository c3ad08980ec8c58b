"""Fast state in Redis: the processing ledger (idempotency), API keys and cached vectors.

Nothing here is the only copy of anything an audit needs: verdicts and audit records also
travel on their topics.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import secrets
from typing import Literal

import numpy as np
import redis
import redis.asyncio as aioredis
from pydantic import BaseModel, Field
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from pipeline.records import TERMINAL, Job, JobStatus, new_id, utcnow
from pipeline.settings import Settings

# review: reviewer; appeal: senior reviewer (decides appeals); policy: policy owner (reads the console)
Scope = Literal["check", "submit", "review", "appeal", "policy", "audit", "verify", "likeness", "admin"]
ALL_SCOPES: tuple[Scope, ...] = ("check", "submit", "review", "appeal", "policy", "audit", "verify", "likeness",
                                  "admin")


class ApiKey(BaseModel):
    key_id: str
    tenant: str
    scopes: list[Scope]
    name: str = ""
    created_at: str = Field(default_factory=lambda: utcnow().isoformat())


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


RETRIES = 3  # a restarted Redis leaves dead pooled connections: reconnect rather than fail the request


class State:
    """Async Redis state shared by the API and the workers."""

    def __init__(self, settings: Settings, client: aioredis.Redis | None = None) -> None:
        self.redis = client or aioredis.from_url(
            settings.redis_url, retry=AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError])
        self.prefix = settings.redis_prefix
        self.lease_s = settings.job_lease_s
        self.done_ttl_s = settings.done_ttl_s

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        await self.redis.aclose()

    # -- processing ledger: one owner per request, results kept for replays of the same id
    async def claim(self, kind: str, subject: str) -> bool:
        """True if this caller now owns ``subject``; False if it is done or leased elsewhere."""
        return bool(await self.redis.set(self._key(kind, subject), b"", nx=True, ex=self.lease_s))

    async def complete(self, kind: str, subject: str, result: str) -> None:
        await self.redis.set(self._key(kind, subject), result.encode(), ex=self.done_ttl_s)

    async def release(self, kind: str, subject: str) -> None:
        """Give a claim back after a failure so a redelivery can try again."""
        await self.redis.delete(self._key(kind, subject))

    async def result(self, kind: str, subject: str) -> str | None:
        raw = await self.redis.get(self._key(kind, subject))
        return raw.decode() if raw else None

    # -- audit chain heads, so `audit verify` notices records cut from the end of a stream
    async def set_audit_head(self, stream: str, seq: int, digest: str) -> None:
        await self.redis.hset(self._key("audit", "heads"), stream, f"{seq}:{digest}")

    async def audit_heads(self) -> dict[str, tuple[int, str]]:
        raw = await self.redis.hgetall(self._key("audit", "heads"))
        return {k.decode(): (int(v.split(b":")[0]), v.split(b":")[1].decode()) for k, v in raw.items()}

    # -- API keys, stored by the sha256 of the secret only
    async def create_key(self, tenant: str, scopes: list[Scope], name: str = "",
                         secret: str | None = None) -> tuple[str, ApiKey]:
        key = ApiKey(key_id=new_id("key")[:16], tenant=tenant, scopes=scopes, name=name)
        secret = secret or f"gg_{key.key_id.removeprefix('key_')}_{secrets.token_urlsafe(24)}"
        await self.redis.set(self._key("apikey", _digest(secret)), key.model_dump_json())
        await self.redis.hset(self._key("apikeys"), key.key_id, _digest(secret))
        return secret, key

    async def lookup_key(self, secret: str) -> ApiKey | None:
        raw = await self.redis.get(self._key("apikey", _digest(secret)))
        return ApiKey.model_validate_json(raw) if raw else None

    async def list_keys(self) -> list[ApiKey]:
        digests = await self.redis.hvals(self._key("apikeys"))
        raws = [await self.redis.get(self._key("apikey", d.decode())) for d in digests]
        return [ApiKey.model_validate_json(r) for r in raws if r]

    async def revoke_key(self, key_id: str) -> ApiKey | None:
        digest = await self.redis.hget(self._key("apikeys"), key_id)
        if digest is None:
            return None
        raw = await self.redis.get(self._key("apikey", digest.decode()))
        await self.redis.delete(self._key("apikey", digest.decode()))
        await self.redis.hdel(self._key("apikeys"), key_id)
        return ApiKey.model_validate_json(raw) if raw else None

    async def first_seen(self, kind: str, name: str) -> bool:
        """True the first time any process reports ``name`` (e.g. a policy version going live)."""
        return bool(await self.redis.set(self._key("seen", kind, name), b"1", nx=True))


class RedisVectorCache:
    """Exemplar embeddings by content key; used once per policy version at start-up (sync)."""

    def __init__(self, settings: Settings) -> None:
        self.redis = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=1, retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError])
        self.prefix = f"{settings.redis_prefix}:vectors"

    def get(self, key: str) -> np.ndarray | None:
        try:
            raw = self.redis.get(f"{self.prefix}:{key}")
        except redis.RedisError:
            return None
        return np.load(io.BytesIO(raw)) if raw else None

    def put(self, key: str, value: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, value)
        with contextlib.suppress(redis.RedisError):  # a later miss costs one embedding batch, nothing else
            self.redis.set(f"{self.prefix}:{key}", buf.getvalue())


class JobLedger:
    """Video jobs in Redis: the record, a lease per non-terminal job (the reconciler re-publishes
    jobs whose lease ran out), the parts of an observation as stages finish them, the review queue."""

    def __init__(self, state: State) -> None:
        self.r, self.key, self.lease_s = state.redis, state._key, state.lease_s

    async def create(self, job: Job) -> bool:
        job.history = [{"status": job.status, "at": utcnow().isoformat()}]
        if not await self.r.set(self.key("job", job.job_id), job.model_dump_json(), nx=True):
            return False
        if job.creator:  # a reviewer sees the creator's earlier jobs next to this one
            await self.r.zadd(self.key("creator", job.tenant, job.creator), {job.job_id: utcnow().timestamp()})
        if job.status not in TERMINAL:
            await self.touch(job.job_id)
        return True

    async def get(self, job_id: str) -> Job | None:
        raw = await self.r.get(self.key("job", job_id))
        return Job.model_validate_json(raw) if raw else None

    async def update(self, job_id: str, status: JobStatus | None = None, **fields: object) -> Job:
        """Read-modify-write under WATCH, so two stages updating one job never lose a change."""
        key = self.key("job", job_id)
        async with self.r.pipeline() as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        raise KeyError(f"no job {job_id}")
                    job = Job.model_validate_json(raw).model_copy(update=fields)
                    if status is not None and status != job.status:
                        job.status = status
                        job.history.append({"status": status, "at": utcnow().isoformat()})
                    pipe.multi()
                    pipe.set(key, job.model_dump_json())
                    if job.status in TERMINAL or job.status == "review":  # nothing for a worker to redo
                        pipe.zrem(self.key("leases"), job_id)
                    if job.status == "review":
                        pipe.zadd(self.key("review", job.tenant), {job_id: utcnow().timestamp()})
                    else:
                        pipe.zrem(self.key("review", job.tenant), job_id)
                    await pipe.execute()
                    return job
                except redis.WatchError:
                    continue

    async def touch(self, job_id: str) -> None:
        await self.r.zadd(self.key("leases"), {job_id: utcnow().timestamp() + self.lease_s})

    async def expired(self) -> list[str]:
        return [j.decode() for j in await self.r.zrangebyscore(self.key("leases"), 0, utcnow().timestamp())]

    async def put_part(self, job_id: str, part: str, value: str) -> None:
        await self.r.hset(self.key("job", job_id, "parts"), part, value)

    async def parts(self, job_id: str) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in (await self.r.hgetall(self.key("job", job_id, "parts"))).items()}

    async def map_watermark(self, payload: str, job_id: str) -> None:
        await self.r.set(self.key("watermark", payload), job_id)

    async def job_for_watermark(self, payload: str) -> str | None:
        raw = await self.r.get(self.key("watermark", payload))
        return raw.decode() if raw else None

    async def review_queue(self, tenant: str, limit: int = 100) -> list[str]:
        return [j.decode() for j in await self.r.zrange(self.key("review", tenant), 0, limit - 1)]

    async def review_tenants(self) -> list[str]:
        """Tenants with a review queue (an admin's console shows them all)."""
        prefix = self.key("review", "")
        return sorted({k.decode().removeprefix(prefix) async for k in self.r.scan_iter(f"{prefix}*")})

    async def by_creator(self, tenant: str, creator: str, limit: int = 20) -> list[str]:
        """The creator's jobs, newest first."""
        return [j.decode() for j in await self.r.zrevrange(self.key("creator", tenant, creator), 0, limit - 1)]
