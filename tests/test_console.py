"""The review console in a real browser: Debian's Chromium driven by Playwright, against the real API
(uvicorn), broker (Tansu), Redis and a worker process, on real footage with real speech.

Set GENGUARD_SCREENSHOTS=docs to write the README's screenshots; otherwise they go to a temp dir.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from playwright.sync_api import APIResponse, Browser, Page, expect, sync_playwright

from pipeline.prompt.gate import PromptGate
from pipeline.settings import Settings
from tests.helpers import SINTEL, ffmpeg, make_key, serve_api, start_worker, stop_all, wait_for

CHROMIUM = "/usr/bin/chromium"
SAID = "he punched the man and kicked him on the ground"  # the default policy holds this for review (violence)


@pytest.fixture(scope="module")
def console_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.model_copy(update={"var_dir": tmp_path_factory.mktemp("console-var"), "environment": "demo",
                                       "worker_name": f"console-{time.time_ns()}"})


@pytest.fixture(scope="module")
def api(console_settings: Settings, gate: PromptGate) -> Iterator[str]:
    worker = start_worker(console_settings)
    with serve_api(console_settings, gate) as url:
        yield url
    stop_all([worker])


@pytest.fixture(scope="module")
def keys(console_settings: Settings) -> dict[str, str]:
    return {"acme": make_key(console_settings, "acme", ["review", "submit"]),
            "globex": make_key(console_settings, "globex", ["review"]),
            "check-only": make_key(console_settings, "acme", ["check"]),
            "senior": make_key(console_settings, "acme", ["review", "appeal"]),
            "senior-2": make_key(console_settings, "acme", ["appeal"]),
            "policy-owner": make_key(console_settings, "acme", ["policy"])}


@pytest.fixture(scope="module")
def spoken_violence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sintel's picture (real footage, so the release's invisible mark holds) with real speech at 1 s."""
    d = tmp_path_factory.mktemp("console-media")
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(d / "said.wav"), SAID], check=True)
    ffmpeg("-i", str(SINTEL), "-i", str(d / "said.wav"), "-filter_complex", "[1:a]adelay=1000|1000,apad[a]",
           "-map", "0:v", "-map", "[a]", "-c:v", "copy", "-c:a", "aac", "-t", "5", str(d / "violence.mp4"))
    return d / "violence.mp4"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def held_job(api: str, key: str, video: Path) -> str:
    with video.open("rb") as f:
        r = httpx.post(f"{api}/v1/videos", headers={"Authorization": f"Bearer {key}"},
                       files={"video": ("v.mp4", f, "video/mp4")}, data={"creator": "c-console"}, timeout=30)
    job_id = r.json()["job_id"]
    assert wait_for(api, key, job_id, timeout=180)["status"] == "review"
    return job_id


def sign_in(page: Page, api: str, key: str) -> None:
    page.goto(f"{api}/console/login")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{api}/console")


def decide_in(page: Page, api: str, job_id: str, choice: str, reason: str) -> None:
    """Open the job, choose, give the reason and submit, as a reviewer would with the mouse."""
    page.goto(f"{api}/console/jobs/{job_id}")
    page.check(f"input[value={choice}]")
    page.fill("#reason", reason)
    page.click("#decide button[type=submit]")


def post_with_token(page: Page, url: str, **form: str) -> APIResponse:
    """A form post carrying the page's own CSRF token: only authorisation can stop it."""
    return page.request.post(url, form={**form, "csrf": page.locator("input[name=csrf]").first.get_attribute("value")})


