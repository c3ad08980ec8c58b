"""Likeness over the real API (uvicorn, Tansu, Redis): enrolment, grants, revocation and erasure, the
reference-image check with hostile images, tenant isolation, the audit trail; and videos through a
real worker process, blocked without a grant, released with one and blocked again once revoked."""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from pipeline.prompt.gate import PromptGate
from pipeline.settings import Settings
from pipeline.video.gate import VideoGate
from pipeline.video.image import read_image
from tests.helpers import (
    FACES,
    audit_records,
    genguard,
    make_key,
    pan_clip,
    serve_api,
    start_worker,
    stop_all,
    wait_for,
)


@pytest.fixture(scope="module")
def like_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.model_copy(update={"var_dir": tmp_path_factory.mktemp("like-var"), "environment": "demo",
                                       "worker_name": f"like-{time.time_ns()}"})


@pytest.fixture(scope="module")
def api(like_settings: Settings, gate: PromptGate, video_gate: VideoGate) -> Iterator[str]:
    with serve_api(like_settings, gate, video_gate) as url:
        yield url


@pytest.fixture(scope="module")
def keys(like_settings: Settings) -> dict[str, str]:
    return {"acme": make_key(like_settings, "acme", ["check", "submit", "likeness"]),
            "acme-check": make_key(like_settings, "acme", ["check"]),
            "globex": make_key(like_settings, "globex", ["check", "likeness"])}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def enrol(api: str, key: str, person: str, *photos: str) -> httpx.Response:
    files = [("photos", (n, (FACES / n).read_bytes(), "image/jpeg")) for n in photos]
    files.append(("consent_file", ("consent.pdf", b"%PDF signed consent of the person", "application/pdf")))
    return httpx.post(f"{api}/v1/likeness", headers=auth(key), data={"person_id": person}, files=files, timeout=60)


