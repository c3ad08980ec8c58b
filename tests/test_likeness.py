"""Likeness and consent in-process: the face model on real photos, the consent registry on the real
Redis (with its durable copy), the policy's likeness and tighten rules, and a real 10 s video made
from one photo, blocked without a grant and allowed with one."""

from __future__ import annotations

import asyncio
import itertools
import json
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from skimage import data

from classifiers.normalize import normalize
from pipeline.media import decode, limits_of
from pipeline.records import AuditRecord, FaceSeen, FrameSample, decode_vector, encode_vector
from pipeline.settings import Settings
from pipeline.store.likeness import LikenessStore
from pipeline.store.state import State
from pipeline.video import consent
from pipeline.video.gate import VideoGate
from pipeline.video.image import read_image
from pipeline.video.likeness import judge_faces
from policies import engine
from policies.engine import Signals
from policies.schema import Faces
from tests.helpers import FACES, pan_clip

T = TypeVar("T")
POLICY = engine.load(Path(__file__).resolve().parent.parent / "policies" / "default.yaml")
WHO = {"obama.jpg": "obama", "obama2.jpg": "obama", "obama3.jpg": "obama", "obama-480p.jpg": "obama",
       "obama_partial_face.jpg": "obama", "biden.jpg": "biden", "biden2.jpg": "biden"}


def run(settings: Settings, work: Callable[[LikenessStore], Awaitable[T]]) -> T:
    async def go() -> T:
        state = State(settings)
        try:
            return await work(LikenessStore(state, settings))
        finally:
            await state.close()
    return asyncio.run(go())


def embed(gate: VideoGate, settings: Settings, *names: str) -> list[str]:
    return consent.embed_photos(gate, [FACES / n for n in names], settings)


@pytest.fixture(scope="module")
def recorded() -> list[AuditRecord]:
    return []


@pytest.fixture(scope="module")
def audit(recorded: list[AuditRecord]) -> Callable[[AuditRecord], Awaitable[None]]:
    async def publish(record: AuditRecord) -> None:  # the API test reads these off the real broker
        recorded.append(record)
    return publish


def test_same_people_match_and_others_do_not_at_the_shipped_threshold(video_gate: VideoGate,
                                                                      demo_settings: Settings) -> None:
    limit = POLICY.policy.faces.max_distance
    vectors = {n: decode_vector(embed(video_gate, demo_settings, n)[0]) for n in WHO}
    astronaut = video_gate.faces.faces([data.astronaut()])[0]
    assert len(astronaut) == 1  # one person; the shoulder patch (score 0.12) stays below the detector's floor
    vectors["astronaut"] = astronaut[0].embedding
    same, other = [], []
    for a, b in itertools.combinations(vectors, 2):
        d = float(np.linalg.norm(vectors[a] - vectors[b]))
        (same if WHO.get(a, a) == WHO.get(b, b) else other).append((d, a, b))
    print(f"same person: {min(same)[0]:.3f}-{max(same)[0]:.3f} over {len(same)} pairs; "
          f"different: {min(other)[0]:.3f}-{max(other)[0]:.3f} over {len(other)} pairs; threshold {limit}")
    assert max(same)[0] <= limit, max(same)
    assert min(other)[0] > limit, min(other)
    image, _, _ = read_image(FACES / "obama_and_biden.jpg", 40_000_000, 640)
    both = video_gate.faces.faces([image])[0]
    nearest = {WHO[min(WHO, key=lambda n, f=f: np.linalg.norm(vectors[n] - f.embedding))] for f in both
               if min(np.linalg.norm(vectors[n] - f.embedding) for n in WHO) <= limit}
    assert nearest == {"obama", "biden"}


def test_the_face_model_is_safe_to_call_from_several_threads(video_gate: VideoGate) -> None:
    """dlib's detector crashes the process when two threads run one instance: the model must not let them."""
    from concurrent.futures import ThreadPoolExecutor

    images = [read_image(FACES / n, 40_000_000, 640)[0] for n in ("obama.jpg", "biden.jpg", "obama_and_biden.jpg")]
    alone = [[f.box for f in faces] for faces in video_gate.faces.faces(images * 3, embed=False)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda _: video_gate.faces.faces(images * 3, embed=False), range(4)))
    assert all([[f.box for f in faces] for faces in run] == alone for run in together)
    assert [len(b) for b in alone[:3]] == [1, 1, 3]


