"""schemathesis against the intake's own ``/openapi.json``: every operation, all default checks, 200+ examples,
and every problem ``type`` answered is a page intake serves.

The server is the real one (``python -m services.intake.app`` over the test broker, Redis and registry), so a
fuzzed 202 is a record in Kafka and a fuzzed 5xx is a bug, not a mock's artefact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from schemathesis import Case
from schemathesis.checks import CheckFunction
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.kafka import KafkaConnection, create_topic
from tests.support import fuzz
from tests.support.processes import start_intake

EXAMPLES = 200


@pytest.fixture(scope="module")
def intake_url(
    kafka_bootstrap: str,
    kafka: KafkaConnection,
    redis_url: str,
    registry_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    topic = "fuzz-events"
    create_topic(kafka, topic, 3)
    url, proc = start_intake(
        Path(tmp_path_factory.mktemp("intake")) / "intake.log", topic, kafka_bootstrap, redis_url, registry_url
    )
    try:
        yield url
    finally:
        proc.stop()
        log = proc.tail()
        assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def fuzz_key(redis_url: str) -> str:
    return fuzz.api_key(redis_url, ["events:write", "events:read", "subscriptions:write"])


# The served document must match this one.
DOCUMENT, schema = fuzz.app_schema(create_app(IntakeSettings()))


@schema.parametrize()
@fuzz.fuzz_settings(EXAMPLES)
def test_every_operation_conforms_to_its_openapi_document(case: Case[Any], intake_url: str, fuzz_key: str) -> None:
    # A subscription URL must also resolve to an address the notifier may call (and a tenant holds a bounded
    # number): rules no JSON Schema can state, so a schema-valid subscription may fairly be a 422 or a 409.
    # A batch's items are validated one by one (BatchIn declares them as objects), so a schema-valid batch whose
    # every item is rejected is fairly a 422.
    lenient = (case.method, case.path) in {("POST", "/v1/subscriptions"), ("POST", "/v1/events:batch")}
    excluded: list[CheckFunction] = [positive_data_acceptance] if lenient else []
    fuzz.call_and_validate(case, intake_url, fuzz_key, timeout=30, excluded_checks=excluded)


def test_the_served_document_is_the_fuzzed_one_and_names_every_operation(intake_url: str) -> None:
    assert httpx.get(f"{intake_url}/openapi.json").json() == DOCUMENT
    # A document that lost an operation would fuzz fewer of them and still pass: name them all here.
    assert fuzz.operations(schema) == {
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "POST /v1/events",
        "POST /v1/events:batch",
        "GET /v1/events/{event_id}",
        "POST /v1/events/{event_id}/redeliver",
        "POST /v1/subscriptions",
        "GET /v1/subscriptions",
        "DELETE /v1/subscriptions/{subscription_id}",
        "PATCH /v1/subscriptions/{subscription_id}",
        "POST /v1/subscriptions/{subscription_id}/test",
        "GET /v1/subscriptions/{subscription_id}/deliveries",
    }
