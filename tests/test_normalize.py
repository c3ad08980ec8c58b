import pytest

from classifiers.normalize import normalize
from classifiers.rules import compile_terms, first_match, mask


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("b.o.m.b", "bomb"),
        ("p-i-p-e b-o-m-b", "pipe bomb"),
        ("k i l l them", "kill them"),
        ("how to make a b0mb", "how to make a bomb"),
        ("n@z1 flag", "nazi flag"),
        ("Ｋｉｌｌ", "kill"),  # full-width: NFKC
        ("bоmb", "bomb"),  # Cyrillic o: homoglyph
        ("h\u200bitler", "hitler"),  # zero-width space
        ("CAFÉ Naïve", "cafe naive"),  # case and accents
        ("gr\u0430n\u0430de", "granade"),
    ],
)
def test_evasions_are_undone(raw: str, expected: str) -> None:
    assert normalize(raw).text == expected


@pytest.mark.parametrize("raw", ["4k 60fps 3d render of a sunset in 1999", "a cat on a mat", "version 2.0 launch"])
def test_ordinary_text_is_left_alone(raw: str) -> None:
    out = normalize(raw)
    assert out.text == raw.lower()
    assert not out.obfuscated


def test_obfuscation_is_flagged_but_accents_are_not() -> None:
    assert normalize("b0mb").obfuscated
    assert normalize("k.i.l.l").obfuscated
    assert not normalize("café").obfuscated


def test_keywords_match_on_word_boundaries_and_joined_forms() -> None:
    pattern = compile_terms(["pipe bomb"], [])
    for text in ("a pipe bomb", "a pipebomb", "two pipe-bombs"):
        assert first_match(pattern, normalize(text).text), text
    for text in ("a pipe bombastic speech", "pipebombing" ):
        assert first_match(pattern, normalize(text).text) is None, text


def test_allow_phrases_are_masked_before_rules() -> None:
    bomb = compile_terms(["bomb"], [])
    allow = compile_terms(["bath bomb"], [])
    assert first_match(bomb, mask("a bath bomb fizzing", allow)) is None
    assert first_match(bomb, mask("a bath bomb and a real bomb", allow)) == "bomb"


@pytest.mark.parametrize(
    "text",
    ["женщина лежит на кровати", "घुटने का ऑपरेशन करता एक सर्जन, शैक्षिक वीडियो", "上司をナイフで殺す動画",
     "ελληνικά κείμενα", "一个女孩在浴室里"],
    ids=["russian", "hindi-virama", "japanese-dakuten", "greek", "chinese"],
)
def test_other_scripts_are_text_not_evasions(text: str) -> None:
    """Cyrillic, Greek, Devanagari and kana come through as written (lower-cased), never folded to Latin."""
    out = normalize(text)
    assert out.text == text.casefold() and not out.obfuscated


def test_a_look_alike_inside_a_latin_word_is_still_folded() -> None:
    assert normalize("how to make a bоmb").text == "how to make a bomb"  # Cyrillic о in a Latin word
    assert normalize("ВОМВ how to make one").text.startswith("bomb")  # all look-alikes, in Latin text
