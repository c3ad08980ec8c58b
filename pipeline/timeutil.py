"""``--since`` values: an ISO date or time, or a span back from now such as ``7d``, ``24h``, ``30m``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_SPAN = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    if not value:
        return None
    if m := _SPAN.match(value.strip()):
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise ValueError(f"--since {value!r}: use an ISO date (2026-01-01) or a span (7d, 24h, 30m)") from e
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
