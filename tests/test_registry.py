"""A new frame model needs no edit to the gates: one file (tests/brightness.py), one registry row and one
policy entry, and it scores frames and drives decisions like the shipped models."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from classifiers import registry
from classifiers.registry import Entry
from pipeline.policy_source import PolicySource
from pipeline.prompt.gate import PromptGate
from pipeline.settings import Settings
from pipeline.video.gate import VideoGate
from tests.helpers import ffmpeg

ROW = Entry("brightness", "frames", "tests.brightness:Brightness")  # the one registry row


def with_brightness(default: Path, out: Path) -> Path:
    """The one policy entry: the signal declared, and a threshold in the category it speaks for."""
    policy = yaml.safe_load(default.read_text())
    policy["signals"]["brightness"] = {"modality": "frames", "required": True, "on_error": "review"}
    policy["categories"]["violence/graphic"]["thresholds"]["brightness"] = {"medium": 0.8, "high": 0.9}
    out.write_text(yaml.safe_dump(policy, sort_keys=False))
    return out


@pytest.fixture
def brightness_gate(demo_settings: Settings, gate: PromptGate, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> VideoGate:
    monkeypatch.setitem(registry.REGISTRY, ROW.name, ROW)
    settings = demo_settings.model_copy(update={
        "policy_path": with_brightness(demo_settings.policy_path, tmp_path / "policy.yaml"),
        "tenant_policy_dir": tmp_path / "tenants"})
    policies = PolicySource(settings)
    return VideoGate.from_settings(settings, PromptGate(settings, policies, gate.encoder, gate.cache,
                                                        gate.text_classifiers))


def solid(path: Path, colour: str) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"color=c={colour}:size=320x180:rate=25:duration=3", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(path))
    return path


def test_a_registered_frame_model_scores_and_decides(brightness_gate: VideoGate, tmp_path: Path) -> None:
    assert "brightness" in [d.name for d in brightness_gate.detectors]
    bright, _, obs = brightness_gate.run(solid(tmp_path / "white.mp4", "white"), None, "default", "job-white")
    assert obs.models["brightness"] == "brightness-1" and min(obs.detectors["brightness"]) > 0.95
    fired = {c.category: c for c in bright.categories}
    assert bright.action != "allow" and "violence/graphic" in fired
    assert any(m.id == "brightness" for m in fired["violence/graphic"].matches)
    dark, _, _ = brightness_gate.run(solid(tmp_path / "grey.mp4", "0x202020"), None, "default", "job-grey")
    assert dark.action == "allow", dark.model_dump_json(indent=1)


def test_a_registered_model_that_cannot_load_fails_its_signal_closed(demo_settings: Settings, gate: PromptGate,
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    missing = Entry("brightness", "frames", "tests.no_such_module:Brightness")
    monkeypatch.setitem(registry.REGISTRY, missing.name, missing)
    settings = demo_settings.model_copy(update={
        "policy_path": with_brightness(demo_settings.policy_path, tmp_path / "policy.yaml"),
        "tenant_policy_dir": tmp_path / "tenants"})
    vg = VideoGate.from_settings(settings, PromptGate(settings, PolicySource(settings), gate.encoder, gate.cache,
                                                      gate.text_classifiers))
    decision, _, _ = vg.run(solid(tmp_path / "grey.mp4", "0x202020"), None, "default", "job-missing")
    assert decision.action == "review" and "no_such_module" in decision.errors["frames:brightness"]
