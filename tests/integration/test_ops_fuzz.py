"""schemathesis against the ops API's own ``/openapi.json``: every operation, all default checks, and every
problem ``type`` answered is a page ops serves.

The server is the real one (``python -m services.ops.app`` over the test broker, Redis and registry, with a small
DLQ to read and replay), so an undeclared answer or a 5xx is a bug of the API or of its document.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from schemathesis import Case

from services.ops.app import create_app
from services.ops.settings import OpsSettings
from shared.kafka import KafkaConnection
from tests.integration.test_ops import ops_process
from tests.integration.test_replay import fill_dlq
from tests.support import fuzz

# Fewer than intake's: each answer reads the DLQ topic (and a replay writes), so an example costs a broker round.
EXAMPLES = 60


@pytest.fixture(scope="module")
def ops_url(
    kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    dlq = fill_dlq(kafka, registry_url, redis_url, dependency=5, garbage=3)
    logs = Path(tmp_path_factory.mktemp("ops"))
    with ops_process(dlq, logs) as (url, _process):
        yield url
    log = (logs / "ops.log").read_text(errors="replace")
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def fuzz_key(redis_url: str) -> str:
    return fuzz.api_key(redis_url, ["admin"])


# The served document must match this one.
DOCUMENT, schema = fuzz.app_schema(create_app(OpsSettings()))


@schema.parametrize()
@fuzz.fuzz_settings(EXAMPLES)
def test_every_operation_conforms_to_its_openapi_document(case: Case[Any], ops_url: str, fuzz_key: str) -> None:
    fuzz.call_and_validate(case, ops_url, fuzz_key, timeout=60)


def test_the_served_document_is_the_fuzzed_one_and_names_every_operation(ops_url: str) -> None:
    assert httpx.get(f"{ops_url}/openapi.json").json() == DOCUMENT
    assert fuzz.operations(schema) == {
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /v1/dlqs",
        "GET /v1/dlqs/{service}",
        "GET /v1/dlqs/{service}/records",
        "GET /v1/dlqs/{service}/records/{partition}/{offset}",
        "POST /v1/dlqs/{service}/replays",
        "GET /v1/replays/{replay_id}",
        "GET /v1/audit",
        "GET /v1/stats",
    }
