"""The HTTP API: start-up and shutdown, the error handlers and middleware, and one router per area."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from pipeline import __version__
from pipeline.api import (
    audit,
    console,
    errors,
    images,
    likeness,
    middleware,
    ops,
    prompts,
    review,
    trace,
    verify,
    videos,
)
from pipeline.api.deps import Services
from pipeline.kafka import start_producer
from pipeline.prompt.gate import PromptGate
from pipeline.settings import Settings, get_settings
from pipeline.store.state import RedisVectorCache, State

if TYPE_CHECKING:
    from pipeline.video.gate import VideoGate

ROUTERS = (prompts.router, images.router, videos.router, likeness.router, review.router, console.router,
           audit.router, verify.router, trace.router, ops.router)


def create_app(settings: Settings | None = None, prompts_gate: PromptGate | None = None,
               frames_gate: VideoGate | None = None) -> FastAPI:
    """The app; tests share loaded gates through ``prompts_gate`` and ``frames_gate`` (the API loads the
    text models at start and the frame models on the first image check)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = State(settings)
        gate = prompts_gate or PromptGate.from_settings(settings, RedisVectorCache(settings))
        gate.warm()
        svc = Services(settings, gate, state, await start_producer(settings), frames_gate)
        app.state.services = svc
        if svc.producer is not None:
            await svc.policies.announce(state, svc.publish, "api")
        yield
        if svc.producer:
            await svc.producer.stop()
        await state.close()

    app = FastAPI(title="genguard", version=__version__, lifespan=lifespan,
                  description="Moderation and provenance gate for generative video.")
    errors.install(app)
    app.add_exception_handler(console.SignIn, console.to_sign_in)
    app.add_middleware(middleware.Admission, settings=settings)
    for router in ROUTERS:
        app.include_router(router)
    return app
