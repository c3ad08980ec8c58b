"""Schemathesis against the OpenAPI schema the real API serves (uvicorn on loopback, the session's
broker and Redis): generated requests, valid and not, never get a 5xx, and every status returned is
one the schema documents for that operation."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from pipeline.prompt.gate import PromptGate
from pipeline.settings import Settings
from tests.helpers import make_key, serve_api


@pytest.fixture(scope="module")
def served(settings: Settings, gate: PromptGate, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    s = settings.model_copy(update={"var_dir": tmp_path_factory.mktemp("schema-var"), "environment": "demo"})
    with serve_api(s, gate) as url:
        yield url


@pytest.fixture(scope="module")
def auth(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(settings, 'acme', ['check', 'submit', 'review', 'audit'])}"}


@pytest.fixture(scope="module")
def api_schema(served: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(httpx.get(f"{served}/openapi.json").json())


def test_no_server_errors_and_only_documented_statuses(api_schema: schemathesis.BaseSchema, served: str,
                                                       auth: dict[str, str]) -> None:
    # one hypothesis run per operation (schemathesis' pytest plugin does not run on pytest 9 yet)
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None, derandomize=True,  # the same cases on every run
                  suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=served, headers=auth, timeout=30,
                                   checks=[not_a_server_error, status_code_conformance])

        call()
