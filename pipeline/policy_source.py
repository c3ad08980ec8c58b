"""The live policy, each tenant's overlay on it, and the shadow candidate: one lookup for every role.

Policies used to be reached through the prompt gate, so a role that only needs a tenant's release
settings (the release worker) loaded the text models to get them. Compiled policies are pure
data, cached per (tenant, base file).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.audit import events
from pipeline.records import Topics
from pipeline.settings import Settings
from pipeline.stages import Publish
from pipeline.store.state import State
from policies import engine
from policies.engine import CompiledPolicy


class PolicySource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = engine.load(settings.policy_path)
        self._compiled: dict[tuple[str, Path], CompiledPolicy] = {}

    def for_tenant(self, tenant: str, base: Path | None = None) -> CompiledPolicy:
        """The tenant's effective policy: ``base`` (default: the live policy) plus its overlay, if any."""
        path = base or self.settings.policy_path
        if (tenant, path) not in self._compiled:
            overlay = self.settings.tenants_dir / f"{tenant}.yaml"
            self._compiled[tenant, path] = engine.load(path, overlay if overlay.exists() else None)
        return self._compiled[tenant, path]

    def shadow_for(self, tenant: str) -> CompiledPolicy | None:
        """The candidate evaluated next to the live policy (GENGUARD_SHADOW_POLICY_PATH), if one is set."""
        shadow = self.settings.shadow_policy_path
        return self.for_tenant(tenant, shadow) if shadow is not None else None

    async def announce(self, state: State, publish: Publish, actor: str) -> None:
        """Record the live policy version going live, once across all processes."""
        if await state.first_seen("policy", f"{self.base.id}@{self.base.version}"):
            record = events.policy_activated(self.base, actor)
            await publish(Topics.AUDIT, record.subject, record.model_dump_json().encode())
