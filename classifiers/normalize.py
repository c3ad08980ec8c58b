"""Text normalisation that undoes the usual evasions before rules and embeddings see the text.

Order matters: NFKC folds compatibility forms (full-width, ligatures), casefold lowers,
homoglyphs map look-alike Cyrillic/Greek letters to Latin, accents are stripped,
spaced-out words ("b.o.m.b", "k i l l") are rejoined, and leetspeak inside words
("b0mb", "k1ll") is mapped back to letters.

Other scripts are text, not evasions: a Cyrillic or Greek letter is folded to its Latin look-alike
only inside a word that also has Latin letters ("bоmb") or in text that is mostly Latin, so Russian
and Greek stay as written; accents are stripped from Latin letters only, so Devanagari's virama
and Japanese dakuten (で is not て) survive.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Look-alike letters that NFKC does not fold (Unicode confusables, Latin targets only).
CONFUSABLES = {
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
    "ӏ": "l", "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v",
    "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w",
}  # fmt: skip
HOMOGLYPHS = str.maketrans(CONFUSABLES)
LATIN_FOLDS = str.maketrans({"ß": "ss", "ø": "o", "ł": "l", "đ": "d", "ı": "i", "ɡ": "g"})
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b",
                      "@": "a", "$": "s", "!": "i", "|": "l", "€": "e", "+": "t"})  # fmt: skip
ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
# Bidi overrides and isolates reorder what a reader sees ("\u202ebmob" displays reversed); control
# characters (NUL and friends) are no text at all: both go, controls as spaces.
INVISIBLE = {**ZERO_WIDTH, **dict.fromkeys(map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                                                 "\u061c"), None),
             **{c: " " for c in [*range(0, 9), 11, 12, *range(14, 32), 127]}}

# A word written with leet characters: letters mixed with leet symbols, not a number with a unit.
_TOKEN = re.compile(r"[\w@$!|€+]+")
_UNIT = re.compile(r"\d+[a-z]{0,3}")
# Single characters joined by one repeated separator: "b.o.m.b", "k-i-l-l", "n a z i".
_SPACED = re.compile(r"(?<![\w])(?:\w(?P<sep>[ .\-_*·•,/]+))(?:\w(?P=sep)){1,}\w(?![\w])")


@dataclass(frozen=True, slots=True)
class NormalizedText:
    original: str
    text: str
    obfuscated: bool  # homoglyphs, leetspeak or spacing were undone


def _unleet(match: re.Match[str]) -> str:
    token = match.group(0)
    if not any(c.isalpha() for c in token) or _UNIT.fullmatch(token):
        return token
    return token.translate(LEET)


def _latin(c: str) -> bool:
    return c.isascii() or "\u00c0" <= c <= "\u024f" or "\u1e00" <= c <= "\u1eff"


def _fold_confusables(text: str) -> str:
    """Map Cyrillic/Greek look-alikes to Latin inside mixed-script words, or everywhere when the text
    is mostly Latin; leave words of another script alone."""
    letters = [c for c in text if c.isalpha()]
    mostly_latin = sum(map(_latin, letters)) > len(letters) / 2

    def word(m: re.Match[str]) -> str:
        w = m.group(0)
        mixed = any(c.isascii() and c.isalpha() for c in w)
        if mixed or (mostly_latin and all(c in CONFUSABLES or not c.isalpha() for c in w)):
            return w.translate(HOMOGLYPHS)
        return w

    return re.sub(r"\w+", word, text)


def _strip_latin_accents(text: str) -> str:
    out: list[str] = []
    for c in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(c) and out and _latin(out[-1]):
            continue
        out.append(c)
    return unicodedata.normalize("NFC", "".join(out))


def _rejoin(match: re.Match[str]) -> str:
    return re.sub(r"[ .\-_*·•,/]+", "", match.group(0))


def normalize(text: str) -> NormalizedText:
    nfkc = unicodedata.normalize("NFKC", text)
    visible = nfkc.translate(INVISIBLE)
    folded = visible.casefold().translate(LATIN_FOLDS)
    mapped = _fold_confusables(folded)
    stripped = _strip_latin_accents(mapped)
    rejoined = _SPACED.sub(_rejoin, stripped)
    unleeted = _TOKEN.sub(_unleet, rejoined)
    out = re.sub(r"\s+", " ", unleeted).strip()
    obfuscated = visible != nfkc or mapped != folded or rejoined != stripped or unleeted != rejoined
    return NormalizedText(original=text, text=out, obfuscated=obfuscated)
