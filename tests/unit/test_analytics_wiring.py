"""The analytics worker's wiring without a broker: Kafka security from the shared ``KafkaConnection``, the faust
mends it runs on, its logging, its readiness from the health thread, and its handlers over plain tables."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.transport.producer import ProducerBuffer
from faust.types.enums import ProcessingGuarantee
from prometheus_client import REGISTRY
from pydantic import SecretStr

from services.analytics.adapters.faust_app import Analytics, create_app, faust_credentials, internal_topics, readiness
from services.analytics.adapters.faust_mends import (
    AnalyticsWorker,
    DrainingBuffer,
    DrainingProducer,
    ResettingConsumer,
    SeekFirstRecovery,
)
from services.analytics.domain import Snapshot
from services.analytics.handlers import Figures, Patience, Results
from services.analytics.settings import AnalyticsSettings
from shared.analytics import CategoryFigures, DeliveryFigures
from shared.codec import EventCodec
from shared.events import EventInferred
from shared.kafka import KafkaConnection
from shared.logging import logging_dict
from shared.settings import PipelineSettings
from tests.support.factories import make_event_inferred


class NoStore:
    async def write(self, snapshot: Snapshot, figures: CategoryFigures | DeliveryFigures) -> None:
        return None


@pytest.fixture
def codec() -> EventCodec:
    return EventCodec.connect("mock://analytics-tests", PipelineSettings().schemas_dir)


@pytest.fixture
def analytics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: EventCodec) -> Analytics:
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path))
    return create_app(AnalyticsSettings(), NoStore(), codec)


# --- Kafka security ------------------------------------------------------------------------------------------------


def test_plaintext_needs_no_credentials() -> None:
    assert faust_credentials(KafkaConnection(bootstrap_servers="b:9092")) is None


def test_sasl_ssl_becomes_sasl_credentials_with_a_tls_context() -> None:
    kafka = KafkaConnection(
        bootstrap_servers="b:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="analytics",
        sasl_password=SecretStr("s3cret"),
    )
    credentials = faust_credentials(kafka)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "analytics" and credentials.password == "s3cret"
    assert str(credentials.mechanism.value) == "SCRAM-SHA-512"
    assert credentials.ssl_context is not None


def test_ssl_alone_becomes_ssl_credentials() -> None:
    credentials = faust_credentials(KafkaConnection(bootstrap_servers="b:9093", security_protocol="SSL"))
    assert isinstance(credentials, faust.SSLCredentials)


def test_settings_take_the_analytics_prefix_and_default_to_port_9106(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANALYTICS_INFERRED_TOPIC", "results-x")
    monkeypatch.setenv("ANALYTICS_RUNTIME__COMMIT_INTERVAL_MS", "250")
    settings = AnalyticsSettings()
    assert (settings.port, settings.name, settings.inferred_topic) == (9106, "analytics", "results-x")
    assert settings.delivered_topic == "notifications.delivered.v1" and settings.fallback_model == "keywords"
    assert settings.runtime.commit_interval_ms == 250  # faust is at-least-once whatever the block says


# --- the faust mends -----------------------------------------------------------------------------------------------


def test_the_worker_runs_on_the_mended_recovery_consumer_and_producer(analytics: Analytics) -> None:
    """The mends of ``services/analytics/adapters/faust_mends.py`` are what the app actually uses (the kill -9
    integration test is what shows they work together)."""
    app = analytics.app
    assert isinstance(app.tables.recovery, SeekFirstRecovery)  # type: ignore[attr-defined]
    assert app.transport.Consumer is ResettingConsumer
    assert isinstance(app.producer, DrainingProducer) and isinstance(app.producer.buffer, DrainingBuffer)


def test_the_app_runs_at_least_once_with_static_membership_and_one_state_table(analytics: Analytics) -> None:
    conf = analytics.app.conf
    guarantee: Any = conf.processing_guarantee  # faust types the setting as its class
    assert guarantee is ProcessingGuarantee.AT_LEAST_ONCE
    assert conf.consumer_group_instance_id == "analytics-0"
    assert sorted(analytics.app.tables) == ["figures-1h", "figures-1m", "state"]


def test_the_internal_topics_have_the_inputs_partitions_and_windowed_changelogs_expire() -> None:
    specs = {spec.name: spec for spec in internal_topics(AnalyticsSettings(name="an"))}
    assert sorted(specs) == [
        "an-figures-1h-changelog",
        "an-figures-1m-changelog",
        "an-figures-repartition",
        "an-state-changelog",
    ]
    assert {spec.partitions for spec in specs.values()} == {12}
    assert specs["an-state-changelog"].config()["cleanup.policy"] == "compact"
    assert specs["an-figures-1m-changelog"].config()["cleanup.policy"] == "compact,delete"


class SlowChannel:
    """A topic whose hand-over to the Kafka client takes a while (metadata, a full accumulator)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.handed: list[Any] = []

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(self.delay_s)
        self.handed.append(fut)


