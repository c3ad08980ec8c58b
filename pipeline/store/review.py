"""What people's review leaves in Redis besides the job itself: the appeal queue, strikes per creator,
and the figures of the operations view (decisions per day, time in queue, appeal outcomes).

Strikes are keyed by (tenant, creator) with the job that earned each, so an overturned appeal takes
its strike back; the window is the policy's. Figures are counters per tenant and day, and the last
thousand times in queue, so every API process shows the same numbers.
"""

from __future__ import annotations

import statistics
from datetime import timedelta

from pydantic import BaseModel

from pipeline.records import utcnow
from pipeline.store.state import State

KEEP_TIMES = 1000


class Figures(BaseModel):
    """One tenant's operations view."""

    tenant: str
    queue_depth: int
    appeals_open: int
    per_day: dict[str, dict[str, int]]  # day -> "machine:block", "review:allow", "category:violence" ... -> count
    overturn_rate: float | None
    appeals_decided: int
    median_queue_s: float | None
    categories: dict[str, int]  # decisions per category over the days shown, most first


class ReviewStore:
    def __init__(self, state: State) -> None:
        self.r, self.key = state.redis, state._key

    # -- appeals: one per job, queued per tenant, oldest first
    async def queue_appeal(self, tenant: str, job_id: str) -> None:
        await self.r.zadd(self.key("appeals", tenant), {job_id: utcnow().timestamp()})

    async def close_appeal(self, tenant: str, job_id: str) -> None:
        await self.r.zrem(self.key("appeals", tenant), job_id)

    async def appeals(self, tenant: str, limit: int = 100) -> list[str]:
        return [j.decode() for j in await self.r.zrange(self.key("appeals", tenant), 0, limit - 1)]

    # -- strikes: per creator, one per finally blocked job
    async def strike(self, tenant: str, creator: str, job_id: str) -> None:
        await self.r.zadd(self.key("strikes", tenant, creator), {job_id: utcnow().timestamp()})

    async def unstrike(self, tenant: str, creator: str, job_id: str) -> bool:
        return bool(await self.r.zrem(self.key("strikes", tenant, creator), job_id))

    async def strikes(self, tenant: str, creator: str, window_days: int) -> int:
        since = (utcnow() - timedelta(days=window_days)).timestamp()
        return int(await self.r.zcount(self.key("strikes", tenant, creator), since, "+inf"))

    # -- figures for the operations view
    async def count(self, tenant: str, action: str, categories: list[str], who: str) -> None:
        """One decision (``who``: machine, review, appeal) on today's counters."""
        day = self.key("stats", tenant, utcnow().date().isoformat())
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hincrby(day, f"{who}:{action}", 1)
            for c in categories:
                pipe.hincrby(day, f"category:{c}", 1)
            pipe.expire(day, 90 * 24 * 3600)
            await pipe.execute()

    async def waited(self, tenant: str, seconds: float) -> None:
        times = self.key("stats", tenant, "queue_s")
        await self.r.lpush(times, f"{seconds:.1f}")
        await self.r.ltrim(times, 0, KEEP_TIMES - 1)

    async def tenants(self) -> list[str]:
        """Tenants with anything to show: a review or appeal queue, or decisions counted."""
        found = set()
        for kind in ("review", "appeals", "stats"):
            prefix = self.key(kind, "")
            found |= {k.decode().removeprefix(prefix).split(":")[0] async for k in self.r.scan_iter(f"{prefix}*")}
        return sorted(found)

    async def figures(self, tenant: str, days: int = 7) -> Figures:
        today = utcnow().date()
        per_day = {}
        for n in range(days):
            day = (today - timedelta(days=n)).isoformat()
            raw = await self.r.hgetall(self.key("stats", tenant, day))
            per_day[day] = {k.decode(): int(v) for k, v in raw.items()}
        waits = [float(t) for t in await self.r.lrange(self.key("stats", tenant, "queue_s"), 0, -1)]
        appeals = {k: sum(d.get(f"appeal:{k}", 0) for d in per_day.values()) for k in ("block", "allow")}
        decided_appeals = appeals["block"] + appeals["allow"]
        categories: dict[str, int] = {}
        for counts in per_day.values():
            for k, v in counts.items():
                if k.startswith("category:"):
                    categories[k.removeprefix("category:")] = categories.get(k.removeprefix("category:"), 0) + v
        return Figures(
            tenant=tenant, queue_depth=int(await self.r.zcard(self.key("review", tenant))),
            appeals_open=int(await self.r.zcard(self.key("appeals", tenant))), per_day=per_day,
            overturn_rate=appeals["allow"] / decided_appeals if decided_appeals else None,
            appeals_decided=decided_appeals, median_queue_s=statistics.median(waits) if waits else None,
            categories=dict(sorted(categories.items(), key=lambda kv: -kv[1])))
