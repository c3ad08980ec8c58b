"""Load, lint and merge policy files; every error names file:line.

YAML is composed into nodes first so each value keeps the line it came from; pydantic
validates the plain data and its error locations are mapped back to those lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from policies.schema import SEVERITIES, Overlay, Policy

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class LintError:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class PolicyError(ValueError):
    def __init__(self, errors: list[LintError]):
        self.errors = errors
        super().__init__("\n".join(map(str, errors)))


@dataclass(slots=True)
class Source:
    """Parsed YAML plus the line of every value, keyed by its path."""

    file: str
    data: Any
    lines: dict[Loc, int]

    def line(self, loc: Loc) -> int:
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def error(self, loc: Loc, message: str) -> LintError:
        return LintError(self.file, self.line(loc), message)


def parse(path: Path) -> Source:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError([LintError(file, 1, f"cannot read policy: {e}")]) from e
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise PolicyError([LintError(file, mark.line + 1 if mark else 1, f"YAML syntax: {e.problem}")]) from e
    except yaml.YAMLError as e:  # e.g. a character YAML does not allow; it knows the offset, not the line
        line = text[: getattr(e, "position", 0)].count("\n") + 1
        raise PolicyError([LintError(file, line, f"YAML: {e}")]) from e
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise PolicyError([LintError(file, 1, "policy file is empty")])
    lines: dict[Loc, int] = {}
    errors: list[LintError] = []
    data = _build(node, (), lines, errors, file, loader)
    if errors:
        raise PolicyError(errors)
    if not isinstance(data, dict):
        raise PolicyError([LintError(file, 1, "a policy must be a mapping at the top level")])
    return Source(file, data, lines)


def _build(node: yaml.Node, loc: Loc, lines: dict, errors: list, file: str, loader: yaml.SafeLoader) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            if key in out:
                errors.append(LintError(file, key_node.start_mark.line + 1, f"duplicate key {key!r}"))
            out[key] = _build(value_node, (*loc, key), lines, errors, file, loader)
            lines[(*loc, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, (*loc, i), lines, errors, file, loader) for i, v in enumerate(node.value)]
    return loader.construct_object(node)


def _validate(model: type[M], src: Source) -> M:
    try:
        return model.model_validate(src.data)
    except ValidationError as e:
        raise PolicyError([src.error(err["loc"], _message(err)) for err in e.errors()]) from e


def _message(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    if err["type"] == "missing":
        return f"missing required key {where!r}"
    return f"{where}: {err['msg']}"


def _regexes(policy: Policy) -> Iterator[tuple[Loc, str]]:
    for cid, cat in policy.categories.items():
        for i, rule in enumerate(cat.rules):
            for j, rx in enumerate(rule.regex):
                yield ("categories", cid, "rules", i, "regex", j), rx
    for name, ctx in policy.contexts.items():
        for j, rx in enumerate(ctx.regex):
            yield ("contexts", name, "regex", j), rx


def check(policy: Policy, src: Source) -> list[LintError]:
    """Semantic checks the schema cannot express."""
    errors: list[LintError] = []
    for loc, rx in _regexes(policy):
        try:
            re.compile(rx)
        except re.error as e:
            errors.append(src.error(loc, f"bad regex {rx!r}: {e}"))
    for cid, cat in policy.categories.items():
        seen: set[str] = set()
        for i, rule in enumerate(cat.rules):
            loc = ("categories", cid, "rules", i)
            if rule.id in seen:
                errors.append(src.error(loc, f"duplicate rule id {rule.id!r} in category {cid!r}"))
            seen.add(rule.id)
            if not rule.keywords and not rule.regex:
                errors.append(src.error(loc, f"rule {rule.id!r} has neither keywords nor regex"))
        for sig, levels in cat.thresholds.items():
            loc = ("categories", cid, "thresholds", sig)
            if sig not in policy.signals:
                errors.append(src.error(loc, f"threshold for undeclared signal {sig!r} (declare it under signals)"))
            values = [v for s in SEVERITIES if (v := getattr(levels, s)) is not None]
            if values != sorted(values):
                errors.append(src.error(loc, "thresholds must not decrease from low to critical"))
        for i, exc in enumerate(cat.exceptions):
            if exc.context not in policy.contexts:
                errors.append(src.error(("categories", cid, "exceptions", i), f"unknown context {exc.context!r}"))
        if (cat.exemplars or cat.counter_exemplars) and "embedding" not in policy.signals:
            errors.append(src.error(("categories", cid, "exemplars"), "exemplars need the 'embedding' signal"))
    for name, hl in policy.hash_lists.items():
        if hl.allow and hl.category is not None:
            errors.append(src.error(("hash_lists", name, "category"), "an allow list fires no category"))
        elif not hl.allow and hl.category not in policy.categories:
            errors.append(src.error(("hash_lists", name, "category"),
                                    f"hash list names unknown category {hl.category!r}"))
    for i, combo in enumerate(policy.combinations):
        for j, cid in enumerate(combo.all):
            if cid not in policy.categories:
                errors.append(src.error(("combinations", i, "all", j), f"combination names unknown category {cid!r}"))
        if combo.then.category not in policy.categories:
            errors.append(src.error(("combinations", i, "then", "category"),
                                    f"combination effect names unknown category {combo.then.category!r}"))
    for i, rule in enumerate(policy.tighten):
        for loc, cid in [(("tighten", i, "when"), rule.when),
                         *((("tighten", i, "categories", j), c) for j, c in enumerate(rule.categories))]:
            if cid not in policy.categories:
                errors.append(src.error(loc, f"tighten rule {rule.id!r} names unknown category {cid!r}"))
    if policy.faces is not None:
        for field in ("category", "matched"):
            if (cid := getattr(policy.faces, field)) not in policy.categories:
                errors.append(src.error(("faces", field), f"faces.{field} names unknown category {cid!r}"))
        if "faces" not in policy.signals:
            errors.append(src.error(("faces",), "faces need the 'faces' signal (declare it under signals)"))
    return errors


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Overlay semantics: dicts merge key by key, rules merge by id, other lists extend."""
    out = dict(base)
    for key, value in overlay.items():
        if key in ("overlay_of", "tenant", "rules", "disable_rules"):
            continue
        if key == "exceptions":
            out[key] = value
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = out[key] + value
        else:
            out[key] = value
    if "rules" in overlay or "disable_rules" in overlay:
        by_id = {r["id"]: r for r in [*out.get("rules", []), *overlay.get("rules", [])]}
        out["rules"] = [r for rid, r in by_id.items() if rid not in set(overlay.get("disable_rules", []))]
    return out


