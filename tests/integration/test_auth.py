"""API keys, tenant secrets and the token bucket against a real Redis; the `pipeline keys` CLI contract."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from shared.auth import KeyStore, RateLimiter
from tests.support.processes import REPO


@pytest.fixture
def store(redis_url: str) -> KeyStore:
    return KeyStore.from_url(redis_url)


def test_a_created_key_verifies_and_is_stored_only_as_a_hash(store: KeyStore, unique: Callable[[str], str]) -> None:
    tenant = unique("t")
    key, record = store.create(tenant, ["events:write", "events:read"], "50/second", label="crm")
    found = store.verify(key)
    assert found is not None and found.tenant == tenant and found.scopes == ["events:read", "events:write"]
    assert found.rate == "50/second"
    client = store.redis
    for name in client.scan_iter("auth:*"):
        assert key.encode() not in (client.dump(name) or b""), name
    assert store.verify(key + "x") is None
    assert record.id in {r.id for r in store.list()}


def test_a_revoked_key_no_longer_verifies(store: KeyStore, unique: Callable[[str], str]) -> None:
    key, record = store.create(unique("t"), ["events:read"], "1/second")
    store.revoke(record.id)
    assert store.verify(key) is None
    assert record.id not in {r.id for r in store.list()}


def test_a_tenants_secret_comes_with_its_first_key_and_survives_a_second(
    store: KeyStore, unique: Callable[[str], str]
) -> None:
    tenant = unique("t")
    store.create(tenant, ["events:read"], "1/second")
    first = store.secrets(tenant)
    store.create(tenant, ["events:write"], "1/second")
    assert store.secrets(tenant) == first and first.current.startswith("whsec_")


def test_a_rotation_keeps_the_old_secret_valid_for_the_grace_period(
    store: KeyStore, unique: Callable[[str], str]
) -> None:
    tenant = unique("t")
    store.create(tenant, ["events:read"], "1/second")
    old = store.secrets(tenant).current
    rotated = store.rotate(tenant, grace_s=3600)
    assert rotated.current != old and store.secrets(tenant).valid() == [rotated.current, old]


def test_provisioning_a_known_key_twice_keeps_one_record(store: KeyStore, unique: Callable[[str], str]) -> None:
    key_id = unique("dev")
    store.create("dev", ["admin"], "1000/second", key="first-key", key_id=key_id)
    store.create("dev", ["admin"], "1000/second", key="second-key", key_id=key_id)
    assert store.verify("first-key") is None
    assert store.verify("second-key") is not None
    assert [r.id for r in store.list()].count(key_id) == 1


def test_a_burst_over_one_keys_limit_is_throttled_while_another_key_is_not(
    store: KeyStore, redis_url: str, unique: Callable[[str], str]
) -> None:
    _, slow = store.create(unique("t"), ["events:write"], "5/second")
    _, other = store.create(unique("t"), ["events:write"], "1000/second")

    async def burst() -> tuple[list[bool], list[bool], list[dict[str, str]]]:
        # Two clients, as two intake processes: the bucket lives in Redis, not in either.
        first, second = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
        try:
            limiters = [RateLimiter(first), RateLimiter(second)]
            slow_calls = [limiters[i % 2].take(slow) for i in range(50)]
            other_calls = [limiters[i % 2].take(other) for i in range(50)]
            results = await asyncio.gather(*slow_calls, *other_calls)
        finally:
            await first.aclose()
            await second.aclose()
        return (
            [d.allowed for d in results[:50]],
            [d.allowed for d in results[50:]],
            [d.headers() for d in results[:50] if not d.allowed],
        )

    slow_allowed, other_allowed, refused = asyncio.run(burst())
    assert 5 <= sum(slow_allowed) <= 6  # the bucket's 5, plus at most one refilled during the burst
    assert all(other_allowed)
    assert refused and all(h["Retry-After"] == "1" and h["X-RateLimit-Limit"] == "5" for h in refused)
    assert all(h["X-RateLimit-Remaining"] == "0" for h in refused)


def pipeline_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIPELINE_REDIS_URL": redis_url}
    return subprocess.run(
        [sys.executable, "-m", "stack.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_keys_create_prints_the_key_alone_on_stdout_and_details_on_stderr(
    store: KeyStore, redis_url: str, unique: Callable[[str], str]
) -> None:
    tenant = unique("cli")
    created = pipeline_cli(redis_url, "keys", "create", "--tenant", tenant, "--scopes", "events:write", "--rate", "5/s")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n" and key.startswith("pk_")
    record = store.verify(key)
    assert record is not None and record.tenant == tenant and f"key id {record.id}" in created.stderr
    listed = pipeline_cli(redis_url, "keys", "list", "--json")
    assert listed.returncode == 0 and record.id in listed.stdout and key not in listed.stdout
    assert pipeline_cli(redis_url, "keys", "revoke", record.id).returncode == 0
    assert store.verify(key) is None


def test_keys_create_with_an_unknown_scope_exits_2(redis_url: str, unique: Callable[[str], str]) -> None:
    refused = pipeline_cli(redis_url, "keys", "create", "--tenant", unique("cli"), "--scopes", "events:delete")
    assert refused.returncode == 2 and refused.stdout == "" and "unknown" in refused.stderr
