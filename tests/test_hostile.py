"""Hostile input, property-based: whatever text or policy file comes in, the normaliser and the
policy loader answer (a string; a list of file:line errors) and never crash."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classifiers.normalize import ZERO_WIDTH, normalize
from policies.loader import lint

DEFAULT = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"


@given(st.text(max_size=400))
@settings(max_examples=400, deadline=None)
def test_normaliser_never_fails(text: str) -> None:
    out = normalize(text)
    assert out.original == text
    assert out.text == out.text.strip() and "  " not in out.text
    assert not any(ord(c) in ZERO_WIDTH for c in out.text)


yaml_scalars = st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=False), st.booleans(), st.none())
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)


@given(st.one_of(st.text(max_size=300), st.dictionaries(st.sampled_from(
    ["id", "categories", "signals", "contexts", "combinations", "overlay_of", "tenant", "release", "x"]),
    yaml_values, max_size=6).map(lambda d: __import__("yaml").safe_dump(d))))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_policy_loader_answers_with_lines_not_crashes(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    errors = lint(path, DEFAULT)
    assert all(e.file == str(path) and e.line >= 1 and e.message for e in errors)
