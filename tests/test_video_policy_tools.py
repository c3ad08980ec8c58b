"""Policy owners' tools on videos: labelled videos in policy test and tune, stored video
observations in replay (no model runs again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.owner.labelled import Labelled, judge_rows, score
from pipeline.owner.replay import replay
from pipeline.owner.tune import choose, study
from pipeline.records import StoredSignals
from pipeline.store.signals import LocalSignalStore
from pipeline.video.gate import VideoGate
from tests.helpers import SINTEL

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rows(speech_clip: Path) -> list[Labelled]:
    return [Labelled(media=str(speech_clip), text="a test pattern", categories=["illicit/weapons"]),
            Labelled(media=str(SINTEL), text="an animated short film"),
            Labelled(text="a cinematic shot of a cat surfing at sunset")]


def test_policy_test_scores_labelled_videos(video_gate: VideoGate, rows: list[Labelled]) -> None:
    verdicts = judge_rows(video_gate.prompts, video_gate, rows, "default")
    assert [v.action for v in verdicts] == ["block", "allow", "allow"]
    weapons = next(s for s in score(rows, verdicts, ["illicit/weapons"]) if s.category == "illicit/weapons")
    assert (weapons.tp, weapons.fp, weapons.fn) == (1, 0, 0)


def test_tune_reads_a_text_signal_from_speech(video_gate: VideoGate, rows: list[Labelled]) -> None:
    st = study(video_gate.prompts, rows, "illicit/weapons", "embedding", "default", video_gate)
    assert st.scores[0] > 0.7 > max(st.scores[1:])  # the spoken sentence, not Sintel or the cat
    assert st.forced == [True, False, False]  # the rules already catch the sentence
    chosen = choose(st.points, target_recall=1.0)
    assert chosen is not None and chosen.precision == 1.0


def test_tune_reads_a_frame_signal(video_gate: VideoGate, rows: list[Labelled]) -> None:
    st = study(video_gate.prompts, rows[:2], "sexual", "nsfw", "default", video_gate)
    assert len(st.scores) == 2 and all(0.0 <= s < 0.6 for s in st.scores)


def test_replay_rejudges_a_stored_video(video_gate: VideoGate, speech_clip: Path, tmp_path: Path) -> None:
    decision, _, obs = video_gate.run(speech_clip, "a test pattern", "default", "job-replay")
    store = LocalSignalStore(tmp_path / "signals")
    store.append(StoredSignals(subject="job-replay", tenant="default", video=obs, prompt="a test pattern",
                               action=decision.action, categories=sorted(decision.flagged()),
                               policy_id=decision.policy_id, policy_version=decision.policy_version))
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text((ROOT / "policies/default.yaml").read_text().replace(
        "    title: Illicit activity and weapons\n",
        "    title: Illicit activity and weapons\n    severity_actions: {high: review, critical: review}\n"))
    diff = replay(video_gate.prompts, store.scan(), candidate, video_gate)
    (change,) = diff.changes
    assert (change.subject, change.before, change.after) == ("job-replay", "block", "review")
    with pytest.raises(ValueError, match="needs the video gate"):
        replay(video_gate.prompts, store.scan(), candidate)
