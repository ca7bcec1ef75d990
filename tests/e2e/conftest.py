"""One whole stack (``pipeline up``) shared by the e2e tests that can share it; each keeps to its own events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import running_stack, stack_env


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The stack with the real model behind a plugin that fails marked tickets while a credential file exists
    (``TEST_CREDENTIAL_EXPIRED``; the DLQ story repairs it), and retry ladders short enough for a test."""
    state = tmp_path_factory.mktemp("stack")
    expired = state / "credential-expired"
    expired.touch()
    env = stack_env(
        state / "state",
        INFERENCE_MODEL="tests.plugins:expiring_credential",
        TEST_CREDENTIAL_EXPIRED=str(expired),
        INFERENCE_RUNTIME__RETRY_DELAYS_MS="[200, 400, 800]",
        NOTIFIER_RUNTIME__RETRY_DELAYS_MS="[200, 400, 800]",
    )
    with running_stack(env):
        yield env
