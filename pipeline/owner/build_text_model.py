"""``genguard models train-text`` from data to artefact: n-gram heads for every language, language ID,
MiniLM heads for English stacked with the n-gram logit, dev thresholds, reliability curves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from classifiers import language
from classifiers.text_embedding import TextEncoder
from classifiers.text_model import TextModel, featurize
from pipeline.owner import train_english, train_text


def build(data: Path, out: Path, encoder_dir: Path, cache: Path, t2v: bool = True, epochs: int = 6, seed: int = 0,
          limit: int | None = None, say: Callable[[str], None] = print) -> dict:
    """Train everything, write it to ``out``; returns the card (meta.json) with the dev thresholds."""
    say(f"reading {data}" + (f" and {train_text.IN_DOMAIN}" if t2v else "") + " ...")
    train_rows = train_text.read_split(data, "train", t2v, limit)
    dev_rows = train_text.read_split(data, "dev", t2v, limit)
    heads = train_text.train(train_rows, dev_rows, epochs, seed, say)
    say("language ID ...")
    language.save(language.train(train_rows.texts, train_rows.lang, seed), out)
    encoder = TextEncoder(encoder_dir)
    tr_idx, tr_emb = train_english.english_embeddings(train_rows, encoder, cache, say)
    dv_idx, dv_emb = train_english.english_embeddings(dev_rows, encoder, cache, say)
    coef, bias = train_english.fit_heads(train_rows, tr_idx, tr_emb, [h.category for h in heads], say)
    z_dev = (featurize(dev_rows.texts, normalized=True) @ np.stack([h.coef for h in heads], axis=1)) + \
        np.array([h.bias for h in heads])
    platt = np.array([[h.platt[0] for h in heads], [h.platt[1] for h in heads]], np.float32)
    stack = train_english.fit_stacker(dev_rows, dv_idx, dv_emb, np.asarray(z_dev), coef, bias, platt,
                                      [h.category for h in heads])
    extra = {"emb_coef": coef, "emb_bias": bias, "stack": stack}
    card = {"seed": seed, "epochs": epochs, "train_rows": len(train_rows), "dev_rows": len(dev_rows),
            "sources": sorted(set(train_rows.source)), "dev_ap": {h.category: h.dev_ap for h in heads},
            "encoder": encoder.version}
    version = train_text.version_of(heads)
    train_text.save(heads, out, version, card, extra)
    full = np.zeros((len(dev_rows), 384), np.float32)
    full[dv_idx] = dv_emb
    probabilities = TextModel(out).score(dev_rows.texts, embedding=full, language=dev_rows.lang)
    card["thresholds"] = train_text.dev_thresholds(heads, dev_rows, probabilities)
    train_text.save(heads, out, version, card, extra)
    train_text.reliability(heads, dev_rows, probabilities, out / "reliability.png")
    return card