def test_registry_enrol_grant_revoke_erase_and_durable_copy(video_gate: VideoGate, demo_settings: Settings,
                                                            audit: Callable, recorded: list[AuditRecord]) -> None:
    vectors = embed(video_gate, demo_settings, "obama2.jpg", "obama3.jpg")

    async def work(store: LikenessStore) -> None:
        await consent.enrol(store, audit, "acme", "p-1", vectors, b"signed consent", "test")
        with pytest.raises(consent.ConsentError, match="enrolled already"):
            await consent.enrol(store, audit, "acme", "p-1", vectors, b"signed consent", "test")
        with pytest.raises(consent.ConsentError, match="consent"):
            await consent.enrol(store, audit, "acme", "p-2", vectors, b"", "test")
        assert [e.granted for e in await store.view("acme", "c-1")] == [False]
        await consent.grant(store, audit, "acme", "p-1", "c-1", "test")
        assert [e.granted for e in await store.view("acme", "c-1")] == [True]
        assert [e.granted for e in await store.view("acme", "c-2")] == [False]
        assert await store.view("globex", "c-1") == []  # another tenant's registry is another registry
        with pytest.raises(consent.ConsentError, match="no person"):
            await consent.grant(store, audit, "globex", "p-1", "c-1", "test")
        await store.r.delete(store._hash("acme"))  # Redis lost it: the durable copy brings it back
        assert [(e.person_id, e.granted) for e in await store.view("acme", "c-1")] == [("p-1", True)]
        await consent.revoke(store, audit, "acme", "p-1", "c-1", "test")
        assert [e.granted for e in await store.view("acme", "c-1")] == [False]
        await consent.erase(store, audit, "acme", "p-1", "test")
        assert await store.view("acme", "c-1") == []

    run(demo_settings, work)
    durable = demo_settings.var_dir / "likeness" / "acme.json"
    assert stat.S_IMODE(durable.stat().st_mode) == 0o600
    assert json.loads(durable.read_text()) == {}  # erased from the durable copy too
    events = [(r.event, r.subject) for r in recorded]
    assert events == [("likeness.enrolled", "p-1"), ("likeness.granted", "p-1"), ("likeness.revoked", "p-1"),
                      ("likeness.erased", "p-1")]
    assert all(v not in r.model_dump_json() for r in recorded for v in vectors)  # no embedding in the trail


