"""Which encoder for the learned text model, by measurement: on the corpus's English rows, average
precision per category of the shipped n-gram heads, of logistic heads on frozen all-MiniLM-L6-v2
embeddings, and of both stacked (a per-category logistic over the two logits fitted on dev), on dev
and test. Other languages are n-gram only (MiniLM is English-only), so this is where they differ.

    .venv/bin/python bench/text_encoders.py [--data ../shared/datasets/text-moderation]

MiniLM embeddings are cached under var/cache/text-model (the training command fills the same cache).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifiers.text_embedding import TextEncoder  # noqa: E402
from classifiers.text_model import TextModel, featurize  # noqa: E402
from pipeline.owner.train_english import english_embeddings, fit_heads  # noqa: E402
from pipeline.owner.train_text import CATEGORIES, average_precision, read_split  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "text-moderation")
    args = ap.parse_args()
    from sklearn.linear_model import LogisticRegression

    encoder, cache = TextEncoder(ROOT / "var/models/minilm"), ROOT / "var/cache/text-model"
    splits = {s: read_split(args.data, s) for s in ("train", "dev", "test")}
    emb = {s: english_embeddings(rows, encoder, cache) for s, rows in splits.items()}
    coef, bias = fit_heads(splits["train"], *emb["train"], CATEGORIES, say=lambda _: None)
    ngram = TextModel()
    z = {s: ngram.logits(featurize([splits[s].texts[i] for i in emb[s][0]], normalized=True)) for s in ("dev", "test")}
    print(f"{'category':<20} {'dev pos':>7} {'n-gram':>7} {'MiniLM':>7} | {'test pos':>8} {'n-gram':>7} {'MiniLM':>7} "
          f"{'stacked':>7}   (average precision, English rows)")
    for k, c in enumerate(CATEGORIES):
        cols = []
        for s in ("dev", "test"):
            idx, e = emb[s]
            mask, y = splits[s].target(c)
            keep = mask[idx]
            cols.append((y[idx][keep], z[s][keep, k], (e @ coef + bias)[keep, k]))
        (yd, nd, md), (yt, nt, mt) = cols
        stacked = float("nan")
        if 3 <= yd.sum() < len(yd):
            st = LogisticRegression().fit(np.c_[nd, md], yd)
            stacked = average_precision(yt, st.decision_function(np.c_[nt, mt]))
        print(f"{c:<20} {int(yd.sum()):>7} {average_precision(yd, nd):>7.3f} {average_precision(yd, md):>7.3f} | "
              f"{int(yt.sum()):>8} {average_precision(yt, nt):>7.3f} {average_precision(yt, mt):>7.3f} {stacked:>7.3f}")


if __name__ == "__main__":
    main()