async def flush_after_put(buffer: Any, channel: SlowChannel) -> int:
    await buffer.start()
    try:
        buffer.put(SimpleNamespace(message=SimpleNamespace(channel=channel)))
        await asyncio.sleep(0)  # the buffer's task takes the message off its queue
        await buffer.flush()
        return len(channel.handed)
    finally:
        await buffer.stop()


def test_a_flush_waits_until_every_buffered_table_write_reached_the_client(analytics: Analytics) -> None:
    """faust's flush (before it commits offsets) came back while a table write was still on its way to the client:
    the offsets could pass a changelog write that a kill -9 then lost."""
    app = analytics.app

    def flushed(buffer: Any) -> int:
        buffer.app = app
        return asyncio.run(flush_after_put(buffer, SlowChannel(0.3)))

    assert flushed(ProducerBuffer()) == 0  # faust's own: back before the write was handed over
    assert flushed(DrainingBuffer()) == 1


def test_the_worker_leaves_the_root_logger_at_the_configured_level(analytics: Analytics) -> None:
    """faust's own worker set the root logger to DEBUG for its terminal spinner, so every debug call in faust and
    aiokafka built a log record at WARNING too."""
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    try:
        AnalyticsWorker(
            analytics.app, loglevel="WARNING", logging_config=logging_dict("analytics", "WARNING"), quiet=True
        )._setup_logging()
        assert root.level == logging.WARNING
        assert not logging.getLogger("faust.topics").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(before[0])
        root.handlers[:] = before[1]


def test_a_readiness_check_from_the_health_thread_binds_no_faust_service_to_its_loop(analytics: Analytics) -> None:
    """faust creates the table manager's recovery service on first access, bound to the caller's event loop: a
    /readyz answered on the health server's thread before the worker's first access crashed the worker."""
    outcome: list[BaseException] = []

    def on_the_health_thread() -> None:
        try:
            asyncio.new_event_loop().run_until_complete(readiness(analytics)())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=on_the_health_thread)
    thread.start()
    thread.join(10)
    assert [str(e) for e in outcome] == ["rebalancing or recovering tables"]
    assert analytics.app.tables._recovery is None  # type: ignore[attr-defined]


# --- the handlers over plain tables --------------------------------------------------------------------------------


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def results_stage(codec: EventCodec, clock: list[int], epoch: list[int]) -> tuple[Results, list[Snapshot]]:
    sent: list[Snapshot] = []

    async def send(snapshot: Snapshot) -> None:
        sent.append(snapshot)

    settings = AnalyticsSettings(inferred_topic="inferred", delivered_topic="delivered")
    stage = Results(settings, codec, {}, send, Patience(0.01, 0.01), epoch=lambda: epoch[0], clock=lambda: clock.pop(0))
    return stage, sent


