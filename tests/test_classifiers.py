"""Text classifiers with their real shipped weights."""

import json
from pathlib import Path

import numpy as np
import pytest

from classifiers.base import Classifier, ModelMissingError
from classifiers.profanity import ProfanityClassifier
from classifiers.text_embedding import ExemplarClassifier, TextEncoder, shipped_model_dir

ROOT = Path(__file__).resolve().parent.parent
ONNX_DIR = ROOT / "var" / "models" / "minilm"
TEXTS = ["a cinematic shot of a cat surfing at sunset", "how to build a pipe bomb", "x"]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(ONNX_DIR)


def test_onnx_export_matches_sentence_transformers(encoder: TextEncoder) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(shipped_model_dir()), device="cpu", local_files_only=True)
    expected = reference.encode(TEXTS, normalize_embeddings=True)
    got = encoder.embed(TEXTS)
    diff = float(np.abs(got - expected).max())
    print(f"MiniLM ONNX vs torch max abs diff: {diff:.2e}")
    assert got.shape == (3, 384)
    assert diff < 1e-4


def test_missing_model_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError, match=str(tmp_path / "model.onnx")):
        TextEncoder(tmp_path)
    with pytest.raises(ModelMissingError, match=str(tmp_path / "model.int8.onnx")):
        TextEncoder(tmp_path, "int8")


def test_int8_encoder_stays_near_float_under_its_own_version(encoder: TextEncoder) -> None:
    """The int8 weights the gate runs by default (GENGUARD_TEXT_PRECISION): near the float vectors on the
    212 real prompts of tests/data, and a version of their own, so exemplar caches and the trained MiniLM
    head never take one for the other; and a text's vector does not depend on the batch it came in."""
    int8 = TextEncoder(ONNX_DIR, "int8")
    prompts = [json.loads(line)["text"] for line in (ROOT / "tests/data/prompts.jsonl").read_text().splitlines()]
    batch = int8.embed(prompts)
    cosine = (batch * encoder.embed(prompts)).sum(axis=1)
    print(f"MiniLM int8 vs float on {len(prompts)} prompts: cosine min {cosine.min():.4f}, mean {cosine.mean():.4f}")
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.97
    assert int8.version == f"{encoder.version}+int8"
    # dynamic int8 scales each activation over the input tensor: a text in a batch must get what it gets alone
    alone = np.stack([int8.embed([p])[0] for p in prompts[:40]])
    assert np.array_equal(alone, batch[:40])


def test_exemplar_classifier_scores_and_contrasts(encoder: TextEncoder) -> None:
    clf = ExemplarClassifier(
        encoder,
        {"weapons": ["how to build a pipe bomb"], "cats": ["a cat playing"]},
        {"weapons": ["a bath bomb dissolving in water"]},
    )
    assert isinstance(clf, Classifier)
    scores, why = clf.match(["instructions for making a pipe bomb", "a bath bomb fizzing in water"])
    assert scores.shape == (2, 2)
    w = clf.outputs.index("weapons")
    assert scores[0, w] > 0.7
    assert scores[1, w] < scores[0, w] - 0.3  # the counter-exemplar pulls the benign look-alike down
    assert why[0]["weapons"] == "how to build a pipe bomb"


class DictCache:
    def __init__(self) -> None:
        self.data: dict[str, np.ndarray] = {}
        self.hits = 0

    def get(self, key: str) -> np.ndarray | None:
        self.hits += key in self.data
        return self.data.get(key)

    def put(self, key: str, value: np.ndarray) -> None:
        self.data[key] = value


def test_exemplar_vectors_are_cached(encoder: TextEncoder) -> None:
    cache = DictCache()
    ExemplarClassifier(encoder, {"a": ["one", "two"]}, {}, cache)
    ExemplarClassifier(encoder, {"a": ["one", "two"]}, {}, cache)
    ExemplarClassifier(encoder, {"a": ["one", "three"]}, {}, cache)
    assert (len(cache.data), cache.hits) == (2, 1)


def test_profanity_fast_path_equals_sklearn() -> None:
    clf = ProfanityClassifier()
    texts = ["I will kill you", "have a nice day", "you stupid idiot", "a cat surfing", "", "the and of",
             "Idiot idiot IDIOT, you absolute moron!!"]
    expected = clf.model.predict_proba(clf.vectorizer.transform(texts))[:, 1]
    got = clf.score(texts)
    assert got.shape == (7, 1)
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-9)
    assert got[0, 0] > 0.9 and got[1, 0] < 0.2
