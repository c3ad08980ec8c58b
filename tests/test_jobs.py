"""Video jobs end to end: the real API over HTTP, a real worker process on the real embedded
broker, the real Redis ledger, real media; including a worker killed mid-job."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.prompt.gate import PromptGate
from pipeline.release import wmkeys
from pipeline.release.provenance import SOFT_BINDING_ALG
from pipeline.settings import Settings
from tests.helpers import (
    SINTEL,
    audit_records,
    clip,
    ffmpeg,
    make_key,
    serve_api,
    start_worker,
    stop_all,
    upload,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def job_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.model_copy(update={"var_dir": tmp_path_factory.mktemp("jobs-var"), "environment": "demo",
                                       "job_lease_s": 4, "worker_name": f"jobs-{time.time_ns()}"})


@pytest.fixture(scope="module")
def worker(job_settings: Settings) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [start_worker(job_settings)]
    yield procs  # a test may replace the process (kill -9 and restart)
    stop_all(procs)


@pytest.fixture(scope="module")
def api(job_settings: Settings, gate: PromptGate) -> Iterator[str]:
    with serve_api(job_settings, gate) as url:
        yield url


@pytest.fixture(scope="module")
def keys(job_settings: Settings) -> dict[str, str]:
    return {"acme": make_key(job_settings, "acme", ["submit", "review", "check", "verify"]),
            "globex": make_key(job_settings, "globex", ["submit", "review", "verify"])}


def audit_events(s: Settings, subject: str, seconds: float = 4) -> Counter[str]:
    return Counter(r["event"] for r in audit_records(s, {subject}, seconds))


def test_upload_is_decided_with_evidence(api: str, keys: dict[str, str], worker: list, speech: Path,
                                         job_settings: Settings) -> None:
    r = upload(api, keys["acme"], speech, prompt="a colourful test pattern")
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    job = wait_for(api, keys["acme"], job_id)
    assert job["status"] == "blocked" and job["action"] == "block"
    assert job["history"][0]["status"] == "queued"
    assert {"sampling", "deciding", "blocked"} <= {h["status"] for h in job["history"]}
    cats = {c["category"]: c for c in job["decision"]["categories"]}
    assert any(m["source"].startswith("transcript") for m in cats["illicit/weapons"]["matches"])
    png = httpx.get(f"{api}/v1/jobs/{job_id}/evidence.png", headers={"Authorization": f"Bearer {keys['acme']}"})
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert audit_events(job_settings, job_id)["video.decision"] == 1


def test_bad_uploads_are_refused_and_recorded(api: str, keys: dict[str, str], tmp_path: Path) -> None:
    cases = [(tmp_path / "empty.mp4", b"", 422, "empty_file"), (tmp_path / "junk.mp4", os.urandom(4096), 422,
             "not_a_video"), (clip(tmp_path / "x.avi", seconds=1), None, 415, "unsupported_container")]
    for path, data, status, code in cases:
        if data is not None:
            path.write_bytes(data)
        job_id = f"bad-{code}-{time.time_ns()}"
        r = upload(api, keys["acme"], path, job_id=job_id)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code)
        job = httpx.get(f"{api}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {keys['acme']}"}).json()
        assert job["status"] == "failed" and job["error"]["code"] == code


def test_review_then_approve_release_and_trace(api: str, keys: dict[str, str], worker: list, tmp_path: Path,
                             job_settings: Settings) -> None:
    # real footage: the invisible watermark is made for natural video (see test_release.py); a borderline
    # prompt that the policy sends to review (the nudity-terms rule at medium, the learned model below it)
    r = upload(api, keys["acme"], SINTEL, prompt="a sensual tango in a ballroom")
    job_id = r.json()["job_id"]
    assert wait_for(api, keys["acme"], job_id)["status"] == "review"
    auth = {"Authorization": f"Bearer {keys['acme']}"}
    assert job_id in [j["job_id"] for j in httpx.get(f"{api}/v1/review", headers=auth).json()]
    done = httpx.post(f"{api}/v1/review/{job_id}", headers=auth, json={"decision": "approve", "reason": "dance, ok"})
    assert done.status_code == 200 and done.json()["status"] == "allowed" and done.json()["action"] == "allow"
    again = httpx.post(f"{api}/v1/review/{job_id}", headers=auth, json={"decision": "reject", "reason": "changed"})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "not_in_review")
    assert job_id not in [j["job_id"] for j in httpx.get(f"{api}/v1/review", headers=auth).json()]
    deadline = time.monotonic() + 90  # approved: on to release (moving mark + signed manifest)
    while httpx.get(f"{api}/v1/jobs/{job_id}", headers=auth).json()["status"] != "released":
        assert time.monotonic() < deadline, "approved job was not released"
        time.sleep(0.3)
    video = httpx.get(f"{api}/v1/jobs/{job_id}/video", headers=auth)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    report = httpx.post(f"{api}/v1/verify", headers=auth, files={"video": ("r.mp4", video.content, "video/mp4")})
    body = report.json()
    assert body["state"] == "Trusted" and body["assertions"]["org.genguard.moderation"]["job_id"] == job_id
    assert "human review" in body["assertions"]["org.genguard.moderation"]["decision"]
    ring = wmkeys.load(job_settings)  # the dev keyring the worker made under its var/keys
    assert body["watermark"] == {"present": True, "payload": body["watermark"]["payload"],
                                 "key_id": ring.current, "job_id": job_id}

    # the release was indexed by the worker: a stripped, re-encoded, mirrored copy traces back to it
    copy = tmp_path / "copy.mp4"
    (tmp_path / "released.mp4").write_bytes(video.content)
    ffmpeg("-i", str(tmp_path / "released.mp4"), "-map_metadata", "-1", "-vf", "hflip", "-c:v", "libx264",
           "-crf", "28", "-c:a", "aac", str(copy))
    traced = httpx.post(f"{api}/v1/trace", headers=auth, files={"video": ("c.mp4", copy.read_bytes(), "video/mp4")})
    assert traced.status_code == 200, traced.text
    found = traced.json()
    assert found["layers"]["manifest"]["present"] is False and found["layers"]["watermark"]["present"] is False
    assert found["match"]["job_id"] == job_id and found["match"]["via"] in ("frames", "audio")
    assert found["matches"][0]["manifestId"] == job_id and found["match"]["manifest"]["state"] == "Trusted"
    assert found["layers"]["frames"]["job_id"] == job_id  # the mirror's hashes match
    stored = httpx.get(f"{api}/v1/releases/{job_id}/manifest", headers=auth)
    assert stored.headers["content-type"] == "application/c2pa" and len(stored.content) > 1000
    binding = base64.b64encode(bytes.fromhex(body["watermark"]["payload"])).decode()
    by_value = httpx.get(f"{api}/v1/trace/by-binding", headers=auth, params={"alg": SOFT_BINDING_ALG, "value": binding})
    assert by_value.json()["matches"][0]["manifestId"] == job_id
    other = {"Authorization": f"Bearer {keys['globex']}"}  # another tenant learns nothing of acme's release
    theirs = httpx.post(f"{api}/v1/trace", headers=other, files={"video": ("c.mp4", video.content, "video/mp4")})
    assert theirs.status_code == 200 and theirs.json()["traced"] is False
    layers = theirs.json()["layers"]
    assert layers["manifest"]["job_id"] is None and layers["watermark"]["job_id"] is None
    assert httpx.get(f"{api}/v1/releases/{job_id}/manifest", headers=other).status_code == 404
    assert httpx.get(f"{api}/v1/trace/by-binding", headers=other,
                     params={"alg": SOFT_BINDING_ALG, "value": binding}).json()["traced"] is False
    bad = httpx.get(f"{api}/v1/trace/by-binding", headers=auth, params={"alg": SOFT_BINDING_ALG, "value": "%%%"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "bad_binding_value")
    job = httpx.get(f"{api}/v1/jobs/{job_id}", headers=auth)
    assert job.json()["watermark_key"] == ring.current
    assert ring.key.hex() not in job.text + report.text  # the key's id travels, never the secret
    events = audit_events(job_settings, job_id)
    assert events["review.action"] == 1 and events["video.released"] == 1
    other = {"Authorization": f"Bearer {keys['globex']}"}
    assert httpx.get(f"{api}/v1/jobs/{job_id}/video", headers=other).status_code == 404


def test_other_tenants_cannot_see_jobs(api: str, keys: dict[str, str], tmp_path: Path) -> None:
    job_id = upload(api, keys["acme"], clip(tmp_path / "mine.mp4", seconds=2)).json()["job_id"]
    other = {"Authorization": f"Bearer {keys['globex']}"}
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/evidence.png"):
        r = httpx.get(f"{api}{path}", headers=other)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "job_not_found")
    r = httpx.post(f"{api}/v1/review/{job_id}", headers=other, json={"decision": "approve", "reason": "mine now"})
    assert r.status_code == 404


def test_worker_killed_mid_job_finishes_it_exactly_once(api: str, keys: dict[str, str], worker: list,
                                                        speech: Path, job_settings: Settings) -> None:
    job_id = upload(api, keys["acme"], speech).json()["job_id"]
    auth = {"Authorization": f"Bearer {keys['acme']}"}
    deadline = time.monotonic() + 60
    while httpx.get(f"{api}/v1/jobs/{job_id}", headers=auth).json()["status"] in ("queued", "sampling"):
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.05)
    worker[0].send_signal(signal.SIGKILL)  # mid-job: frames and audio stages under way
    worker[0].wait(10)
    assert httpx.get(f"{api}/v1/jobs/{job_id}", headers=auth).json()["status"] not in ("blocked", "allowed")
    worker.append(start_worker(job_settings))
    job = wait_for(api, keys["acme"], job_id, timeout=150)
    assert job["status"] == "blocked"
    events = audit_events(job_settings, job_id, seconds=6)
    assert events["video.decision"] == 1, events
    assert sum(1 for h in job["history"] if h["status"] == "blocked") == 1
    assert json.dumps(job).count('"illicit/weapons"') >= 1
