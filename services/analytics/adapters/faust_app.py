"""The faust app: its broker connection, tables, topics and agents, the topics it needs, and its readiness."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import faust
import mode

from services.analytics.adapters.faust_mends import AnalyticsApp
from services.analytics.domain import Snapshot
from services.analytics.handlers import Figures, Patience, Results, ServingStore
from services.analytics.settings import AnalyticsSettings
from shared.analytics import HORIZON_SECONDS, WINDOW_SECONDS
from shared.codec import EventCodec
from shared.health import ReadinessCheck
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.topics import (
    ANALYTICS_STATE_TABLE,
    TopicSpec,
    analytics_repartition_topic,
    analytics_topics,
    analytics_window_table,
    faust_changelog_topic,
)

STATE_TABLE = ANALYTICS_STATE_TABLE


def window_table(window: str) -> str:
    return analytics_window_table(window)


def repartition_topic(settings: AnalyticsSettings) -> str:
    """Where the first stage's snapshots go, keyed by (tenant, category) or tenant."""
    return analytics_repartition_topic(settings.name)


def changelog_topic(settings: AnalyticsSettings, table: str) -> str:
    """faust's name for a table's changelog."""
    return faust_changelog_topic(settings.name, table)


def faust_credentials(kafka: KafkaConnection) -> faust.types.auth.CredentialsT | None:
    """The shared connection's TLS and SASL settings, as faust takes them (``broker_credentials``)."""
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context: ssl.SSLContext | None = None
    if protocol in ("SSL", "SASL_SSL"):
        cafile = str(kafka.ssl_ca_location) if kafka.ssl_ca_location else None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        if kafka.ssl_certificate_location and kafka.ssl_key_location:
            password = kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None
            context.load_cert_chain(str(kafka.ssl_certificate_location), str(kafka.ssl_key_location), password)
    if protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


class FaustWindow:
    """One windowed faust table as the second stage reads and writes it: by key and window start."""

    def __init__(self, table: Any) -> None:
        self._start = 0.0
        # The window is the snapshot's, not the record's timestamp (a broker may refuse future timestamps).
        self.table = table.relative_to(lambda _event=None: self._start)

    def get(self, key: str, start: int) -> dict[str, Any]:
        self._start = float(start)
        return dict(self.table[key].value())

    def put(self, key: str, start: int, value: dict[str, Any]) -> None:
        self._start = float(start)
        self.table[key] = value


@dataclass
class Analytics:
    """The app and what its agents call."""

    app: faust.App
    results: Results
    figures: Figures
    patience: tuple[Patience, ...]


def create_app(settings: AnalyticsSettings, store: ServingStore, codec: EventCodec | None = None) -> Analytics:
    """The faust app with its tables and agents."""
    pipeline = settings.pipeline
    datadir = pipeline.state_dir / "faust" / f"{settings.name}-{settings.instance}"
    datadir.mkdir(parents=True, exist_ok=True)
    app = AnalyticsApp(
        settings.name,
        broker=";".join(f"kafka://{server}" for server in pipeline.kafka.bootstrap_servers.split(",")),
        broker_credentials=faust_credentials(pipeline.kafka),
        topic_partitions=settings.partitions,
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.runtime.commit_interval_ms / 1000,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        # Static membership (ARCHITECTURE.md: group.instance.id = <service>-<instance>): a restarted worker takes
        # its partitions back at once, with no rebalance for faust to drop in-flight messages in.
        consumer_group_instance_id=f"{settings.name}-{settings.instance}",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        table_standby_replicas=0,
        # The agents catch every record's failure; what still escapes is the worker's, so stop it (exit 1) and
        # let the supervisor restart it, instead of running on with a dead agent.
        agent_supervisor=mode.CrashingSupervisor,
        datadir=str(datadir),
    )
    # The first stage's one table: join entries and partials share its changelog, so a crash keeps a prefix of
    # its writes across records (a record's writes are never lost while a later record's survive). With two
    # tables, an event's join entry and the partial it counted in could come back from different points in time,
    # and a record processed again would count it twice (tests/unit/test_analytics_domain.py).
    state = app.Table(STATE_TABLE, partitions=settings.partitions, key_type=str)
    windows = {
        window: FaustWindow(
            app.Table(window_table(window), default=dict, partitions=settings.partitions).tumbling(
                WINDOW_SECONDS[window], expires=timedelta(seconds=HORIZON_SECONDS[window])
            )
        )
        for window in WINDOW_SECONDS
    }
    repartition = app.topic(repartition_topic(settings), partitions=settings.partitions)

    async def send(snapshot: Snapshot) -> None:
        await repartition.send(key=snapshot.key.encode(), value=snapshot.model_dump_json().encode())

    registry = Patience(settings.store_backoff_initial_s, settings.store_backoff_max_s)
    redis = Patience(settings.store_backoff_initial_s, settings.store_backoff_max_s)
    codec = codec or EventCodec.from_settings(pipeline)
    # A rebalance starts a new generation of snapshots: a partition's next owner's win over its last one's.
    results = Results(settings, codec, state, send, registry, epoch=lambda: int(app.rebalancing_count))
    figures = Figures(dict(windows), store, redis)

    @app.agent(app.topic(settings.inferred_topic, settings.delivered_topic))
    async def results_agent(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for event in stream.events():
            message = event.message
            await results.on_record(message.topic, message.partition, message.offset, message.value)
            yield None

    @app.agent(repartition)
    async def figures_agent(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for event in stream.events():
            await figures.on_snapshot(event.message.value)
            yield None

    return Analytics(app, results, figures, (registry, redis))


def internal_topics(settings: AnalyticsSettings) -> list[TopicSpec]:
    """The repartition topic and the tables' changelogs, with as many partitions as the inputs."""
    return analytics_topics(settings.name, settings.partitions)


def create_topics(settings: AnalyticsSettings) -> None:
    """Create the app's own topics before faust starts: faust creates them itself, but a first record can arrive
    before their metadata shows any partition."""
    bootstrap_topics(settings.pipeline.kafka, internal_topics(settings))


def readiness(analytics: Analytics) -> ReadinessCheck:
    """Ready once the group assigned partitions and the tables are recovered from their changelogs, and no
    dependency (the registry, Redis) is out."""
    app = analytics.app

    async def check() -> None:
        # Read the recovery service, never create it: faust creates it on first access, bound to the calling
        # thread's event loop, and this check runs on the health server's thread (the worker then crashed with
        # "Future attached to a different loop" when a /readyz came before the worker's own first access).
        recovery: Any = getattr(app.tables, "_recovery", None)
        if app.rebalancing or app.in_recovery or recovery is None or not recovery.completed.is_set():
            raise RuntimeError("rebalancing or recovering tables")
        waiting = [p.waiting_on for p in analytics.patience if p.waiting_on]
        if waiting:
            raise RuntimeError(f"waiting on a dependency: {'; '.join(waiting)}")

    return check
