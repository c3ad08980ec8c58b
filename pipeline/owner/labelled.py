"""``genguard policy test``: per-category precision and recall of a policy on labelled prompts and videos."""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from classifiers.normalize import normalize
from pipeline.owner.text_eval import Counts, Truth, figures
from pipeline.prompt.gate import PromptGate
from pipeline.prompt.stage import decide
from pipeline.records import PromptRequest
from pipeline.video.gate import VideoGate
from policies import engine
from policies.engine import CompiledPolicy, Evaluation, Signals


class Labelled(BaseModel):
    """A labelled example: a prompt (``text``), or a video (``media``, with its prompt in ``text``).
    ``labelled`` (the corpus's mask) lists the categories the row's source decides; None: all."""

    text: str = ""
    media: str | None = None
    categories: list[str] = []
    labelled: list[str] | None = None
    lang: str = "en"
    source: str = ""
    domain: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class Score(Counts):
    category: str


def read_labelled(path: Path) -> list[Labelled]:
    """JSONL, or the corpus's gzipped JSONL; a bad line is an error naming file and line."""
    text = gzip.decompress(path.read_bytes()).decode("utf-8") if path.suffix == ".gz" else path.read_text("utf-8")
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(Labelled.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as e:
            raise ValueError(f"{path}:{n}: {e}") from e
    return rows


def judge_rows(gate: PromptGate, video: VideoGate | None, rows: Iterable[Labelled], tenant: str) -> list[Evaluation]:
    """The live decision on every labelled row: prompts through the prompt gate, videos through the video gate."""
    out: list[Evaluation] = []
    for n, row in enumerate(rows):
        if row.media is None:
            out.append(decide(gate, PromptRequest(tenant=tenant, prompt=row.text, actor="policy-test"), "cli"))
        elif video is None:
            raise ValueError(f"{row.media}: labelled videos need the video gate")
        else:
            out.append(video.run(Path(row.media), row.text or None, tenant, f"labelled-{n}")[0])
    return out


def score(rows: Iterable[Labelled], verdicts: Iterable[Evaluation], categories: Iterable[str]) -> list[Score]:
    """Per category, plus ``any`` (was harmful content flagged at all)."""
    rows, verdicts = list(rows), list(verdicts)
    return score_flags(rows, [v.flagged() for v in verdicts], categories)


def score_flags(rows: Sequence[Labelled], flags: Sequence[set[str]], categories: Iterable[str]) -> list[Score]:
    """Per category over the rows that label it, plus ``any`` (see ``text_eval.figures``)."""
    cats = list(categories)
    f = figures(Truth.of_labelled(rows, cats), flags, cats)
    return [*(Score(**dataclasses.asdict(f.per_category[c]), category=c) for c in cats),
            Score(**dataclasses.asdict(f.any_flagged), category="any")]


def report(scores: list[Score]) -> str:
    lines = [f"{'category':<22} {'support':>7} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>9} {'recall':>7}"]
    for s in scores:
        lines.append(f"{s.category:<22} {s.tp + s.fn:>7} {s.tp:>4} {s.fp:>4} {s.fn:>4} "
                     f"{s.precision:>9.3f} {s.recall:>7.3f}")
    return "\n".join(lines)


def judge_many(gate: PromptGate, rows: Iterable[Labelled], policies: dict[str, CompiledPolicy],
               keywords: CompiledPolicy | None = None) -> dict[str, list[set[str]]]:
    """Flagged categories per row under each policy: every prompt observed once, judged by each; with
    ``keywords``, also that policy's rules alone (no model signal) as a keyword baseline."""
    out: dict[str, list[set[str]]] = {name: [] for name in policies}
    if keywords is not None:
        out["keywords only"] = []
    text_signals = [n for n, s in (keywords.policy.signals.items() if keywords else ()) if s.modality == "text"]
    for row in rows:
        if row.media is not None:
            raise ValueError(f"{row.media}: comparing policies covers labelled prompts only")
        request = PromptRequest(tenant="default", prompt=row.text or " ", actor="policy-test")
        obs = gate.observe(request.prompt)
        for name, policy in policies.items():
            out[name].append(gate.judge(request, obs, policy).flagged())
        if keywords is not None:
            bare = Signals(text=normalize(request.prompt), scores={n: {} for n in text_signals})
            out["keywords only"].append(engine.evaluate(keywords, bare).flagged())
    return out
