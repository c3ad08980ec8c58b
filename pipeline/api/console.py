"""The review console under ``/console``: server-rendered pages for people, no build step, nothing
from a CDN. Sign-in exchanges an API key holding ``review`` (or ``admin``) for a session cookie;
every form carries the session's CSRF token; a reviewer sees only their tenant's jobs (admin: all).
Routes stay thin: the page data comes from ``pipeline/video/casefile.py``, decisions from the same
stage functions the JSON API calls.
"""

from __future__ import annotations

import asyncio
import io
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from PIL import Image

from pipeline.api.deps import services
from pipeline.api.errors import ApiError
from pipeline.records import Job, utcnow
from pipeline.store.review import ReviewStore
from pipeline.store.sessions import ConsoleSession, Sessions
from pipeline.video import casefile, review

router = APIRouter(prefix="/console", include_in_schema=False)
HERE = Path(__file__).parent
PAGES = Jinja2Templates(directory=HERE / "templates")
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
COOKIE, LOGIN_COOKIE = "gg_console", "gg_login"
MAY_SIGN_IN = {"review", "appeal", "policy", "admin"}  # reviewer, senior reviewer, policy owner (read-only)
MAY_REVIEW, MAY_APPEAL = {"review", "admin"}, {"appeal", "admin"}


class SignIn(Exception):
    """No valid session (none, or expired): the page answers with a redirect to the sign-in page."""


async def to_sign_in(_: Request, __: Exception) -> Response:
    return RedirectResponse("/console/login", status_code=303)


async def session_of(request: Request) -> tuple[str, ConsoleSession]:
    sessions = Sessions(services(request).state, services(request).settings.console_session_s)
    session_id = request.cookies.get(COOKIE, "")
    found = await sessions.get(session_id)
    if found is None:
        raise SignIn()
    return session_id, found


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return PAGES.TemplateResponse(request, name, context, status_code=status)


def checked(session: ConsoleSession, csrf: str) -> None:
    if not secrets.compare_digest(session.csrf, csrf):
        raise ApiError(403, "csrf", "the form's CSRF token is missing or wrong: reload the page")


async def visible_job(request: Request, session: ConsoleSession, job_id: str) -> Job:
    job = await services(request).stages.jobs.get(job_id)
    if job is None or (job.tenant != session.tenant and not session.admin):
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return job


@router.get("/static/{name}")
async def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise ApiError(404, "not_found", name)
    return FileResponse(HERE / "static" / name, media_type=STATIC[name])


@router.get("/login")
async def login_page(request: Request, error: str = "") -> HTMLResponse:
    token = secrets.token_urlsafe(16)  # login CSRF: the form must echo the cookie (double submit)
    response = page(request, "login.html", error=error, csrf=token)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        path="/console")
    return response


@router.post("/login")
async def login(request: Request, api_key: Annotated[str, Form()], csrf: Annotated[str, Form()] = "") -> Response:
    if not secrets.compare_digest(request.cookies.get(LOGIN_COOKIE, ""), csrf):
        raise ApiError(403, "csrf", "the sign-in form's CSRF token is missing or wrong: reload the page")
    svc = services(request)
    key = await svc.state.lookup_key(api_key.strip())
    if key is None or not MAY_SIGN_IN & set(key.scopes):
        return await login_page(request, error="That key is unknown or lacks the 'review' scope (or 'appeal', "
                                               "'policy').")
    session_id, _ = await Sessions(svc.state, svc.settings.console_session_s).start(key)
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(COOKIE, session_id, max_age=svc.settings.console_session_s, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/console")
    response.delete_cookie(LOGIN_COOKIE, path="/console")
    return response


@router.post("/logout")
async def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    session_id, session = await session_of(request)
    checked(session, csrf)
    await Sessions(services(request).state, services(request).settings.console_session_s).end(session_id)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.get("")
async def queue(request: Request, category: str = "", source: str = "", min_age_s: int = 0,
                tenant: str = "") -> HTMLResponse:
    """Jobs held for review and open appeals, oldest first, with their age; filtered by tenant,
    category and source."""
    _, session = await session_of(request)
    ledger, appeals, now = services(request).stages.jobs, ReviewStore(services(request).state), utcnow()
    tenants = await ledger.review_tenants() if session.admin else [session.tenant]
    if session.admin:
        tenants = sorted(set(tenants) | set(await appeals.tenants()))
    shown = [t for t in tenants if not tenant or t == tenant]

    async def rows(ids: list[str], since: str) -> list[dict[str, Any]]:
        found = [casefile.row(j, now, since) for j in [await ledger.get(i) for i in ids] if j is not None]
        keep = [r for r in found if (not category or category in r["categories"])
                and (not source or source in r["sources"]) and r["age_s"] >= min_age_s]
        return sorted(keep, key=lambda r: -r["age_s"])

    held = await rows([i for t in shown for i in await ledger.review_queue(t)], "review")
    appealed = await rows([i for t in shown for i in await appeals.appeals(t)], "blocked")
    return page(request, "queue.html", session=session, rows=held, appeals=appealed, tenants=tenants,
                filters={"category": category, "source": source, "min_age_s": min_age_s, "tenant": tenant})


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str) -> HTMLResponse:
    _, session = await session_of(request)
    svc = services(request)
    job = await visible_job(request, session, job_id)
    decision = casefile.decision_of(job)
    earlier = [j for j in [await svc.stages.jobs.get(i) for i in await svc.stages.jobs.by_creator(
        job.tenant, job.creator)] if j is not None and j.job_id != job.job_id] if job.creator else []
    policy = svc.policies.for_tenant(job.tenant)
    window = policy.policy.strikes.window_days if policy.policy.strikes else 30
    strikes = await ReviewStore(svc.state).strikes(job.tenant, job.creator, window) if job.creator else None
    scopes = set(session.scopes)
    return page(request, "job.html", session=session, job=job, decision=decision, earlier=earlier,
                marks=casefile.marks(decision) if decision else [],
                lines=casefile.transcript(decision) if decision else [],
                readings=casefile.readings(decision, policy) if decision else [],
                duration=float((decision.probe if decision else {}).get("duration_s") or 0) or 1.0,
                live_policy=policy.version, strikes=strikes, window=window, may_review=bool(MAY_REVIEW & scopes),
                may_appeal=bool(MAY_APPEAL & scopes) and review.first_decider(job) != session.key_id,
                first_decider=review.first_decider(job))


