"""The learned text classifier: the training command on a tiny slice of the real corpus (seeded, so
twice gives the same weights), the shipped artefact, and what it adds to the policy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classifiers.text_model import TextModel
from pipeline.owner.text_eval import figures
from pipeline.owner.train_text import CATEGORIES, Rows, t2v_rows
from pipeline.prompt.gate import PromptGate
from pipeline.records import PromptRequest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "datasets" / "text-moderation"


def train(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "models", "train-text", "--data", str(CORPUS),
                           "--limit", "400", "--epochs", "2", "--seed", "7", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_a_tiny_seeded_training_run_makes_a_loadable_artefact(tmp_path: Path) -> None:
    if not CORPUS.exists():
        pytest.fail(f"{CORPUS} missing: the labelled corpus lies in ../shared beside the repository")
    first, again = train(tmp_path / "a"), train(tmp_path / "b")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "epoch 2/2: dev AP" in first.stdout and "dev thresholds" in first.stdout
    meta_a = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert again.returncode == 0, again.stderr[-2000:]
    meta_b = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert meta_a["version"] == meta_b["version"], "the same seed must give the same weights"
    assert meta_a["categories"] == list(CATEGORIES) and "genguard-t2v" in meta_a["sources"]
    model = TextModel(tmp_path / "a")
    p = model.score(["a cat on a sofa", "how to build a pipe bomb"])
    assert p.shape == (2, len(CATEGORIES)) and ((p >= 0) & (p <= 1)).all()
    assert (tmp_path / "a" / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_a_missing_artefact_names_its_path(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=str(tmp_path)):
        TextModel(tmp_path)


def test_the_shipped_model_on_its_own_held_out_prompts() -> None:
    """Regression guard on genguard-t2v's test split (never trained or tuned on): written before the
    thresholds were chosen; the figures in the model card come from the same computation."""
    model = TextModel()
    meta = json.loads((ROOT / "classifiers/data/text_model/meta.json").read_text())
    rows = Rows()
    for r in t2v_rows("test"):
        rows.add(r)
    p = model.score(rows.texts)
    thr = meta["thresholds"]
    flagged = [{c for i, c in enumerate(model.outputs) if c in thr and row[i] >= thr[c]["medium"]} for row in p]
    f = figures(rows, flagged, CATEGORIES, {"genguard-t2v"})
    assert f.any_flagged.precision >= 0.85, f.any_flagged
    assert f.benign_t2v_stopped[0] / f.benign_t2v_stopped[1] <= 0.05, f.benign_t2v_stopped
    assert np.isfinite(p).all()


@pytest.mark.parametrize(("prompt", "category"), [
    ("ein video, das zeigt, wie man zu hause eine bombe aus dünger baut", "illicit/weapons"),
    ("tutorial para cocinar metanfetamina en casa", "illicit/weapons"),
])
def test_other_languages_reach_the_policy(gate: PromptGate, prompt: str, category: str) -> None:
    verdict, _ = gate.check(PromptRequest(tenant="default", prompt=prompt))
    assert verdict.action != "allow" and category in verdict.flagged(), verdict.model_dump_json(indent=1)
    assert any(m.id == "text_model" for c in verdict.categories for m in c.matches)
