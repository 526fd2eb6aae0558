"""Property-based checks with schemathesis, generated from our own OpenAPI document and sent
over real HTTP (uvicorn on loopback): whatever a client sends to any endpoint, the answer is
never a 5xx, its status is documented, and its body matches the documented schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from cats_dogs_other.api.app import create_app
from tests.api.support import override_principal, serve


@pytest.fixture(scope="module")
def api_schema(make_settings, module_issuer) -> Iterator[schemathesis.BaseSchema]:
    app = create_app(make_settings(), transport=module_issuer.transport)
    override_principal(app)  # fuzz the bodies; test_auth.py covers the tokens
    with serve(app) as (host, port):
        yield schemathesis.openapi.from_url(f"http://{host}:{port}/openapi.json")


def test_no_request_causes_a_server_error(api_schema: schemathesis.BaseSchema) -> None:
    operations = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), f"our OpenAPI document is invalid: {result.err()}"
        operations.append(result.ok())
    assert {op.path for op in operations} >= {"/upload", "/upload/batch", "/model", "/ready"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                checks=[not_a_server_error, status_code_conformance, response_schema_conformance]
            )

        check()