def check(api: str, key: str, image: bytes, name: str = "ref.jpg", **form: str) -> httpx.Response:
    return httpx.post(f"{api}/v1/images:check", headers=auth(key), files={"image": (name, image)}, data=form,
                      timeout=60)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def hostile() -> dict[str, tuple[bytes, int, str]]:
    """Name -> (bytes, HTTP status, error code) for images genguard refuses."""
    frames = [Image.new("RGB", (64, 64), c) for c in ("red", "blue")]
    photo = (FACES / "obama.jpg").read_bytes()
    return {
        "empty": (b"", 422, "image_empty"),
        "png bomb (20,000 x 20,000, 1-bit)": (encoded(Image.new("1", (20_000, 20_000)), "PNG"), 413,
                                               "image_too_large"),
        "10,000 x 10,000 JPEG": (encoded(Image.new("L", (10_000, 10_000), 128), "JPEG", quality=5), 413,
                                 "image_too_large"),
        "animated GIF": (encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]), 415, "animated_image"),
        "animated WebP": (encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:]), 415,
                          "animated_image"),
        "truncated JPEG": (photo[: len(photo) // 2], 422, "image_truncated"),
        "text": (b"this is not an image at all", 415, "unsupported_image"),
    }


def test_hostile_images_get_a_clear_4xx(api: str, keys: dict[str, str]) -> None:
    for name, (raw, status, code) in hostile().items():
        r = check(api, keys["acme-check"], raw)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (name, r.text)


def test_odd_but_valid_images_are_converted_and_exif_is_honoured(api: str, keys: dict[str, str],
                                                                 tmp_path: Path) -> None:
    photo = Image.open(FACES / "obama.jpg")
    sideways = photo.rotate(90, expand=True)  # stored on its side, EXIF says: turn it back
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    cases = {"cmyk.jpg": encoded(photo.convert("CMYK"), "JPEG"), "exif.jpg": encoded(sideways, "JPEG", exif=exif)}
    for name, raw in cases.items():
        r = check(api, keys["acme-check"], raw, name)
        assert r.status_code == 200, (name, r.text)
        assert len(r.json()["faces"]) == 1, (name, r.json()["faces"])  # HOG finds no face on its side
    grey = np.tile(np.linspace(0, 65535, 256, dtype=np.uint16), (64, 1))
    sixteen = tmp_path / "16bit.png"
    Image.fromarray(grey).save(sixteen)  # uint16: a 16-bit greyscale PNG
    pixels, _, _ = read_image(sixteen, 40_000_000, 640)
    assert pixels.shape == (64, 256, 3) and 120 < pixels.mean() < 135  # scaled to 8 bits, not clipped to white
    r = check(api, keys["acme-check"], sixteen.read_bytes(), "16bit.png")
    assert r.status_code == 200 and r.json()["action"] == "allow", r.text


def test_enrol_grant_revoke_erase_and_the_image_check(api: str, keys: dict[str, str],
                                                      like_settings: Settings) -> None:
    assert enrol(api, keys["acme-check"], "p-obama", "obama2.jpg").status_code == 403  # needs 'likeness'
    r = enrol(api, keys["acme"], "p-obama", "obama2.jpg", "obama3.jpg")
    assert r.status_code == 201, r.text
    assert r.json()["photos"] == 2 and "embeddings" not in r.json()
    assert enrol(api, keys["acme"], "p-obama", "obama2.jpg").json()["error"]["code"] == "person_exists"
    assert enrol(api, keys["acme"], "p-two", "obama_and_biden.jpg").json()["error"]["code"] == "several_faces"
    photo = (FACES / "obama.jpg").read_bytes()

    def verdict(**form: str) -> dict:
        r = check(api, keys["acme"], photo, creator="c-1", **form)
        assert r.status_code == 200, r.text
        return r.json()

    first = verdict(request_id="img-1")
    assert first["action"] == "block" and first["faces"][0]["person_id"] == "p-obama"
    assert "p-obama" in first["categories"][0]["matches"][0]["id"]
    replay = check(api, keys["acme"], photo, creator="c-1", request_id="img-1")
    assert replay.headers.get("Idempotent-Replay") == "true" and replay.json()["created_at"] == first["created_at"]
    grant = httpx.post(f"{api}/v1/likeness/p-obama/grants", headers=auth(keys["acme"]), json={"creator": "c-1"})
    assert grant.status_code == 200 and grant.json()["grants"] == ["c-1"]
    assert verdict(consent_attested="true")["action"] == "allow"
    unattested = verdict()
    assert unattested["action"] == "review" and unattested["categories"][0]["matches"][0]["id"] == "reference-face"
    revoked = httpx.delete(f"{api}/v1/likeness/p-obama/grants/c-1", headers=auth(keys["acme"]))
    assert revoked.status_code == 200 and revoked.json()["grants"] == []
    assert verdict(consent_attested="true")["action"] == "block"  # the very next check sees the revocation

    # another tenant neither sees nor changes acme's registry, and its checks do not match acme's people
    other = httpx.Client(headers=auth(keys["globex"]))
    assert other.get(f"{api}/v1/likeness").json() == []
    assert other.post(f"{api}/v1/likeness/p-obama/grants", json={"creator": "c-1"}).status_code == 404
    assert check(api, keys["globex"], photo, consent_attested="true").json()["action"] == "allow"

    assert httpx.delete(f"{api}/v1/likeness/p-obama", headers=auth(keys["acme"])).status_code == 204
    assert httpx.get(f"{api}/v1/likeness", headers=auth(keys["acme"])).json() == []
    assert verdict(consent_attested="true")["action"] == "allow"  # erased: nobody to match
    trail = audit_records(like_settings, {"p-obama", "img-1"}, timeout=20, want=5)
    events = sorted(r["event"] for r in trail)
    assert events == ["image.verdict", "likeness.enrolled", "likeness.erased", "likeness.granted", "likeness.revoked"]
    image_record = next(r for r in trail if r["event"] == "image.verdict")
    assert len(image_record["content_sha256"]) == 64 and "people=p-obama" in image_record["reason"]


def test_the_command_line_enrols_grants_checks_revokes_and_erases(like_settings: Settings, tmp_path: Path) -> None:
    consent_file = tmp_path / "consent.pdf"
    consent_file.write_bytes(b"%PDF signed")
    tenant, photo = ["--tenant", "cli-co"], str(FACES / "obama.jpg")
    done = genguard(like_settings, "likeness", "enroll", *tenant, "--person", "p-cli", str(FACES / "obama2.jpg"),
                    "--consent-file", str(consent_file))
    assert done.returncode == 0 and "enrolled p-cli in cli-co: 1 photo(s)" in done.stdout, done.stderr
    assert genguard(like_settings, "likeness", "grant", *tenant, "p-cli", "--creator", "c-9").returncode == 0
    assert "grants=c-9" in genguard(like_settings, "likeness", "list", *tenant).stdout
    ok = genguard(like_settings, "check-image", photo, *tenant, "--creator", "c-9", "--consent-attested")
    assert ok.returncode == 0, ok.stdout + ok.stderr  # exit 0: allow
    assert "person p-cli (distance" in ok.stdout and "granted" in ok.stdout
    assert genguard(like_settings, "likeness", "revoke", *tenant, "p-cli", "--creator", "c-9").returncode == 0
    blocked = genguard(like_settings, "check-image", photo, *tenant, "--creator", "c-9", "--json")
    assert blocked.returncode == 2 and '"person_id": "p-cli"' in blocked.stdout  # exit 2: block
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    rejected = genguard(like_settings, "check-image", str(bad), *tenant)
    assert rejected.returncode == 3 and "image_empty" in rejected.stdout
    assert genguard(like_settings, "likeness", "erase", *tenant, "p-cli").returncode == 0
    again = genguard(like_settings, "likeness", "erase", *tenant, "p-cli")
    assert again.returncode != 0 and "person_not_found" in again.stderr
    events = sorted(r["event"] for r in audit_records(like_settings, {"p-cli"}, timeout=20, want=4))
    assert events == ["likeness.enrolled", "likeness.erased", "likeness.granted", "likeness.revoked"]


@pytest.fixture(scope="module")
def worker(like_settings: Settings) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [start_worker(like_settings)]
    yield procs
    stop_all(procs)


def test_a_video_is_blocked_released_and_blocked_again_as_consent_changes(
        api: str, keys: dict[str, str], worker: list, tmp_path: Path) -> None:
    clip = pan_clip(FACES / "obama.jpg", tmp_path / "pan.mp4", seconds=5, size="640x360")  # 10 s: test_likeness.py
    assert enrol(api, keys["acme"], "p-o2", "obama2.jpg", "obama3.jpg").status_code == 201

    def decided(job_id: str) -> dict:
        assert upload_as(job_id).status_code == 202
        return wait_for(api, keys["acme"], job_id, timeout=180)

    def upload_as(job_id: str) -> httpx.Response:
        with clip.open("rb") as f:
            return httpx.post(f"{api}/v1/videos", headers=auth(keys["acme"]), files={"video": ("pan.mp4", f)},
                              data={"creator": "c-1", "job_id": job_id}, timeout=30)

    stamp = time.time_ns()
    blocked = decided(f"face-a-{stamp}")
    assert blocked["status"] == "blocked" and blocked["creator"] == "c-1"
    assert blocked["decision"]["categories"][0]["category"] == "likeness"
    httpx.post(f"{api}/v1/likeness/p-o2/grants", headers=auth(keys["acme"]), json={"creator": "c-1"})
    allowed = decided(f"face-b-{stamp}")
    assert allowed["action"] == "allow", allowed
    revoked_at = time.monotonic()
    httpx.delete(f"{api}/v1/likeness/p-o2/grants/c-1", headers=auth(keys["acme"]))
    again = decided(f"face-c-{stamp}")
    print(f"revocation to the next blocked decision: {time.monotonic() - revoked_at:.1f} s (a whole job)")
    assert again["status"] == "blocked"
