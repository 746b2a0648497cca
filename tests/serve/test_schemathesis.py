"""Property-based requests over the OpenAPI schema (schemathesis): no input makes the service answer 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from serve.app import create_app
from serve.auth import Role
from tests.serve.conftest import ingest_demo, make_settings, seed_store

HEADERS: list[dict[str, str]] = []


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = make_settings(
        tmp_path_factory.mktemp("schemathesis"),
        agent={"max_message_chars": 400},
        ingest={"max_document_bytes": 20_000},
    )
    customers = seed_store(config)
    ingest_demo(config)
    app = create_app(config)
    keys = app.state.services.keys
    HEADERS.clear()
    for role, customer in ((Role.customer, customers[0]), (Role.content_owner, None), (Role.engineer, None)):
        secret = keys.create(role=role, customer_id=customer).secret
        HEADERS.append({"Authorization": f"Bearer {secret}"})
    HEADERS.append({})  # and without credentials
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_input_gives_a_server_error(api_schema: Any) -> None:
    # Driven through hypothesis directly: schemathesis' pytest plugin does not load under pytest 9.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def no_server_error(case: Any) -> None:
            for headers in HEADERS:
                response = case.call(headers=headers)
                assert response.status_code < 500, (
                    case.method,
                    case.formatted_path,
                    response.status_code,
                    response.text[:300],
                )
                if response.status_code >= 400:
                    body = response.json()
                    assert body["error"]["message"] and "request_id" in body

        no_server_error()
