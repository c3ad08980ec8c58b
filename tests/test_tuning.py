"""Tuning finds the threshold a hand computation gives; policy diff explains changes in words."""

import math
from pathlib import Path

import pytest
import yaml

from pipeline.owner.labelled import Labelled
from pipeline.owner.tune import choose, curve, draw, overlay, study
from pipeline.policy_source import PolicySource
from pipeline.prompt.gate import PromptGate
from policies import engine
from policies.diff import diff_policies
from policies.loader import lint

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "policies" / "default.yaml"

# by hand: scores 0.9 0.8 0.7 0.6 0.5 0.4 with labels 1 1 0 1 0 0
#   t=0.9 tp1 fp0 (p 1.00 r 0.33)   t=0.8 tp2 fp0 (p 1.00 r 0.67)   t=0.7 tp2 fp1 (p 0.67 r 0.67)
#   t=0.6 tp3 fp1 (p 0.75 r 1.00)   t=0.5 tp3 fp2 (p 0.60)          t=0.4 tp3 fp3 (p 0.50)
SCORES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
LABELS = [True, True, False, True, False, False]
NONE_FORCED = [False] * 6


def test_curve_by_hand() -> None:
    pts = {p.threshold: (p.tp, p.fp, p.fn, p.tn) for p in curve(SCORES, NONE_FORCED, LABELS)}
    assert pts[math.inf] == (0, 0, 3, 3)
    assert pts[0.8] == (2, 0, 1, 3) and pts[0.6] == (3, 1, 0, 2) and pts[0.4] == (3, 3, 0, 0)


@pytest.mark.parametrize(("precision", "recall", "expected"),
                         [(0.75, None, 0.6), (0.9, None, 0.8), (None, 1.0, 0.6), (None, 0.6, 0.8), (None, 0.3, 0.9)])
def test_choose_by_hand(precision: float | None, recall: float | None, expected: float) -> None:
    chosen = choose(curve(SCORES, NONE_FORCED, LABELS), precision, recall)
    assert chosen is not None and chosen.threshold == expected


def test_rows_flagged_anyway_count_at_every_threshold() -> None:
    forced = [False, False, True, False, False, False]  # a rule flags the 0.7 row, a negative, anyway
    chosen = choose(curve(SCORES, forced, LABELS), target_precision=0.75)
    assert chosen is not None and chosen.threshold == 0.6  # tp3 fp1 still: the forced row is the same fp
    assert choose(curve(SCORES, forced, LABELS), target_precision=0.9) is None  # the forced fp caps precision


def without_text_model(gate: PromptGate, tmp_path: Path) -> PromptGate:
    """The default policy less the learned text signal, which flags these rows by itself: here the
    embedding alone must separate them, so its threshold is what tuning finds."""
    policy = yaml.safe_load(DEFAULT.read_text())
    del policy["signals"]["text_model"]
    for cat in policy["categories"].values():
        cat.get("thresholds", {}).pop("text_model", None)
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    s = gate.settings.model_copy(update={"policy_path": tmp_path / "policy.yaml", "tenant_policy_dir": tmp_path})
    return PromptGate(s, PolicySource(s), gate.encoder, gate.cache,
                      tuple(c for c in gate.text_classifiers if c.name != "text_model"))


def test_study_overlay_and_plot(gate: PromptGate, tmp_path: Path) -> None:
    gate = without_text_model(gate, tmp_path)
    rows = [Labelled(text=t, categories=c) for t, c in [
        ("a gunman opening fire in a shopping mall", ["violence"]),
        ("soldiers executing prisoners against a wall", ["violence"]),
        ("a man beating another man unconscious in an alley", ["violence"]),
        ("a cat sleeping on a sofa", []), ("kids playing football in the park", []),
        ("a boxing match in a ring", []),
    ]]
    st = study(gate, rows, "violence", "embedding", "default")
    assert st.level == "medium" and len(st.scores) == 6
    assert min(st.scores[:3]) > max(st.scores[3:])  # the real model separates these
    chosen = choose(st.points, target_recall=1.0)
    assert chosen is not None and chosen.threshold == pytest.approx(min(st.scores[:3]))
    data = overlay(gate.policies.for_tenant("default"), "acme", "violence", "embedding", st.level, chosen.threshold)
    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump(data))
    assert lint(path, gate.settings.policy_path) == []
    tuned = engine.load(gate.settings.policy_path, path).policy.categories["violence"].thresholds["embedding"]
    assert tuned.medium == pytest.approx(chosen.threshold, abs=1e-6) and tuned.medium <= chosen.threshold
    assert tuned.high is not None and tuned.high >= tuned.medium
    draw(st, chosen, tmp_path / "pr.png", tmp_path / "pr.html")
    assert (tmp_path / "pr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "precision" in (tmp_path / "pr.html").read_text()


def test_policy_diff_in_words(tmp_path: Path) -> None:
    text = DEFAULT.read_text()
    changed = (text.replace("embedding: {medium: 0.58, high: 0.72}", "embedding: {medium: 0.62, high: 0.72}", 1)
               .replace("      - id: deepfake\n", "      - id: deepfake-2\n")
               .replace("[porn, porno,", "[porn, smut, porno,"))
    path = tmp_path / "candidate.yaml"
    path.write_text(changed)
    lines = diff_policies(engine.load(DEFAULT).policy, engine.load(path).policy)
    joined = "\n".join(lines)
    assert "categories / violence / thresholds / embedding / medium: 0.58 -> 0.62 (fires less often)" in lines
    assert "categories / public-figures / rules: added deepfake-2" in joined
    assert "categories / public-figures / rules: removed deepfake" in joined
    assert "categories / sexual / rules / explicit-terms / keywords: added smut" in lines
    assert len(lines) == 4
    assert diff_policies(engine.load(DEFAULT).policy, engine.load(DEFAULT).policy) == []