def shots() -> Path:
    out = Path(os.environ.get("GENGUARD_SCREENSHOTS", "") or "/tmp/genguard-console-shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def released(api: str, key: str, job_id: str) -> None:
    deadline = time.monotonic() + 120
    while httpx.get(f"{api}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()["status"] \
            != "released":
        assert time.monotonic() < deadline, "the approved job was not released"
        time.sleep(0.3)


def test_a_reviewer_signs_in_filters_sees_the_evidence_and_approves(api: str, keys: dict[str, str],
                                                                    spoken_violence: Path, browser: Browser) -> None:
    job_id = held_job(api, keys["acme"], spoken_violence)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api}/console")
    expect(page).to_have_url(f"{api}/console/login")  # no cookie: the sign-in page
    sign_in(page, api, keys["acme"])
    page.goto(f"{api}/console?category=violence&source=transcript")
    expect(page.locator(f"#queue a:text('{job_id}')")).to_be_visible()
    page.screenshot(path=str(shots() / "console-queue.png"), full_page=True)
    page.goto(f"{api}/console?category=sexual")
    expect(page.locator(f"#queue a:text('{job_id}')")).to_have_count(0)
    page.goto(f"{api}/console?source=transcript")
    page.click(f"#queue a:text('{job_id}')")
    line = page.locator("p.line.flagged")
    expect(line).to_contain_text("kick")  # Whisper hears espeak's "punched" as "hunched"
    expect(line.locator(".cats")).to_contain_text("violence")
    mark = page.locator(".timeline .mark.transcript").first
    start = float(mark.get_attribute("data-start"))
    assert 0.5 <= start <= 2.5  # the sentence starts at 1 s
    left = float(mark.evaluate("m => parseFloat(m.style.left)"))
    assert abs(left - 100 * start / 5.0) < 5  # drawn where it was said on a 5 s clip
    mark.click()
    assert float(page.locator("#video").get_attribute("data-sought")) == start  # seeks the player there
    frame = page.locator("button.reveal").first
    expect(frame).to_have_class("reveal veiled")
    frame.click()
    expect(frame).to_have_class("reveal")  # revealed by a click
    assert page.locator("#video").evaluate("v => v.muted")
    part = page.request.get(f"{api}/console/jobs/{job_id}/video", headers={"Range": "bytes=100-199"})
    assert part.status == 206 and len(part.body()) == 100  # the player can seek
    page.screenshot(path=str(shots() / "console-job.png"), full_page=True)
    page.check("input[value=approve]")  # on the page already: the reviewer looked before deciding
    page.fill("#reason", "a staged fight in an animated film")
    page.click("#decide button[type=submit]")
    expect(page.locator("#status")).to_have_text("allowed")
    released(api, keys["acme"], job_id)


def test_the_whole_review_works_from_the_keyboard(api: str, keys: dict[str, str], spoken_violence: Path,
                                                  browser: Browser) -> None:
    job_id = held_job(api, keys["acme"], spoken_violence)
    page = browser.new_page()
    page.goto(f"{api}/console/login")
    expect(page.locator("#api_key")).to_be_focused()  # autofocus lands a frame after load: typing before lost keys
    page.keyboard.type(keys["acme"])
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{api}/console")
    rows = page.locator("#queue tr[data-href]")
    index = [r.get_attribute("data-href") for r in rows.all()].index(f"/console/jobs/{job_id}")
    for _ in range(index + 1):
        page.keyboard.press("j")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{api}/console/jobs/{job_id}")
    page.keyboard.press("v")
    expect(page.locator("#veil")).to_have_class("veil revealed")
    page.keyboard.press("e")
    page.keyboard.type("unsure: senior please")
    page.keyboard.press("Control+Enter")
    expect(page.locator(".facts")).to_contain_text("escalated")
    expect(page.locator("#status")).to_have_text("review")  # escalated jobs stay held
    page.keyboard.press("a")
    page.keyboard.type("boxing scene, fine")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_have_text("allowed")


def test_no_entry_without_a_valid_session_csrf_token_or_tenant(api: str, keys: dict[str, str], browser: Browser,
                                                               console_settings: Settings) -> None:
    page = browser.new_page()
    page.goto(f"{api}/console/login")
    page.fill("#api_key", keys["check-only"])
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("lacks the 'review' scope")
    sign_in(page, api, keys["globex"])
    job_ids = [k.decode().rsplit(":", 1)[1] for k in redis.Redis.from_url(console_settings.redis_url).scan_iter(
        f"{console_settings.redis_prefix}:job:*") if not k.endswith(b":parts")]
    assert job_ids  # acme's jobs from the tests above
    response = page.goto(f"{api}/console/jobs/{job_ids[0]}")
    assert response is not None and response.status == 404  # another tenant's job does not exist for you
    forged = page.request.post(f"{api}/console/jobs/{job_ids[0]}/decide", form={"decision": "approve", "reason": "x"})
    assert forged.status == 403 and forged.json()["error"]["code"] == "csrf"  # no CSRF field at all
    wrong = page.request.post(f"{api}/console/jobs/{job_ids[0]}/decide",
                              form={"decision": "approve", "reason": "forged", "csrf": "not-the-token"})
    assert wrong.status == 403 and wrong.json()["error"]["code"] == "csrf"
    client = redis.Redis.from_url(console_settings.redis_url)
    for k in client.scan_iter(f"{console_settings.redis_prefix}:console:*"):
        client.pexpire(k, 1)  # let every console session expire, as its time to live would
    time.sleep(0.2)
    page.goto(f"{api}/console")
    expect(page).to_have_url(f"{api}/console/login")


def test_a_block_is_appealed_and_overturned_by_another_senior_reviewer(
        api: str, keys: dict[str, str], spoken_violence: Path, browser: Browser, console_settings: Settings) -> None:
    job_id = held_job(api, keys["acme"], spoken_violence)
    first = browser.new_page()
    sign_in(first, api, keys["senior"])
    decide_in(first, api, job_id, "block", "looks like real assault")
    expect(first.locator("#status")).to_have_text("blocked")
    expect(first.locator("#strikes")).to_contain_text("1 strike")
    auth = {"Authorization": f"Bearer {keys['acme']}"}
    appealed = httpx.post(f"{api}/v1/jobs/{job_id}/appeal", headers=auth, json={"reason": "it is Sintel, a film"})
    assert appealed.status_code == 200 and appealed.json()["appeal"]["state"] == "open", appealed.text
    again = httpx.post(f"{api}/v1/jobs/{job_id}/appeal", headers=auth, json={"reason": "once more"})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "appeal_exists")
    first.goto(f"{api}/console")
    expect(first.locator(f"#appeals a:text('{job_id}')")).to_be_visible()
    first.goto(f"{api}/console/jobs/{job_id}")
    expect(first.locator("#not-yours")).to_be_visible()  # the first reviewer cannot decide the appeal
    own = post_with_token(first, f"{api}/console/jobs/{job_id}/appeal", decision="overturn", reason="my own call")
    assert own.status == 403 and own.json()["error"]["code"] == "own_decision"
    second = browser.new_page()
    sign_in(second, api, keys["senior-2"])
    decide_in(second, api, job_id, "overturn", "animated film, not real")
    expect(second.locator("#appeal-state")).to_contain_text("overturned")
    expect(second.locator("#strikes")).to_contain_text("0 strike")  # the overturn took the strike back
    released(api, keys["acme"], job_id)
    assert httpx.get(f"{api}/v1/jobs/{job_id}", headers=auth).json()["appeal"]["state"] == "overturned"
    second.goto(f"{api}/console/ops")
    acme = second.locator("section.ops[data-tenant=acme]")
    expect(acme.locator(".overturn")).to_have_text("100%")
    second.screenshot(path=str(shots() / "console-ops.png"), full_page=True)
    scraped = httpx.get(f"{api}/metrics").text
    assert 'genguard_review_overturn_ratio{tenant="acme"} 1.0' in scraped
    assert 'genguard_review_decisions_today{action="block",tenant="acme",who="review"} 1.0' in scraped


def test_a_policy_owner_reads_but_cannot_decide(api: str, keys: dict[str, str], spoken_violence: Path,
                                                browser: Browser) -> None:
    job_id = held_job(api, keys["acme"], spoken_violence)
    page = browser.new_page()
    sign_in(page, api, keys["policy-owner"])
    page.goto(f"{api}/console/jobs/{job_id}")
    expect(page.locator("p.line.flagged")).to_be_visible()
    expect(page.locator("#decide")).to_have_count(0)
    tried = post_with_token(page, f"{api}/console/jobs/{job_id}/decide", decision="approve", reason="not mine")
    assert tried.status == 403 and tried.json()["error"]["code"] == "missing_scope"
