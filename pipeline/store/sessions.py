"""Console sessions in Redis: a signed-in reviewer's key id, tenant, scopes and CSRF token.

The browser holds only a random session id (an HttpOnly, SameSite=Strict cookie); Redis keeps the
session under the id's sha256, with a time to live, so a stolen Redis dump opens no session and an
expired one is simply gone. The API key itself is never stored in the session or the cookie.
"""

from __future__ import annotations

import hashlib
import secrets

from pydantic import BaseModel, Field

from pipeline.records import utcnow
from pipeline.store.state import ApiKey, Scope, State


class ConsoleSession(BaseModel):
    key_id: str
    tenant: str
    scopes: list[Scope]
    csrf: str = Field(default_factory=lambda: secrets.token_urlsafe(24))
    started: str = Field(default_factory=lambda: utcnow().isoformat())

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes


class Sessions:
    def __init__(self, state: State, ttl_s: int) -> None:
        self.r, self.key, self.ttl_s = state.redis, state._key, ttl_s

    def _at(self, session_id: str) -> str:
        return self.key("console", hashlib.sha256(session_id.encode()).hexdigest())

    async def start(self, key: ApiKey) -> tuple[str, ConsoleSession]:
        session_id, session = secrets.token_urlsafe(32), ConsoleSession(key_id=key.key_id, tenant=key.tenant,
                                                                        scopes=key.scopes)
        await self.r.set(self._at(session_id), session.model_dump_json(), ex=self.ttl_s)
        return session_id, session

    async def get(self, session_id: str | None) -> ConsoleSession | None:
        raw = await self.r.get(self._at(session_id)) if session_id else None
        return ConsoleSession.model_validate_json(raw) if raw else None

    async def end(self, session_id: str) -> None:
        await self.r.delete(self._at(session_id))
