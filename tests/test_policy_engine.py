"""The policy engine as a pure function of (compiled policy, signals): no Kafka, no models."""

from pathlib import Path

import pytest

from classifiers.normalize import normalize
from policies import engine
from policies.engine import Signals, evaluate
from policies.loader import PolicyError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "policies" / "default.yaml"
ALL_SIGNALS = ("embedding", "profanity", "text_model")


@pytest.fixture(scope="module")
def policy() -> engine.CompiledPolicy:
    return engine.load(DEFAULT)


def sig(text: str, **scores: dict[str, float]) -> Signals:
    """Signals with every required model present (zero scores unless given)."""
    out = Signals(text=normalize(text), scores={s: {} for s in ALL_SIGNALS})
    out.scores.update(scores)
    return out


def test_benign_text_is_allowed(policy: engine.CompiledPolicy) -> None:
    ev = evaluate(policy, sig("a cinematic shot of a cat surfing at sunset"))
    assert ev.action == "allow"
    assert ev.categories == []
    assert ev.policy_id == "genguard-default" and len(ev.policy_version) == 16


def test_instruction_rule_blocks_through_obfuscation(policy: engine.CompiledPolicy) -> None:
    ev = evaluate(policy, sig("step by step: how to make a p.i.p.e b.o.m.b"))
    assert ev.action == "block"
    assert ev.obfuscated
    weapons = next(c for c in ev.categories if c.category == "illicit/weapons")
    assert weapons.severity == "critical"
    assert {m.id for m in weapons.matches} >= {"weapon-instructions", "explosives"}


def test_signal_threshold_sets_severity(policy: engine.CompiledPolicy) -> None:
    low = evaluate(policy, sig("some text", embedding={"violence": 0.50}))
    mid = evaluate(policy, sig("some text", embedding={"violence": 0.60}))
    high = evaluate(policy, sig("some text", embedding={"violence": 0.80}))
    assert (low.action, mid.action, high.action) == ("allow", "review", "block")
    assert high.categories[0].score == pytest.approx(0.80)


def test_context_caps_severity_but_not_exempt_rules(policy: engine.CompiledPolicy) -> None:
    doc = evaluate(policy, sig("a documentary about pipe bomb attacks in the 1970s"))
    assert doc.action == "allow"
    assert "education" in doc.contexts
    assert doc.categories == [] or all(m.capped_by == "education" for c in doc.categories for m in c.matches)
    howto = evaluate(policy, sig("an educational documentary showing how to build a pipe bomb"))
    assert howto.action == "block"  # weapon-instructions has exceptions_apply: false


def test_allow_phrases_do_not_fire(policy: engine.CompiledPolicy) -> None:
    assert evaluate(policy, sig("a bath bomb fizzing in the tub")).action == "allow"
    assert evaluate(policy, sig("shooting a basketball at dusk")).action == "allow"


def test_minor_plus_sexual_blocks_regardless_of_score(policy: engine.CompiledPolicy) -> None:
    adult = evaluate(policy, sig("a sexy woman on a beach"))
    assert adult.action == "review"  # nudity-terms is medium
    minor = evaluate(policy, sig("a sexy girl aged 14 on a beach"))
    assert minor.action == "block"
    cat = next(c for c in minor.categories if c.category == "sexual/minors")
    assert cat.severity == "critical"
    assert any(m.kind == "combination" and m.id == "minor-sexual" for m in cat.matches)


def test_helper_categories_are_never_reported(policy: engine.CompiledPolicy) -> None:
    ev = evaluate(policy, sig("a little girl blowing out birthday candles"))
    assert ev.action == "allow"
    assert all(c.category != "minors" for c in ev.categories)


def test_failed_required_signal_fails_closed(policy: engine.CompiledPolicy) -> None:
    s = sig("a cinematic shot of a cat")
    del s.scores["embedding"]
    s.errors["embedding"] = "RuntimeError: boom"
    ev = evaluate(policy, s)
    assert ev.action == "review"
    assert ev.errors == {"embedding": "RuntimeError: boom"}
    missing = sig("a cinematic shot of a cat")
    del missing.scores["profanity"]
    assert evaluate(policy, missing).action == "review"


def test_optional_signal_in_environment_is_recorded_not_failed(tmp_path: Path) -> None:
    text = DEFAULT.read_text().replace(
        "    required: true          # alt-profanity-check offensive-language model\n",
        "    required: true          # alt-profanity-check offensive-language model\n    optional_in: [demo]\n",
    )
    path = tmp_path / "p.yaml"
    path.write_text(text)
    policy = engine.load(path)
    s = Signals(text=normalize("a cat"), scores={"embedding": {}, "text_model": {}}, environment="demo")
    ev = evaluate(policy, s)
    assert (ev.action, ev.unscored, ev.errors) == ("allow", ["profanity"], {})
    s.environment = "production"
    assert evaluate(policy, s).action == "review"


def test_on_error_block_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(DEFAULT.read_text().replace("on_error: review", "on_error: block", 1))
    s = Signals(text=normalize("a cat"), scores={"profanity": {}}, errors={"embedding": "timeout"})
    assert evaluate(engine.load(path), s).action == "block"


def test_tenant_overlay_inherits_and_overrides() -> None:
    base = engine.load(DEFAULT)
    acme = engine.load(DEFAULT, ROOT / "policies" / "tenants" / "acme.yaml")
    assert acme.id == "genguard-default+acme" and acme.version != base.version
    s = sig("some footage", embedding={"violence": 0.85})
    assert evaluate(base, s).action == "block"
    assert evaluate(acme, s).action == "review"  # acme maps high violence to review
    s = sig("some footage", embedding={"violence": 0.75})
    assert evaluate(base, s).categories[0].severity == "high"
    assert evaluate(acme, s).categories[0].severity == "medium"  # acme raised the high threshold to 0.80
    assert evaluate(acme, sig("competitor slander reel")).action == "block"  # rule added by the overlay
    assert evaluate(base, sig("competitor slander reel")).action == "allow"
    # untouched categories are inherited
    assert evaluate(acme, sig("how to build a pipe bomb")).action == "block"


def test_overlay_can_disable_a_rule(tmp_path: Path) -> None:
    overlay = tmp_path / "t.yaml"
    overlay.write_text("overlay_of: genguard-default\ntenant: t\ncategories:\n  sexual:\n"
                       "    disable_rules: [nudity-terms]\n")
    assert evaluate(engine.load(DEFAULT), sig("a sexy dress")).action == "review"
    assert evaluate(engine.load(DEFAULT, overlay), sig("a sexy dress")).action == "allow"


def test_version_is_a_content_hash(tmp_path: Path) -> None:
    same = tmp_path / "same.yaml"
    same.write_text("# a comment changes nothing\n" + DEFAULT.read_text())
    changed = tmp_path / "changed.yaml"
    changed.write_text(DEFAULT.read_text().replace("medium: 0.58, high: 0.72", "medium: 0.59, high: 0.72", 1))
    assert engine.load(same).version == engine.load(DEFAULT).version
    assert engine.load(changed).version != engine.load(DEFAULT).version


def test_overlay_for_another_policy_is_rejected(tmp_path: Path) -> None:
    overlay = tmp_path / "t.yaml"
    overlay.write_text("overlay_of: other-policy\ntenant: t\n")
    with pytest.raises(PolicyError, match="overlay is for 'other-policy'"):
        engine.load(DEFAULT, overlay)
