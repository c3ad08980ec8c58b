"""Keyword and regex matching over normalised text, with word boundaries.

Keywords are written plainly in policies ("pipe bomb") and compiled here so that they also
match "pipebomb", "pipe-bomb" and simple plurals; regexes are wrapped in word boundaries
unless they already anchor themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from classifiers.normalize import normalize

_JOIN = r"[\s\-_]*"


def keyword_pattern(keyword: str) -> str:
    words = normalize(keyword).text.split(" ")
    return r"\b" + _JOIN.join(re.escape(w) for w in words) + r"(?:s|es)?\b"


def regex_pattern(regex: str) -> str:
    return regex if regex.startswith(("\\b", "^")) else rf"\b(?:{regex})\b"


def compile_terms(keywords: Iterable[str] = (), regexes: Iterable[str] = ()) -> re.Pattern[str] | None:
    """One alternation for a list of terms, so matching costs one scan of the text."""
    parts = [keyword_pattern(k) for k in keywords] + [regex_pattern(r) for r in regexes]
    return re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE) if parts else None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    severity: str
    pattern: re.Pattern[str]
    exceptions_apply: bool


def mask(text: str, phrases: re.Pattern[str] | None) -> str:
    """Blank out allow-listed phrases ("bath bomb", "photo shoot") so rules and embeddings skip them."""
    return phrases.sub(lambda m: " " * len(m.group(0)), text) if phrases else text


def first_match(pattern: re.Pattern[str] | None, text: str) -> str | None:
    if pattern is None:
        return None
    m = pattern.search(text)
    return m.group(0) if m else None