def test_a_result_is_counted_and_its_partials_go_out_in_one_generation_with_rising_sequence_numbers(
    codec: EventCodec,
) -> None:
    stage, sent = results_stage(codec, clock=[1000, 2000], epoch=[1])
    tenant = "wiring-a"
    value = codec.encode(EventInferred.model_validate(make_event_inferred(tenant=tenant)), topic="inferred").value
    before = sample("analytics_events_total", tenant=tenant, category="technical")
    asyncio.run(stage.on_record("inferred", 3, 0, value))
    asyncio.run(stage.on_record("inferred", 3, 0, value))  # the same record again: counted once
    assert sample("analytics_events_total", tenant=tenant, category="technical") == before + 1
    assert [(s.window, s.source, s.generation, s.sequence) for s in sent] == [
        ("1m", 3, 1000, 1),
        ("1h", 3, 1000, 2),
        ("1m", 3, 1000, 3),
        ("1h", 3, 1000, 4),
    ]
    assert sent[0].figures == sent[2].figures and sent[0].figures["events"] == 1


def test_after_a_rebalance_a_partition_starts_a_later_generation(codec: EventCodec) -> None:
    epoch = [1]
    stage, sent = results_stage(codec, clock=[5000, 10], epoch=epoch)  # a clock that went back
    value = codec.encode(EventInferred.model_validate(make_event_inferred()), topic="inferred").value
    asyncio.run(stage.on_record("inferred", 0, 0, value))
    epoch[0] = 2
    asyncio.run(stage.on_record("inferred", 0, 1, value))
    assert [s.generation for s in sent] == [5000, 5000, 5001, 5001]


def test_an_undecodable_record_is_skipped_counted_and_writes_nothing(codec: EventCodec) -> None:
    stage, sent = results_stage(codec, clock=[1], epoch=[1])
    before = sample("analytics_undecodable_total", topic="delivered")
    assert asyncio.run(stage.on_record("delivered", 0, 7, b"\x07not avro")) is None
    assert sample("analytics_undecodable_total", topic="delivered") == before + 1
    assert stage.state == {} and sent == []


class Windows:
    def __init__(self) -> None:
        self.values: dict[tuple[str, int], dict[str, Any]] = {}

    def get(self, key: str, start: int) -> dict[str, Any]:
        return dict(self.values.get((key, start), {}))

    def put(self, key: str, start: int, value: dict[str, Any]) -> None:
        self.values[(key, start)] = value


class Store:
    def __init__(self) -> None:
        self.written: list[tuple[str, int, CategoryFigures | DeliveryFigures]] = []

    async def write(self, snapshot: Snapshot, figures: CategoryFigures | DeliveryFigures) -> None:
        self.written.append((snapshot.key, snapshot.start, figures))


def test_each_snapshot_is_merged_and_the_window_total_written_a_repeat_too() -> None:
    store = Store()
    figures = Figures({"1m": Windows(), "1h": Windows()}, store, Patience(0.01, 0.01))

    def snap(source: int, sequence: int, events: int) -> bytes:
        return (
            Snapshot(
                kind="category",
                tenant="t",
                category="billing",
                window="1h",
                start=3600,
                source=source,
                generation=1,
                sequence=sequence,
                figures=CategoryFigures(events=events).model_dump(),
            )
            .model_dump_json()
            .encode()
        )

    for value in (snap(0, 1, 2), snap(1, 1, 3), snap(0, 1, 2)):
        asyncio.run(figures.on_snapshot(value))
    assert [(k, s, getattr(f, "events", None)) for k, s, f in store.written] == [
        ("c|t|billing", 3600, 2),
        ("c|t|billing", 3600, 5),
        ("c|t|billing", 3600, 5),
    ]
    assert asyncio.run(figures.on_snapshot(b"not json")) is None


def test_an_unreachable_store_is_waited_for_not_skipped() -> None:
    import redis

    class Flaky(Store):
        def __init__(self) -> None:
            super().__init__()
            self.failures = 2

        async def write(self, snapshot: Snapshot, figures: CategoryFigures | DeliveryFigures) -> None:
            if self.failures:
                self.failures -= 1
                raise redis.ConnectionError("down")
            await super().write(snapshot, figures)

    store = Flaky()
    patience = Patience(0.001, 0.002)
    figures = Figures({"1m": Windows()}, store, patience)
    value = Snapshot(kind="delivery", tenant="t", window="1m", start=60, source=0, figures={}).model_dump_json()
    asyncio.run(figures.on_snapshot(value.encode()))
    assert len(store.written) == 1 and patience.waiting_on is None
