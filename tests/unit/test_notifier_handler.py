"""The notifier handler's decisions per record, with a scripted HTTP client and an in-memory store (no
broker): mixed endpoint outcomes, the retry schedule, open circuits, 410, earlier deliveries, replays, and Redis
down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.notifier.adapters.store import Known, Mark
from services.notifier.domain import WebhookReply
from services.notifier.handlers import NotifierHandler
from services.notifier.settings import NotifierSettings
from shared.auth import TenantSecrets, new_signing_secret
from shared.codec import EventCodec
from shared.errors import DependencyUnavailable, PermanentError, RetryableError
from shared.events import EventInferred, NotificationDelivered
from shared.runtime import InputRecord, Output, PartitionBatch, RecordResult
from shared.settings import REPO_ROOT
from shared.subscriptions import DeliveryAttempt, Subscription
from tests.support.factories import make_event_inferred

OUT = "notifications.delivered.v1"


class ScriptedClient:
    """Answers per URL from a script; counts calls."""

    def __init__(self, answers: dict[str, list[WebhookReply]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[WebhookReply, float]:
        self.calls.append(url)
        script = self.answers[url]
        return (script.pop(0) if len(script) > 1 else script[0]), 0.001


class MemoryStore:
    def __init__(self, subscriptions: list[Subscription], fail: bool = False) -> None:
        self.subscriptions = subscriptions
        self.marks: dict[tuple[str, str], dict[str, Mark]] = {}
        self.fail = fail
        self.disabled: list[str] = []
        self.attempts: list[tuple[str, DeliveryAttempt]] = []

    async def load(self, tenants: Iterable[str], events: Iterable[tuple[str, str]]) -> Known:
        if self.fail:
            raise DependencyUnavailable("redis: connection refused")
        secrets, tenants = TenantSecrets(current=new_signing_secret()), list(tenants)
        return Known(
            {t: self.subscriptions for t in tenants},
            {t: secrets for t in tenants},
            {e: dict(self.marks.get(e, {})) for e in events},
        )

    async def mark(self, tenant: str, event_id: str, url: str, mark: Mark) -> None:
        self.marks.setdefault((tenant, event_id), {})[url] = mark

    async def disable(self, tenant: str, subscription_id: str, reason: str) -> bool:
        self.disabled.append(subscription_id)
        return True

    def attempt(self, tenant: str, subscription_id: str, attempt: DeliveryAttempt) -> None:
        self.attempts.append((subscription_id, attempt))


def subscription(url: str, sub_id: str) -> Subscription:
    return Subscription(id=sub_id, url=url, event_types=["*"], created_at=datetime.now(UTC))


def handler(client: ScriptedClient, store: MemoryStore, **settings: Any) -> NotifierHandler:
    codec = EventCodec.connect("mock://notifier", REPO_ROOT / "schemas")
    # A schedule of immediate retries unless a test names its own: a retry pass may call again at once.
    settings = {"retry_schedule_s": [0, 0, 0], **settings}
    config = NotifierSettings(instance=0, output_topic=OUT, circuit_failures=2, circuit_cooldown_s=60, **settings)
    return NotifierHandler(config, codec, store, client)  # type: ignore[arg-type]


def record(event: EventInferred, offset: int = 0, headers: list[tuple[str, bytes]] | None = None) -> InputRecord:
    return InputRecord("events.inferred.v1", 0, offset, b"k", b"v", headers or [], 0, event)


def run(h: NotifierHandler, *records: InputRecord) -> list[RecordResult]:
    return asyncio.run(h([PartitionBatch("events.inferred.v1", 0, list(records))]))


def receipts(h: NotifierHandler, outputs: Iterable[Output]) -> list[NotificationDelivered]:
    found = []
    for out in outputs:
        event = h.codec.decode_value(OUT, out.value, event_type=NotificationDelivered)
        assert isinstance(event, NotificationDelivered)
        found.append(event)
    return found


def event(**overrides: Any) -> EventInferred:
    return EventInferred.model_validate({**make_event_inferred(), **overrides})


def test_one_endpoint_delivered_and_one_failing_retries_with_the_first_receipt_attached() -> None:
    client = ScriptedClient(
        {"https://a.example/h": [WebhookReply(200)], "https://b.example/h": [WebhookReply(503, excerpt="busy")]}
    )
    store = MemoryStore([subscription("https://a.example/h", "a"), subscription("https://b.example/h", "b")])
    h = handler(client, store)
    [result] = run(h, record(event(event_id="e1")))
    assert isinstance(result, RetryableError) and not result.counts_attempt  # the schedule counts, not the level
    assert "https://b.example/h: HTTP 503: busy" in str(result)
    assert [(r.endpoint, r.status) for r in receipts(h, result.outputs)] == [("https://a.example/h", "delivered")]
    # The retry calls only the endpoint still owed, and is then done with its own receipt alone.
    client.answers["https://b.example/h"] = [WebhookReply(200)]
    [again] = run(h, record(event(event_id="e1"), headers=[("retry.attempt", b"1")]))
    assert isinstance(again, list)
    assert [(r.endpoint, r.attempts) for r in receipts(h, again)] == [("https://b.example/h", 2)]
    assert client.calls.count("https://a.example/h") == 1


def test_a_permanent_refusal_beside_a_retry_is_not_called_again_and_ends_in_the_dlq() -> None:
    client = ScriptedClient(
        {"https://a.example/h": [WebhookReply(400)], "https://b.example/h": [WebhookReply(500), WebhookReply(200)]}
    )
    h = handler(
        client, MemoryStore([subscription("https://a.example/h", "a"), subscription("https://b.example/h", "b")])
    )
    [first] = run(h, record(event(event_id="e2")))
    assert isinstance(first, RetryableError)
    [second] = run(h, record(event(event_id="e2"), headers=[("retry.attempt", b"1")]))
    assert isinstance(second, PermanentError) and "https://a.example/h: HTTP 400" in str(second)
    assert [r.status for r in receipts(h, second.outputs)] == ["delivered"]
    assert client.calls.count("https://a.example/h") == 1


def test_an_open_circuit_parks_without_a_call_and_a_failed_probe_uses_no_entry_of_the_schedule() -> None:
    client = ScriptedClient({"https://down.example/h": [WebhookReply(None, error="refused")]})
    store = MemoryStore([subscription("https://down.example/h", "d")])
    h = handler(client, store)
    results = run(h, *(record(event(event_id=f"e{i}", subject=f"s{i}"), offset=i) for i in range(4)))
    assert all(isinstance(r, RetryableError) and not r.counts_attempt for r in results)
    assert len(client.calls) == 2  # two real calls opened the circuit, the others were parked
    calls_made = {e: m["https://down.example/h"].attempts for (_, e), m in store.marks.items()}
    assert calls_made == {"e0": 1, "e1": 1}
    circuit = h.circuits.of("https://down.example:443")
    circuit.opened_at = -1e9  # the cool-down is over: the next record is the probe
    [probe] = run(h, record(event(event_id="e9")))
    assert isinstance(probe, RetryableError) and not probe.counts_attempt and len(client.calls) == 3
    [probe_mark] = [m["https://down.example/h"] for (_, e), m in store.marks.items() if e == "e9"]
    assert probe_mark.state == "retrying" and probe_mark.attempts == 0


def test_every_endpoint_delivered_before_means_no_call_but_the_receipts_again() -> None:
    client = ScriptedClient({"https://a.example/h": [WebhookReply(204)]})
    store = MemoryStore([subscription("https://a.example/h", "a")])
    h = handler(client, store)
    [first] = run(h, record(event(event_id="e3")))
    assert isinstance(first, list)
    replay = [("replay.id", b"r-1")]
    [again] = run(h, record(event(event_id="e3"), headers=replay))
    assert isinstance(again, list) and [r.http_status for r in receipts(h, again)] == [204]
    assert len(client.calls) == 1


def test_a_replay_calls_again_an_endpoint_that_refused_in_an_earlier_generation() -> None:
    client = ScriptedClient({"https://a.example/h": [WebhookReply(422), WebhookReply(200)]})
    h = handler(client, MemoryStore([subscription("https://a.example/h", "a")]))
    [first] = run(h, record(event(event_id="e4")))
    assert isinstance(first, PermanentError)
    [replayed] = run(h, record(event(event_id="e4"), headers=[("replay.id", b"r-2")]))
    assert isinstance(replayed, list) and len(client.calls) == 2


def test_each_call_to_a_subscription_is_recorded_for_its_deliveries_list_and_a_callback_url_is_not() -> None:
    client = ScriptedClient(
        {"https://a.example/h": [WebhookReply(503, excerpt="busy")], "https://cb.example/h": [WebhookReply(200)]}
    )
    store = MemoryStore([subscription("https://a.example/h", "a")])
    run(handler(client, store), record(event(event_id="e7", callback_url="https://cb.example/h")))
    [(sub_id, attempt)] = store.attempts
    assert (sub_id, attempt.event_id, attempt.endpoint) == ("a", "e7", "https://a.example/h")
    assert (attempt.outcome, attempt.http_status, attempt.error) == ("retry", 503, "HTTP 503: busy")
    assert attempt.latency_ms is not None and attempt.latency_ms >= 0


def test_410_disables_the_subscription_and_ends_with_a_gone_receipt_not_a_dead_letter() -> None:
    client = ScriptedClient({"https://a.example/h": [WebhookReply(410)]})
    store = MemoryStore([subscription("https://a.example/h", "a")])
    h = handler(client, store)
    [result] = run(h, record(event()))
    assert isinstance(result, list) and store.disabled == ["a"]
    assert [(r.status, r.http_status) for r in receipts(h, result)] == [("gone", 410)]


def test_410_from_a_callback_url_is_final_too_even_for_a_replay() -> None:
    client = ScriptedClient({"https://cb.example/h": [WebhookReply(410)]})
    store = MemoryStore([])
    h = handler(client, store)
    [result] = run(h, record(event(event_id="e5", callback_url="https://cb.example/h")))
    assert isinstance(result, list) and [r.status for r in receipts(h, result)] == ["gone"]
    assert store.disabled == []  # no subscription to disable
    [replayed] = run(
        h, record(event(event_id="e5", callback_url="https://cb.example/h"), headers=[("replay.id", b"r")])
    )
    assert isinstance(replayed, list) and [r.status for r in receipts(h, replayed)] == ["gone"]
    assert len(client.calls) == 1


def test_retry_after_later_than_the_schedule_sets_the_wait() -> None:
    client = ScriptedClient({"https://a.example/h": [WebhookReply(429, retry_after_s=7)]})
    store = MemoryStore([subscription("https://a.example/h", "a")])
    before = time.time() * 1000
    [result] = run(handler(client, store), record(event(event_id="e6")))
    [mark] = store.marks[(event().tenant, "e6")].values()
    assert mark.next_at_ms is not None and 7000 <= mark.next_at_ms - before <= 8000
    assert isinstance(result, RetryableError) and result.delay_ms == 5000  # the first 5 s leg of the 7 s wait


def test_the_schedule_indexes_calls_by_the_endpoints_count_then_the_dlq() -> None:
    client = ScriptedClient({"https://a.example/h": [WebhookReply(503)]})
    store = MemoryStore([subscription("https://a.example/h", "a")])
    h = handler(client, store, retry_schedule_s=[10, 20], retry_jitter=0)
    h.circuits.threshold = 10  # three failed calls in a row: not a circuit test
    key, url = (event().tenant, "e7"), "https://a.example/h"

    def due_now() -> None:  # the wait is over (instead of sleeping through it)
        store.marks[key][url] = store.marks[key][url].model_copy(update={"next_at_ms": 0})

    [first] = run(h, record(event(event_id="e7")))
    mark = store.marks[key][url]
    assert isinstance(first, RetryableError) and mark.attempts == 1
    assert mark.next_at_ms is not None and mark.next_at_ms - mark.at_ms == 10_000
    # Back from a retry level before it is due: no call, another leg, no attempt used.
    [early] = run(h, record(event(event_id="e7"), headers=[("retry.attempt", b"0")]))
    assert isinstance(early, RetryableError) and not early.counts_attempt and len(client.calls) == 1
    assert early.delay_ms is not None and early.delay_ms <= 10_000
    due_now()
    [second] = run(h, record(event(event_id="e7")))
    mark = store.marks[key][url]
    assert isinstance(second, RetryableError) and mark.attempts == 2 and mark.next_at_ms == mark.at_ms + 20_000
    due_now()
    [last] = run(h, record(event(event_id="e7")))
    assert isinstance(last, PermanentError) and "retry schedule's last" in str(last) and len(client.calls) == 3
    assert [(r.status, r.attempts) for r in receipts(h, last.outputs)] == [("failed", 3)]
    assert last.attempts == 3  # the dead letter's dlq.attempts: the calls made, not the runtime's one pass


def redelivery(redelivery_id: str, *urls: str) -> list[tuple[str, bytes]]:
    return [("redelivery.id", redelivery_id.encode()), ("redelivery.endpoints", orjson.dumps(list(urls)))]


def test_a_redelivery_calls_again_only_the_endpoints_it_names_though_delivered_before() -> None:
    a, b = "https://a.example/h", "https://b.example/h"
    client = ScriptedClient({a: [WebhookReply(200)], b: [WebhookReply(200)]})
    h = handler(client, MemoryStore([subscription(a, "a"), subscription(b, "b")]))
    [first] = run(h, record(event(event_id="r1")))
    assert isinstance(first, list) and sorted(client.calls) == [a, b]
    [again] = run(h, record(event(event_id="r1"), headers=redelivery("rd_1", b)))
    assert isinstance(again, list) and [(r.endpoint, r.attempts) for r in receipts(h, again)] == [(b, 1)]
    assert client.calls.count(a) == 1 and client.calls.count(b) == 2
    # The same redelivery again (a crash between the call and the commit): its own delivery is final.
    [repeat] = run(h, record(event(event_id="r1"), headers=redelivery("rd_1", b)))
    assert isinstance(repeat, list) and client.calls.count(b) == 2
    # A second redelivery is a new request: called again.
    run(h, record(event(event_id="r1"), headers=redelivery("rd_2", a, b)))
    assert client.calls.count(a) == 2 and client.calls.count(b) == 3


def test_a_failing_redelivery_retries_on_its_own_schedule_and_dead_letters_with_its_calls() -> None:
    url = "https://a.example/h"
    client = ScriptedClient({url: [WebhookReply(200), WebhookReply(500)]})
    store = MemoryStore([subscription(url, "a")])
    h = handler(client, store, retry_schedule_s=[0])
    run(h, record(event(event_id="r2")))
    [retrying] = run(h, record(event(event_id="r2"), headers=redelivery("rd_3", url)))
    assert isinstance(retrying, RetryableError) and store.marks[(event().tenant, "r2")][url].attempts == 1
    [dead] = run(h, record(event(event_id="r2"), headers=[*redelivery("rd_3", url), ("retry.attempt", b"1")]))
    assert isinstance(dead, PermanentError) and dead.attempts == 2 and client.calls.count(url) == 3


def test_a_redelivery_to_an_endpoint_no_longer_the_events_calls_nothing() -> None:
    client = ScriptedClient({})
    h = handler(client, MemoryStore([]))
    [result] = run(h, record(event(event_id="r3"), headers=redelivery("rd_4", "https://gone.example/h")))
    assert result == [] and client.calls == []


@pytest.mark.parametrize("url", ["http://10.0.0.1/h", "http://169.254.169.254/latest", "http://[::1]/h"])
def test_a_refused_address_is_permanent_without_a_call(url: str) -> None:
    from services.notifier.adapters.http import HttpLimits, WebhookClient

    guarded = WebhookClient(HttpLimits(1, 1, 100, 100, 0, 10, 10), [])
    h = handler(ScriptedClient({}), MemoryStore([]))
    h.client = guarded
    [result] = run(h, record(event(callback_url=url)))
    assert isinstance(result, PermanentError) and "address refused" in str(result)


def test_redis_down_is_an_outage_for_the_whole_batch() -> None:
    h = handler(ScriptedClient({}), MemoryStore([], fail=True))
    results = run(h, record(event()), record(event(), offset=1))
    assert all(isinstance(r, DependencyUnavailable) for r in results)


def test_no_target_means_no_output() -> None:
    assert run(handler(ScriptedClient({}), MemoryStore([])), record(event())) == [[]]
