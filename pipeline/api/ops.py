"""Probes and metrics, never shed under load."""

from __future__ import annotations

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis import RedisError

from pipeline import __version__
from pipeline.api.deps import services

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
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