@router.get("/jobs/{job_id}/video")
async def job_video(request: Request, job_id: str) -> FileResponse:
    """The uploaded clip, with range requests so the player can seek."""
    _, session = await session_of(request)
    job = await visible_job(request, session, job_id)
    if not job.media_uri:
        raise ApiError(404, "no_media", f"job {job_id} has no stored video")
    return FileResponse(services(request).stages.store.local_path(job.media_uri), media_type="video/mp4")


@router.get("/jobs/{job_id}/frames/{index}.jpg")
async def job_frame(request: Request, job_id: str, index: int) -> Response:
    _, session = await session_of(request)
    await visible_job(request, session, job_id)
    frame = await asyncio.to_thread(services(request).stages.store.load_frame, job_id, index)
    if frame is None:
        raise ApiError(404, "no_frame", f"job {job_id} has no frame {index}")
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=85)
    return Response(buffer.getvalue(), media_type="image/jpeg")


@router.post("/jobs/{job_id}/decide")
async def decide(request: Request, job_id: str, decision: Annotated[str, Form()], reason: Annotated[str, Form()],
                 csrf: Annotated[str, Form()] = "") -> Response:
    """approve (on to release, as the API path), block, or escalate; a reason is required; audited."""
    _, session = await session_of(request)
    checked(session, csrf)
    if not MAY_REVIEW & set(session.scopes):
        raise ApiError(403, "missing_scope", "deciding needs the 'review' scope")
    job = await visible_job(request, session, job_id)
    if len(reason.strip()) < 3:
        raise ApiError(422, "reason_required", "say why (at least 3 characters)")
    st = services(request).stages
    try:
        if decision == "escalate":
            await review.escalate(st, job.job_id, job.tenant, session.key_id, reason.strip())
        elif decision in ("approve", "block"):
            await review.review(st, job.job_id, job.tenant, session.key_id, decision == "approve", reason.strip())
        else:
            raise ApiError(422, "invalid_decision", "decide approve, block or escalate")
    except ValueError as e:
        raise ApiError(409, "not_in_review", str(e)) from e
    return RedirectResponse(f"/console/jobs/{job.job_id}", status_code=303)


@router.post("/jobs/{job_id}/appeal")
async def decide_appeal(request: Request, job_id: str, decision: Annotated[str, Form()],
                        reason: Annotated[str, Form()], csrf: Annotated[str, Form()] = "") -> Response:
    """A senior reviewer upholds or overturns (on to release) an appealed block; never the first decider."""
    _, session = await session_of(request)
    checked(session, csrf)
    if not MAY_APPEAL & set(session.scopes):
        raise ApiError(403, "missing_scope", "deciding appeals needs the 'appeal' scope")
    job = await visible_job(request, session, job_id)
    if decision not in ("uphold", "overturn") or len(reason.strip()) < 3:
        raise ApiError(422, "invalid_decision", "uphold or overturn, with a reason of at least 3 characters")
    try:
        await review.decide_appeal(services(request).stages, job.job_id, job.tenant, session.key_id,
                                   decision == "overturn", reason.strip())
    except PermissionError as e:
        raise ApiError(403, "own_decision", str(e)) from e
    except ValueError as e:
        raise ApiError(409, "no_open_appeal", str(e)) from e
    return RedirectResponse(f"/console/jobs/{job.job_id}", status_code=303)


@router.get("/ops")
async def operations(request: Request) -> HTMLResponse:
    """Queue depth, decisions per day, overturn rate, median time in queue, per category."""
    _, session = await session_of(request)
    store = ReviewStore(services(request).state)
    tenants = await store.tenants() if session.admin else [session.tenant]
    return page(request, "ops.html", session=session, figures=[await store.figures(t) for t in tenants])
