"""Pure parts of the auth library: rate strings, scopes, secret formats, grace periods."""

from __future__ import annotations

import asyncio
import base64

import pytest

from shared.auth import (
    ApiKey,
    AuthError,
    KeyVerifier,
    RateLimit,
    TenantSecrets,
    check_scopes,
    key_hash,
    new_signing_secret,
)


@pytest.mark.parametrize(
    ("text", "count", "period"), [("5/second", 5, 1), ("600/minute", 600, 60), ("10/h", 10, 3600), (" 7 / s ", 7, 1)]
)
def test_rate_strings_parse(text: str, count: int, period: int) -> None:
    assert RateLimit.parse(text) == RateLimit(count, period)


@pytest.mark.parametrize("text", ["", "0/second", "5/day", "five/second", "-1/s"])
def test_bad_rate_strings_are_refused(text: str) -> None:
    with pytest.raises(AuthError):
        RateLimit.parse(text)


def test_scopes_are_checked_and_normalised() -> None:
    assert check_scopes(["events:read", "events:write", "events:read"]) == ["events:read", "events:write"]
    with pytest.raises(AuthError, match="unknown"):
        check_scopes(["events:delete"])


def test_admin_allows_every_scope() -> None:
    key = ApiKey(id="k", tenant="t", scopes=["admin"], rate="1/second")
    assert key.allows("dlq:replay") and key.allows("events:write")
    assert not ApiKey(id="k", tenant="t", scopes=["events:read"], rate="1/second").allows("events:write")


def test_signing_secrets_are_whsec_and_32_random_bytes() -> None:
    secret = new_signing_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != new_signing_secret()


def test_the_previous_secret_signs_only_during_its_grace_period() -> None:
    rotated = TenantSecrets(current="whsec_new", previous="whsec_old", previous_until_ms=10_000)
    assert rotated.valid(now_ms=9_999) == ["whsec_new", "whsec_old"]
    assert rotated.valid(now_ms=10_000) == ["whsec_new"]


class _Keys:
    """The one Redis call ``KeyVerifier`` makes, over a dict, counting the round trips."""

    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}
        self.gets = 0

    async def get(self, name: str) -> bytes | None:
        self.gets += 1
        return self.stored.get(name)


def test_a_found_key_is_remembered_for_the_ttl_and_a_revocation_lands_after_it() -> None:
    client, now = _Keys(), [100.0]
    record = ApiKey(id="k1", tenant="acme", scopes=["events:write"], rate="10/second")
    client.stored[f"auth:key:{key_hash('secret')}"] = record.model_dump_json().encode()
    verifier = KeyVerifier(client, ttl_s=5, clock=lambda: now[0])  # type: ignore[arg-type]

    async def scenario() -> list[ApiKey | None]:
        seen = [await verifier.verify("secret"), await verifier.verify("secret")]
        client.stored.clear()  # revoked
        now[0] += 4.9
        seen.append(await verifier.verify("secret"))
        now[0] += 0.2
        seen.append(await verifier.verify("secret"))
        return seen

    first, second, within, after = asyncio.run(scenario())
    assert first == second == within == record and after is None
    assert client.gets == 2


def test_unknown_keys_are_never_remembered_and_ttl_zero_always_asks() -> None:
    client = _Keys()
    remembering = KeyVerifier(client, ttl_s=5)  # type: ignore[arg-type]
    asyncio.run(remembering.verify("guess"))
    record = ApiKey(id="k2", tenant="acme", scopes=["events:write"], rate="10/second")
    client.stored[f"auth:key:{key_hash('guess')}"] = record.model_dump_json().encode()
    assert asyncio.run(remembering.verify("guess")) == record  # created a moment ago: works at once
    asking = KeyVerifier(client, ttl_s=0)  # type: ignore[arg-type]
    for _ in range(3):
        asyncio.run(asking.verify("guess"))
    assert client.gets == 5
