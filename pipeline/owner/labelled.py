"""``genguard policy test``: per-category precision and recall of a policy on labelled prompts and videos."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from pipeline.prompt.gate import PromptGate
from pipeline.prompt.stage import decide
from pipeline.records import PromptRequest
from pipeline.video.gate import VideoGate
from policies.engine import Evaluation


class Labelled(BaseModel):
    """A labelled example: a prompt (``text``), or a video (``media``, with its prompt in ``text``)."""

    text: str = ""
    media: str | None = None
    categories: list[str] = []
    note: str = ""


@dataclass(frozen=True, slots=True)
class Counts:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True, slots=True)
class Score(Counts):
    category: str


def read_labelled(path: Path) -> list[Labelled]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
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
    pairs = [(set(r.categories), v.flagged()) for r, v in zip(rows, verdicts, strict=True)]
    out = []
    for cat in [*categories, "any"]:
        def has(s: set[str], c: str = cat) -> bool:
            return bool(s) if c == "any" else c in s
        tp = sum(has(truth) and has(pred) for truth, pred in pairs)
        fp = sum(not has(truth) and has(pred) for truth, pred in pairs)
        fn = sum(has(truth) and not has(pred) for truth, pred in pairs)
        out.append(Score(tp=tp, fp=fp, fn=fn, category=cat))
    return out


def report(scores: list[Score]) -> str:
    lines = [f"{'category':<22} {'support':>7} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>9} {'recall':>7}"]
    for s in scores:
        lines.append(f"{s.category:<22} {s.tp + s.fn:>7} {s.tp:>4} {s.fp:>4} {s.fn:>4} "
                     f"{s.precision:>9.3f} {s.recall:>7.3f}")
    return "\n".join(lines)
