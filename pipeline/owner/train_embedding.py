"""The embedding half of the text model: small MLP heads on frozen sentence embeddings (USE multilingual
v3 for the languages it knows, all-MiniLM-L6-v2 for English), and the per-category stackers that weigh
their logits against the n-gram logit, fitted on dev.

Measured on the corpus's dev rows (MODEL_CARD.md): the USE head beats the n-gram head for sexual,
self-harm, extremism and political content and carries over across languages; n-grams win for hate
and harassment in the languages the corpus has many of; stacking beats either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from classifiers.text_model import mlp_logits
from pipeline.owner.train_text import Rows, weights

MIN_STACK_POSITIVES = 3  # dev positives a category needs for its own stacker (and to count in a head's dev AP)
HEAD_HIDDEN, HEAD_EPOCHS = 256, 30  # the embedding heads' hidden units and training epochs
STACK_C = 0.1  # the stackers' inverse regularisation (see ``fit_stacker``)
STACK_CLIP = 16.0  # and the clip of the logits they weigh
Embed = Callable[[list[str]], np.ndarray]


def rows_where(rows: Rows, languages: Callable[[str], bool]) -> np.ndarray:
    return np.array([i for i, lang in enumerate(rows.lang) if languages(lang)], dtype=np.int64)


def cache_name(encoder: str, version: str) -> str:
    """The embedding cache of one encoder version: int8 and float MiniLM vectors differ, and a head is
    trained on the ones the gate will serve it."""
    return f"{encoder}-{version.split('@')[-1]}"


def embeddings(rows: Rows, idx: np.ndarray, name: str, embed: Embed, cache: Path,
               say: Callable[[str], None] = print) -> np.ndarray:
    """Embeddings of ``rows`` at ``idx`` by ``embed``, cached per text in ``cache/NAME.npz`` (keyed by a
    digest of the text), so that adding data embeds only the new texts."""
    texts = [rows.texts[i] for i in idx]
    keys = np.array([hashlib.sha1(t.encode()).digest() for t in texts], dtype="S20")
    path = cache / f"{name}.npz"
    known: dict[bytes, np.ndarray] = {}
    if path.exists():
        with np.load(path) as z:
            known = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
    missing = sorted({k: t for k, t in zip(keys.tolist(), texts, strict=True) if k not in known}.items(),
                     key=lambda kt: len(kt[1]))
    if missing:
        say(f"embedding {len(missing)} new texts with {name} (cached in {path}) ...")
        for start in range(0, len(missing), 256):
            part = missing[start:start + 256]
            known.update(zip((k for k, _ in part), embed([t for _, t in part]).astype(np.float16), strict=True))
            if start // 256 % 100 == 99:
                say(f"  {start + len(part)}/{len(missing)}")
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, keys=np.array(list(known), dtype="S20"), vectors=np.stack(list(known.values())))
    return np.stack([known[k] for k in keys.tolist()]).astype(np.float32) if len(keys) else np.zeros((0, 1), np.float32)


def _targets(rows: Rows, idx: np.ndarray, categories: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(targets, loss weights), each (len(idx), categories): weight 0 where a row's source does not label
    the category, otherwise the n-gram heads' weighting (``train_text.weights``)."""
    y, w = np.zeros((len(idx), len(categories)), np.float32), np.zeros((len(idx), len(categories)), np.float32)
    for k, c in enumerate(categories):
        mask, target = rows.target(c)
        full = np.zeros(len(rows), np.float32)
        full[np.nonzero(mask)[0]] = weights(rows, mask, target)
        y[:, k], w[:, k] = target[idx], full[idx]
    return y, w


