"""Probes and metrics, never shed under load."""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis import RedisError

from pipeline import __version__
from pipeline.api.deps import services
from pipeline.metrics import APPEALS_OPEN, DECISIONS_TODAY, OVERTURN_RATE, QUEUE_MEDIAN, REVIEW_QUEUE
from pipeline.store.review import ReviewStore

log = logging.getLogger("genguard.api")

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok", "version": __version__}


@router.get("/readyz", responses={503: {"description": "a dependency is down"}})
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
    checks = {"broker": broker_ok, "redis": redis_ok, "policy": svc.policies.base.version}
    ok = broker_ok and redis_ok
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    await review_gauges(ReviewStore(services(request).state))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def review_gauges(store: ReviewStore) -> None:
    """The operations view's figures as gauges, read from Redis at scrape time (a Redis outage leaves
    the last values and the rest of the metrics still answer)."""
    try:
        for tenant in await store.tenants():
            f = await store.figures(tenant, days=1)
            REVIEW_QUEUE.labels(tenant).set(f.queue_depth)
            APPEALS_OPEN.labels(tenant).set(f.appeals_open)
            OVERTURN_RATE.labels(tenant).set(f.overturn_rate or 0)
            QUEUE_MEDIAN.labels(tenant).set(f.median_queue_s or 0)
            for counts in f.per_day.values():
                for name, n in counts.items():
                    if name.split(":")[0] in ("machine", "review", "appeal"):
                        DECISIONS_TODAY.labels(tenant, *name.split(":")).set(n)
    except RedisError:
        log.warning("review figures unavailable for /metrics")
