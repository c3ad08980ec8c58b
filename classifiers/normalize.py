"""Text normalisation that undoes the usual evasions before rules and embeddings see the text.

Order matters: NFKC folds compatibility forms (full-width, ligatures), casefold lowers,
homoglyphs map look-alike Cyrillic/Greek letters to Latin, accents are stripped,
spaced-out words ("b.o.m.b", "k i l l") are rejoined, and leetspeak inside words
("b0mb", "k1ll") is mapped back to letters.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Look-alike letters that NFKC does not fold (Unicode confusables, Latin targets only).
HOMOGLYPHS = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
        "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
        "ɡ": "g", "ӏ": "l", "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v",
        "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ß": "ss", "ø": "o", "ł": "l",
        "đ": "d", "ı": "i",
    }
)  # fmt: skip
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b",
                      "@": "a", "$": "s", "!": "i", "|": "l", "€": "e", "+": "t"})  # fmt: skip
ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)

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


def _rejoin(match: re.Match[str]) -> str:
    return re.sub(r"[ .\-_*·•,/]+", "", match.group(0))


def normalize(text: str) -> NormalizedText:
    nfkc = unicodedata.normalize("NFKC", text)
    folded = nfkc.translate(ZERO_WIDTH).casefold()
    mapped = folded.translate(HOMOGLYPHS)
    stripped = "".join(c for c in unicodedata.normalize("NFKD", mapped) if not unicodedata.combining(c))
    rejoined = _SPACED.sub(_rejoin, stripped)
    unleeted = _TOKEN.sub(_unleet, rejoined)
    out = re.sub(r"\s+", " ", unleeted).strip()
    hidden = len(folded) != len(nfkc)
    obfuscated = hidden or mapped != folded or rejoined != stripped or unleeted != rejoined
    return NormalizedText(original=text, text=out, obfuscated=obfuscated)
