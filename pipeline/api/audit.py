"""``GET /v1/audit``: a tenant pages through its own audit records."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from pipeline.api.deps import require, services
from pipeline.api.errors import ERRORS, ApiError
from pipeline.audit.chain import AuditSink
from pipeline.records import AuditRecord
from pipeline.store.state import ApiKey
from pipeline.timeutil import parse_since

router = APIRouter(tags=["audit"])


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


@router.get("/v1/audit", response_model=AuditPage, responses=ERRORS)
async def list_audit(request: Request, key: Annotated[ApiKey, Depends(require("audit"))],
                     since: str | None = None, after: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AuditPage:
    """Page through the caller's tenant's audit records, oldest first; pass ``next`` as ``after``."""
    try:
        start = parse_since(since)
    except ValueError as e:
        raise ApiError(422, "invalid_request", str(e)) from e
    return audit_page(AuditSink(services(request).settings.audit_dir), key.tenant, start, after, limit)