def load_policy(path: Path, overlay_path: Path | None = None) -> tuple[Policy, str]:
    """Validate a policy (and optionally a tenant overlay on top); return it and its label source."""
    src = parse(path)
    base = _validate(Policy, src)
    if errors := check(base, src):
        raise PolicyError(errors)
    if overlay_path is None:
        return base, src.file
    osrc = parse(overlay_path)
    overlay = _validate(Overlay, osrc)
    errors = []
    if overlay.overlay_of != base.id:
        errors.append(osrc.error(("overlay_of",), f"overlay is for {overlay.overlay_of!r}, base policy is {base.id!r}"))
    for cid in overlay.categories:
        if cid not in base.categories:
            errors.append(osrc.error(("categories", cid), f"overlay names category {cid!r}, missing from {base.id!r}"))
    if errors:
        raise PolicyError(errors)
    merged_data = _merge(src.data, osrc.data)
    merged_data["id"] = f"{base.id}+{overlay.tenant}"
    merged_data["label"] = " + ".join(x for x in (base.label, overlay.label) if x)
    merged_src = Source(osrc.file, merged_data, osrc.lines)
    merged = _validate(Policy, merged_src)
    if errors := check(merged, merged_src):
        raise PolicyError(errors)
    return merged, osrc.file


def is_overlay(path: Path) -> bool:
    return "overlay_of" in parse(path).data


def load_any(path: Path, base_path: Path) -> tuple[Policy, str]:
    """A base policy as it is, or an overlay applied to ``base_path``."""
    return load_policy(base_path, path) if is_overlay(path) else load_policy(path)


def lint(path: Path, base_path: Path) -> list[LintError]:
    """Every error in a policy or overlay file; an overlay is checked against ``base_path``."""
    try:
        load_any(path, base_path)
    except PolicyError as e:
        return e.errors
    return []
