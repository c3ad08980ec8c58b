"""The invisible watermark's key: a deployment secret, never a constant in the source (anyone who
read it could forge or cancel a payload). A keyring file holds every key by id and names the
current one: releases embed with the current key and record its id; detection tries every key, so
after a rotation old releases stay readable. Secrets are never logged, returned or recorded.

    {"current": "wm-20261201-ab12", "keys": {"wm-20261201-ab12": "<64 hex digits>", ...}}
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.settings import Settings


class KeyringError(RuntimeError):
    """The keyring file is missing, unreadable or malformed; the message names the file."""


@dataclass(frozen=True)
class Keyring:
    current: str
    keys: dict[str, bytes] = field(repr=False)  # never in a repr, a log line or a traceback's locals

    @property
    def key(self) -> bytes:
        return self.keys[self.current]


def path_of(settings: Settings) -> Path:
    """GENGUARD_WATERMARK_KEY_PATH, or the dev keyring under var/keys (made on first use)."""
    return settings.watermark_key_path or settings.keys_dir / "watermark.json"


def _write(path: Path, current: str, keys: dict[str, bytes], exclusive: bool = False) -> None:
    """Written whole and private (0600) next to ``path``, then moved in; ``exclusive``: only if no
    keyring is there yet (the API and the workers may make the dev keyring at the same moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"current": current, "keys": {k: v.hex() for k, v in keys.items()}}, f)
    if not exclusive:
        tmp.replace(path)
        return
    try:
        os.link(tmp, path)  # atomic create-if-absent: the first keyring made wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _new_id() -> str:
    return f"wm-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(2)}"


def load(settings: Settings) -> Keyring:
    """The configured keyring; without GENGUARD_WATERMARK_KEY_PATH a dev keyring is generated once."""
    path = path_of(settings)
    if not path.exists():
        if settings.watermark_key_path is not None:
            raise KeyringError(f"watermark keyring {path} does not exist (GENGUARD_WATERMARK_KEY_PATH)")
        key_id = _new_id()
        _write(path, key_id, {key_id: secrets.token_bytes(32)}, exclusive=True)
    try:
        raw = json.loads(path.read_text())
        keys = {str(k): bytes.fromhex(v) for k, v in raw["keys"].items()}
        current = str(raw["current"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise KeyringError(f"watermark keyring {path} is unreadable: {type(e).__name__}") from None
    if current not in keys or any(len(v) < 16 for v in keys.values()):
        raise KeyringError(f"watermark keyring {path}: 'current' must name a key of at least 16 bytes")
    return Keyring(current, keys)


def rotate(settings: Settings) -> str:
    """A new current key (the first one where there is no keyring yet); the old ones stay for
    detection. Read again by every release and every check, so no restart is needed. Returns the id."""
    old = load(settings).keys if path_of(settings).exists() else {}
    key_id = _new_id()
    _write(path_of(settings), key_id, {**old, key_id: secrets.token_bytes(32)})
    return key_id
