"""``genguard policy diff``: two policy versions explained in words, one change per line."""

from __future__ import annotations

from typing import Any

from policies.schema import Policy


def _short(v: Any, limit: int = 80) -> str:
    text = ", ".join(map(str, v)) if isinstance(v, list) else str(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _direction(path: tuple[str, ...], old: Any, new: Any) -> str:
    if "thresholds" in path and isinstance(old, float) and isinstance(new, float):
        return " (fires less often)" if new > old else " (fires more often)"
    return ""


def _diff(old: Any, new: Any, path: tuple[str, ...]) -> list[str]:
    if old == new:
        return []
    where = " / ".join(path) or "policy"
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            if key not in old:
                out.append(f"{where}: added {key} = {_short(new[key])}")
            elif key not in new:
                out.append(f"{where}: removed {key}")
            else:
                out += _diff(old[key], new[key], (*path, str(key)))
        return out
    if isinstance(old, list) and isinstance(new, list):
        items = old + new
        if items and all(isinstance(i, dict) and "id" in i for i in items):  # rules, combinations: by id
            return _diff({i["id"]: i for i in old}, {i["id"]: i for i in new}, path)
        if all(isinstance(i, str) for i in items):
            added, removed = [i for i in new if i not in old], [i for i in old if i not in new]
            return ([f"{where}: added {_short(added)}"] if added else []) + (
                [f"{where}: removed {_short(removed)}"] if removed else [])
    fmt = {None: "not set"}
    return [f"{where}: {fmt.get(old, old)} -> {fmt.get(new, new)}{_direction(path, old, new)}"]


def diff_policies(old: Policy, new: Policy) -> list[str]:
    return _diff(old.model_dump(mode="json"), new.model_dump(mode="json"), ())