def test_a_photo_must_show_one_face(video_gate: VideoGate, demo_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(consent.ConsentError) as several:
        embed(video_gate, demo_settings, "obama_and_biden.jpg")
    assert several.value.code == "several_faces"
    blank = tmp_path / "blank.png"
    from PIL import Image
    Image.new("RGB", (300, 300), "grey").save(blank)
    with pytest.raises(consent.ConsentError) as none:
        consent.embed_photos(video_gate, [blank], demo_settings)
    assert none.value.code == "no_face"


def frame_with(vector: np.ndarray) -> FrameSample:
    return FrameSample(t=2.0, reasons=["uniform"], faces=[FaceSeen(box=(1, 2, 3, 4), score=1.0,
                                                                   embedding=encode_vector(vector))])


def test_face_rules_name_the_person_and_block_sexual_content_even_with_a_grant() -> None:
    from pipeline.store.likeness import Enrolled

    rng = np.random.default_rng(0)
    person = rng.normal(size=128).astype(np.float32) / 12
    frames = [frame_with(person + 0.01)]
    for granted, sexual, want in [(False, 0.0, "block"), (True, 0.0, "allow"), (True, 0.7, "block")]:
        # 0.7: sexual at medium (review alone); with any enrolled person's face it is blocked
        sig = Signals(modality="frames", scores={"nsfw": {"*": sexual}, "faces": {}, "clip": {}, "hash": {}})
        judged = judge_faces(frames, [Enrolled("p-7", person[None, :], granted)], POLICY.policy.faces, "c-1", sig, {})
        ev = engine.evaluate_many(POLICY, [("frames", sig)])
        assert ev.action == want, (granted, sexual, ev)
        assert judged[0].faces[0].person_id == "p-7" and judged[0].faces[0].embedding is None
        if want == "block":
            (likeness,) = [c for c in ev.categories if c.category == "likeness"]
            assert likeness.matches[-1].id == ("likeness-sexual" if granted else "p-7")
    stranger = judge_faces(frames, [Enrolled("p-8", -person[None, :], False)], Faces(), None, Signals(), {})
    assert stranger[0].faces[0].person_id is None
    unembedded = [frames[0].model_copy(update={"faces": [frames[0].faces[0].model_copy(update={"embedding": None})]})]
    sig = Signals(modality="frames", scores={"nsfw": {"*": 0.0}, "faces": {}, "clip": {}, "hash": {}})
    judge_faces(unembedded, [Enrolled("p-7", person[None, :], True)], POLICY.policy.faces, "c-1", sig, {})
    assert engine.evaluate_many(POLICY, [("frames", sig)]).action == "review"  # enrolled since: fail closed


def test_a_possible_minor_tightens_sexual_thresholds() -> None:
    frames = Signals(modality="frames", scores={"nsfw": {"*": 0.52}})  # below sexual's medium 0.60, above 0.48
    adult = engine.evaluate_many(POLICY, [("prompt", Signals(text=normalize("a woman at the beach"))),
                                          ("frames", frames)])
    child = engine.evaluate_many(POLICY, [("prompt", Signals(text=normalize("a kid at the beach"))),
                                          ("frames", frames)])
    assert "sexual" not in adult.flagged() and "sexual/minors" not in adult.flagged()
    assert child.action == "block" and "sexual/minors" in child.flagged()  # minor + sexual, at 0.8 x thresholds
    (sexual,) = [c for c in child.categories if c.category == "sexual"]
    assert "minor-present" in sexual.matches[0].detail


@pytest.fixture(scope="module")
def obama_clip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield pan_clip(FACES / "obama.jpg", tmp_path_factory.mktemp("faces") / "obama_pan.mp4")


def test_a_video_of_an_enrolled_person_needs_their_grant(video_gate: VideoGate, demo_settings: Settings,
                                                         obama_clip: Path) -> None:
    from pipeline.store.likeness import Enrolled

    person = np.stack([decode_vector(v) for v in embed(video_gate, demo_settings, "obama2.jpg", "obama3.jpg")])
    media = decode(obama_clip, limits_of(demo_settings))
    seen_once = video_gate.observe(media, None, faces="embed")  # judging is pure: observe once, judge twice
    policy = video_gate.policies.for_tenant("acme")
    seen = {granted: video_gate.judge(seen_once, policy, "job-face", "acme", [Enrolled("p-9", person, granted)], "c-1")
            for granted in (False, True)}
    blocked, allowed = seen[False], seen[True]
    assert blocked.action == "block" and "Obama" not in blocked.model_dump_json()
    (likeness,) = [c for c in blocked.categories if c.category == "likeness"]
    assert likeness.matches[0].id == "p-9" and "no grant for creator c-1" in likeness.matches[0].detail
    matched = [f.faces[0] for f in blocked.frames if f.faces]
    assert len(matched) >= 0.8 * len(blocked.frames) and all(f.person_id == "p-9" for f in matched)
    print("distances in frames:", sorted(f.distance for f in matched))
    assert allowed.action == "allow" and not allowed.categories
    skipped = seen_once.model_copy(update={"faces_mode": "skip"})  # observed while nobody was enrolled
    raced = video_gate.judge(skipped, policy, "job-race", "acme", [Enrolled("p-9", person, True)], "c-1")
    assert raced.action == "review" and "frames:faces" in raced.errors  # enrolled since: fail closed
    assert allowed.timings_ms["faces"] > 0 and "faces" in allowed.model_versions
