"""The consent registry: per tenant, the people who enrolled their likeness and whom they let use it.

It keeps identity embeddings and a hash of the consent document, never a photo. Redis holds the
serving copy that the decide stage reads for every job (so a revocation counts from the next
decision on, with no cache to expire); a JSON file per tenant under ``var/likeness`` is the durable
copy, rewritten after every change and read back when Redis has lost the tenant. Erasure removes the
person from both; the audit trail keeps only that it happened.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import redis
from pydantic import BaseModel, Field

from pipeline.records import decode_vector, utcnow
from pipeline.settings import Settings
from pipeline.store.state import State

PERSON = r"^[A-Za-z0-9_.:-]{1,64}$"  # a tenant's pseudonymous id for the person; the verdicts name only this


class Person(BaseModel):
    person_id: str = Field(pattern=PERSON)
    tenant: str
    embeddings: list[str] = Field(min_length=1, description="base64 float16 identity embeddings, one per photo")
    consent_sha256: str = Field(description="sha256 of the signed consent document (which stays with the tenant)")
    grants: list[str] = Field([], description="creator ids this person lets use their likeness")
    enrolled_by: str
    enrolled_at: str = Field(default_factory=lambda: utcnow().isoformat())


@dataclass(frozen=True, slots=True)
class Enrolled:
    """What a decision needs of one person: their embeddings and whether this creator may use them."""

    person_id: str
    embeddings: np.ndarray  # (k, d)
    granted: bool


class LikenessStore:
    def __init__(self, state: State, settings: Settings) -> None:
        self.r, self.key = state.redis, state._key
        self.dir = settings.var_dir / "likeness"

    def _hash(self, tenant: str) -> str:
        return self.key("likeness", tenant)

    def _file(self, tenant: str) -> Path:
        return self.dir / f"{tenant}.json"

    async def people(self, tenant: str) -> dict[str, Person]:
        raw = await self.r.hgetall(self._hash(tenant))
        if not raw and self._file(tenant).exists():  # Redis lost it: the durable copy is the truth
            people = await asyncio.to_thread(self._read_file, tenant)
            if people:
                await self.r.hset(self._hash(tenant), mapping={p: m.model_dump_json() for p, m in people.items()})
            return people
        return {k.decode(): Person.model_validate_json(v) for k, v in raw.items()}

    async def anyone(self, tenant: str) -> bool:
        """Whether the tenant may have anybody enrolled, without reading them (the frame stage asks per
        job); a durable copy on disk counts, as Redis may have lost what it holds."""
        return bool(await self.r.hlen(self._hash(tenant))) or self._file(tenant).exists()

    async def view(self, tenant: str, creator: str | None) -> list[Enrolled]:
        """The tenant's enrolled people as the decide stage matches against them, for this creator."""
        return [Enrolled(p.person_id, np.stack([decode_vector(e) for e in p.embeddings]),
                         creator is not None and creator in p.grants) for p in (await self.people(tenant)).values()]

    async def enroll(self, person: Person) -> bool:
        """Add a person (False if the id is taken: enrolment never overwrites someone silently)."""
        await self.people(person.tenant)  # restore first, so a taken id is seen after a Redis loss
        if not await self.r.hsetnx(self._hash(person.tenant), person.person_id, person.model_dump_json()):
            return False
        await self._persist(person.tenant)
        return True

    async def grant(self, tenant: str, person_id: str, creator: str) -> Person:
        return await self._change(tenant, person_id, lambda p: p.grants + [creator] * (creator not in p.grants))

    async def revoke(self, tenant: str, person_id: str, creator: str) -> Person:
        return await self._change(tenant, person_id, lambda p: [c for c in p.grants if c != creator])

    async def erase(self, tenant: str, person_id: str) -> bool:
        await self.people(tenant)
        gone = bool(await self.r.hdel(self._hash(tenant), person_id))
        if gone:
            await self._persist(tenant)
        return gone

    async def _change(self, tenant: str, person_id: str, grants: Callable[[Person], list[str]]) -> Person:
        """Read-modify-write of one person's grants under WATCH; KeyError when not enrolled."""
        await self.people(tenant)
        async with self.r.pipeline() as pipe:
            while True:
                try:
                    await pipe.watch(self._hash(tenant))
                    raw = await pipe.hget(self._hash(tenant), person_id)
                    if raw is None:
                        raise KeyError(person_id)
                    person = Person.model_validate_json(raw)
                    person = person.model_copy(update={"grants": grants(person)})
                    pipe.multi()
                    pipe.hset(self._hash(tenant), person_id, person.model_dump_json())
                    await pipe.execute()
                    break
                except redis.WatchError:
                    continue
        await self._persist(tenant)
        return person

    async def _persist(self, tenant: str) -> None:
        """Rewrite the tenant's durable copy from Redis. Redis is read inside a file lock, so of two
        processes changing one tenant at once (API, CLI) the last to write wrote the newest state."""
        lock = await asyncio.to_thread(self._lock)
        try:
            raw = await self.r.hgetall(self._hash(tenant))
            people = {k.decode(): json.loads(v) for k, v in raw.items()}
            await asyncio.to_thread(self._write_file, tenant, people)
        finally:
            lock.close()

    def _lock(self) -> IO[str]:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = (self.dir / ".lock").open("a")
        fcntl.flock(lock, fcntl.LOCK_EX)
        return lock

    def _read_file(self, tenant: str) -> dict[str, Person]:
        data = json.loads(self._file(tenant).read_text())
        return {p: Person.model_validate(v) for p, v in data.items()}

    def _write_file(self, tenant: str, people: dict[str, object]) -> None:
        tmp = self._file(tenant).with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(people, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._file(tenant))
