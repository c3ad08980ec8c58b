"""`genguard policy lint`: every error with file:line and a clear message, non-zero exit."""

import subprocess
import sys
from pathlib import Path

import pytest

from policies.loader import lint

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "policies" / "default.yaml"

BROKEN = """\
schema_version: 1
id: broken
signals:
  embedding: {}
contexts:
  news:
    keywords: [news]
categories:
  violence:
    title: Violence
    colour: red
    thresholds:
      embedding: {medium: 1.5}
    rules:
      - id: r1
        severity: high
        regex: ['(unclosed']
      - id: r1
        severity: extreme
        keywords: [x]
    exceptions:
      - {context: newz}
combinations:
  - id: c
    all: [violence, ghosts]
    then: {category: violence, severity: high, action: block}
"""


def errors_by_line(path: Path) -> dict[int, str]:
    return {e.line: e.message for e in lint(path, DEFAULT)}


def test_schema_errors_name_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    errs = errors_by_line(path)
    assert "unknown key 'categories.violence.colour'" in errs[11]
    assert "less than or equal to 1" in errs[13]
    assert "severity" in errs[19] and "'low', 'medium', 'high' or 'critical'" in errs[19]
    assert all(str(e).startswith(f"{path}:") for e in lint(path, DEFAULT))


def test_semantic_errors_name_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    # schema errors stop validation first, so fix them to reach the semantic checks
    path.write_text(BROKEN.replace("{medium: 1.5}", "{medium: 0.5}").replace("extreme", "high")
                    .replace("    colour: red\n", "    description: x\n"))
    errs = errors_by_line(path)
    assert errs[17].startswith("bad regex '(unclosed'")
    assert "duplicate rule id 'r1'" in errs[18]
    assert "unknown context 'newz'" in errs[22]
    assert "unknown category 'ghosts'" in errs[25]


def test_yaml_syntax_and_duplicate_keys(tmp_path: Path) -> None:
    bad = tmp_path / "syntax.yaml"
    bad.write_text("id: x\ncategories:\n  a: [unclosed\n")
    (err,) = lint(bad, DEFAULT)
    assert err.file == str(bad) and err.line == 4 and "YAML syntax" in err.message
    dup = tmp_path / "dup.yaml"
    dup.write_text("id: x\nid: y\ncategories: {}\n")
    assert any(e.line == 2 and "duplicate key 'id'" in e.message for e in lint(dup, DEFAULT))


def test_decreasing_thresholds_and_undeclared_signal(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("id: p\ncategories:\n  a:\n    title: A\n    thresholds:\n      clip: {medium: 0.9, high: 0.5}\n")
    messages = [e.message for e in lint(path, DEFAULT)]
    assert any("undeclared signal 'clip'" in m for m in messages)
    assert any("must not decrease" in m for m in messages)


def test_overlay_naming_a_missing_category(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text("overlay_of: genguard-default\ntenant: acme\ncategories:\n  violence: {}\n  gambling:\n"
                    "    thresholds: {embedding: {high: 0.5}}\n")
    (err,) = lint(path, DEFAULT)
    assert err.line == 5 and "overlay names category 'gambling', missing from 'genguard-default'" in err.message


def test_shipped_policies_are_clean() -> None:
    assert lint(DEFAULT, DEFAULT) == []
    for overlay in (ROOT / "policies" / "tenants").glob("*.yaml"):
        assert lint(overlay, DEFAULT) == [], overlay


@pytest.mark.parametrize("good", [True, False])
def test_cli_exit_code(tmp_path: Path, good: bool) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(DEFAULT.read_text() if good else BROKEN)
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "policy", "lint", str(path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == (0 if good else 1)
    if not good:
        assert f"{path}:11: unknown key" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) >= 3