def fit_heads(rows: Rows, idx: np.ndarray, emb: np.ndarray, dev: tuple[Rows, np.ndarray, np.ndarray],
              categories: Sequence[str], name: str, seed: int, epochs: int = HEAD_EPOCHS,
              say: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    """One small MLP over the embedding (HEAD_HIDDEN ReLU units, one logit per category) for the rows at
    ``idx``, the loss masked and weighted per category (``_targets``); of ``epochs``, the one with the best
    mean AP on ``dev`` (rows, their indices, their embeddings) is kept. Returns ``mlp_logits``' layers.

    Chosen over a logistic head per category on dev (mean AP over the categories, USE over its 15
    languages: .790 -> .857, violence .69 -> .81, hate .83 -> .90, harassment .50 -> .62; MiniLM over
    English: .812 -> .835), the same rows and weights."""
    import torch

    torch.manual_seed(seed)
    y, w = map(torch.from_numpy, _targets(rows, idx, categories))
    x = torch.from_numpy(emb)
    dev_rows, dev_idx, dev_emb = dev
    scored = np.zeros(len(dev_rows), bool)  # the dev rows this encoder serves
    scored[dev_idx] = True
    model = torch.nn.Sequential(torch.nn.Linear(emb.shape[1], HEAD_HIDDEN), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                                torch.nn.Linear(HEAD_HIDDEN, len(categories)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_of = torch.nn.functional.binary_cross_entropy_with_logits
    best: tuple[float, dict[str, np.ndarray]] | None = None
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in torch.randperm(len(idx)).split(512):
            loss = (loss_of(model(x[batch]), y[batch], reduction="none") * w[batch]).sum() / w[batch].sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        layers = {"w1": model[0].weight.detach().numpy().T.copy(), "b1": model[0].bias.detach().numpy().copy(),
                  "w2": model[3].weight.detach().numpy().T.copy(), "b2": model[3].bias.detach().numpy().copy()}
        z = np.zeros((len(dev_rows), len(categories)), np.float32)
        z[dev_idx] = mlp_logits(dev_emb, layers)
        aps = [dev_rows.average_precision(c, z[:, k], scored) for k, c in enumerate(categories)]
        counted = [a for pos, a in aps if pos >= MIN_STACK_POSITIVES]
        ap = float(np.mean(counted)) if counted else float("nan")
        say(f"  {name} head epoch {epoch}/{epochs}: mean dev AP {ap:.3f}")
        if best is None or not ap <= best[0]:  # nan (too few dev positives to say) keeps the latest epoch
            best = (ap, layers)
    assert best is not None
    return best[1]


def fit_stacker(dev: Rows, idx: np.ndarray, logits: Sequence[np.ndarray], fallback: np.ndarray,
                categories: Sequence[str]) -> np.ndarray:
    """(len(logits) + 2, categories): per category, the weight of each logit (each (len(idx), categories)),
    a bias and the clip applied to the logits first, fitted on the dev rows at ``idx``; a category with
    too few of them keeps ``fallback`` (the same shape: the stacker of fewer heads, with zero for the
    missing ones; Platt scaling is one with an infinite clip).

    The logits are clipped to +-STACK_CLIP and the fit is strongly regularised (STACK_C): the n-gram
    heads reach |logit| 300 on text like their training rows, and an unclipped stacker learned to
    distrust them everywhere. 5-fold CV on dev, mean AP over the categories: raw logits, C=1 .806
    (t2v rows .851); clipped at 16, C=0.1 .830 (.871)."""
    from sklearn.linear_model import LogisticRegression

    stack = fallback.astype(np.float32).copy()
    for k, c in enumerate(categories):
        mask, y = dev.target(c)
        keep = mask[idx]
        yk = y[idx][keep]
        if yk.sum() < MIN_STACK_POSITIVES or yk.sum() == len(yk):
            continue
        heads = np.clip(np.stack([z[keep, k] for z in logits], axis=1), -STACK_CLIP, STACK_CLIP)
        fit = LogisticRegression(C=STACK_C).fit(heads, yk)
        stack[:, k] = [*fit.coef_[0], fit.intercept_[0], STACK_CLIP]
    return stack
