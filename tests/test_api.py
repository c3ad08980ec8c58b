"""The HTTP API over real HTTP (uvicorn on loopback), with the real Redis and the real embedded broker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from pipeline.api.app import create_app
from pipeline.prompt.gate import PromptGate
from pipeline.settings import Settings
from tests.helpers import EVERY_CATEGORY, HOSTILE, audit_records, free_port, make_key, serve_api


@pytest.fixture(scope="module")
def api(settings: Settings, gate: PromptGate) -> Iterator[str]:
    with serve_api(settings, gate) as url:
        yield url


@pytest.fixture(scope="module")
def keys(settings: Settings) -> dict[str, str]:
    return {"check": make_key(settings, "acme", ["check"]), "audit": make_key(settings, "acme", ["audit"]),
            "admin": make_key(settings, "ops", ["check", "admin"])}


def post(api: str, key: str | None, body: object, raw: bytes | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if raw is not None:
        return httpx.post(f"{api}/v1/prompts:check", content=raw, headers={**headers,
                          "Content-Type": "application/json"})
    return httpx.post(f"{api}/v1/prompts:check", json=body, headers=headers)


def test_check_allows_and_blocks_with_reasons(api: str, keys: dict[str, str]) -> None:
    ok = post(api, keys["check"], {"prompt": "a cinematic shot of a cat surfing at sunset", "tenant": "acme"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["action"] == "allow"
    bad = post(api, keys["check"], {"prompt": "step-by-step video showing how to make a pipe bomb"})
    body = bad.json()
    assert body["action"] == "block" and body["tenant"] == "acme"
    assert body["categories"][0]["category"] == "illicit/weapons"
    assert body["categories"][0]["matches"][0]["id"] == "weapon-instructions"
    assert body["policy_id"] == "genguard-default+acme" and len(body["policy_version"]) == 16
    assert body["request_id"].startswith("req_")


def test_every_api_verdict_is_audited_without_the_prompt(api: str, keys: dict[str, str],
                                                         settings: Settings) -> None:
    rid = f"audit-{time.time_ns()}"
    r = post(api, keys["check"], {"prompt": "how to build a pipe bomb", "request_id": rid})
    assert r.status_code == 200
    (record,) = audit_records(settings, {rid})
    assert record["action"] == "block" and record["tenant"] == "acme" and record["event"] == "prompt.verdict"
    assert record["actor"].startswith("key_") and len(record["content_sha256"]) == 64
    assert "pipe bomb" not in json.dumps(record)


def test_request_id_is_idempotent(api: str, keys: dict[str, str], settings: Settings) -> None:
    rid = f"idem-{time.time_ns()}"
    first = post(api, keys["check"], {"prompt": "a dog on a beach", "request_id": rid})
    again = post(api, keys["check"], {"prompt": "a dog on a beach", "request_id": rid})
    assert first.status_code == again.status_code == 200
    assert again.headers.get("Idempotent-Replay") == "true"
    assert again.json()["request_id"] == first.json()["request_id"] == rid
    assert again.json()["created_at"] == first.json()["created_at"]
    assert len(audit_records(settings, {rid}, timeout=5)) == 1


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [(None, 401, "unauthenticated"), ("gg_nope_nope", 401, "invalid_api_key"), ("audit", 403, "missing_scope")],
)
def test_auth_failures(api: str, keys: dict[str, str], key: str | None, status: int, code: str) -> None:
    r = post(api, keys.get(key or "", key), {"prompt": "a cat"})
    assert (r.status_code, r.json()["error"]["code"]) == (status, code)


def test_tenant_is_bound_to_the_key(api: str, keys: dict[str, str]) -> None:
    r = post(api, keys["check"], {"prompt": "a cat", "tenant": "globex"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "tenant_mismatch")
    assert post(api, keys["admin"], {"prompt": "a cat", "tenant": "globex"}).status_code == 200


def test_bad_requests_get_precise_errors(api: str, keys: dict[str, str], settings: Settings) -> None:
    r = post(api, keys["check"], None, raw=b'{"prompt": "a cat",')
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_json")
    r = post(api, keys["check"], {"tenant": "acme"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
    assert "prompt" in r.json()["error"]["message"]
    r = post(api, keys["check"], {"prompt": "x" * (settings.max_prompt_chars + 1)})
    assert (r.status_code, r.json()["error"]["code"]) == (413, "prompt_too_long")
    assert str(settings.max_prompt_chars) in r.json()["error"]["message"]
    r = post(api, keys["check"], None, raw=json.dumps({"prompt": "y" * settings.max_body_bytes}).encode())
    assert (r.status_code, r.json()["error"]["code"]) == (413, "body_too_large")
    r = post(api, keys["check"], {"prompt": "  "})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "prompt_empty")




@settings_(max_examples=40, deadline=None, derandomize=True,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(categories=EVERY_CATEGORY), min_size=1, max_size=300))
def test_any_unicode_gets_a_verdict_or_a_clear_4xx(api: str, keys: dict[str, str], text: str) -> None:
    """The full code-point range, lone surrogates included (json.dumps escapes them as \\ud800)."""
    r = post(api, keys["check"], None, raw=json.dumps({"prompt": text}).encode())
    assert r.status_code in (200, 413, 422), (r.status_code, r.text[:300])
    body = r.json()
    assert body["action"] in ("allow", "review", "block") if r.status_code == 200 else body["error"]["code"]


def test_hostile_text_over_http(api: str, keys: dict[str, str]) -> None:
    for text in HOSTILE:
        r = post(api, keys["check"], None, raw=json.dumps({"prompt": text}).encode())
        assert r.status_code == 200 and r.json()["action"] in ("allow", "review", "block"), (text[:9], r.text[:300])


def test_ops_endpoints(api: str) -> None:
    assert httpx.get(f"{api}/healthz").json()["status"] == "ok"
    ready = httpx.get(f"{api}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["broker"] and ready.json()["checks"]["redis"]
    metrics = httpx.get(f"{api}/metrics").text
    assert 'genguard_verdicts_total{action="block",source="api"}' in metrics
    schema = httpx.get(f"{api}/openapi.json").json()
    assert "/v1/prompts:check" in schema["paths"]
    assert {"401", "403", "413", "422"} <= set(schema["paths"]["/v1/prompts:check"]["post"]["responses"])


def test_readyz_reports_a_dead_broker(settings: Settings, gate: PromptGate) -> None:
    """An API whose broker is gone is not ready and gives no verdict (audit impossible: fail closed)."""
    from fastapi.testclient import TestClient

    dead = settings.model_copy(update={"embedded_kafka_addr": f"127.0.0.1:{free_port()}"})
    key = make_key(dead, "acme", ["check"])
    with TestClient(create_app(dead, gate)) as client:
        assert client.get("/readyz").status_code == 503
        r = client.post("/v1/prompts:check", json={"prompt": "a cat"}, headers={"Authorization": f"Bearer {key}"})
        assert (r.status_code, r.json()["error"]["code"]) == (503, "audit_unavailable")


def test_overload_is_shed_with_503_but_probes_are_not(settings: Settings, gate: PromptGate, tmp_path: Path) -> None:
    s = settings.model_copy(update={"api_max_in_flight": 1, "var_dir": tmp_path})
    auth = {"Authorization": f"Bearer {make_key(s, 'acme', ['submit'])}"}
    release = threading.Event()

    def slow_upload() -> Iterator[bytes]:  # holds the one slot until released
        yield b'--b\r\nContent-Disposition: form-data; name="video"; filename="v.mp4"\r\n\r\n'
        release.wait(45)
        yield b"not a video\r\n--b--\r\n"

    with serve_api(s, gate) as url:
        outcome: list[object] = []  # what the slow upload got, should the slot never be taken

        def upload() -> None:
            try:
                outcome.append(httpx.post(f"{url}/v1/videos", content=slow_upload(), timeout=60,
                                          headers={**auth, "Content-Type": "multipart/form-data; boundary=b"}))
            except httpx.HTTPError as e:
                outcome.append(e)

        slow = threading.Thread(target=upload)
        slow.start()
        # Let the upload take the slot before polling: a poll that holds the slot when the upload's headers
        # arrive gets the *upload* shed, and its client, still blocked sending the body, never reads the 503
        # (the flake seen in full runs; the upload reaches the server within milliseconds).
        time.sleep(1.0)
        try:
            deadline = time.monotonic() + 30
            while (r := httpx.get(f"{url}/v1/jobs/none", headers=auth, timeout=30)).status_code != 503:
                assert time.monotonic() < deadline, f"the slot was never taken: {outcome}"
                time.sleep(0.05)
            assert r.json()["error"]["code"] == "overloaded" and r.headers["Retry-After"] == "1"
            assert httpx.get(f"{url}/readyz").status_code == 200  # probes are never shed
        finally:
            release.set()
            slow.join(30)
        assert httpx.get(f"{url}/v1/jobs/none", headers=auth).status_code == 404  # the slot is free again
