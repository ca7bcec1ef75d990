"""The faust app: its broker connection, tables, topics and agents, the changelogs it needs, and its readiness."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

import faust
import mode

from services.enrichment.adapters.faust_mends import EnrichmentApp
from services.enrichment.handlers import Enricher
from services.enrichment.settings import EnrichmentSettings
from shared.codec import EventCodec
from shared.health import ReadinessCheck
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.runtime import InputRecord
from shared.topics import RETRY_LEVELS, TopicSpec, replay_topic, retry_topic

TABLES = ("profiles", "activity")


class TopicSender:
    """Sends records through the faust app's producer, on one faust topic per name."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._topics: dict[str, faust.TopicT] = {}

    def topic(self, name: str) -> faust.TopicT:
        if name not in self._topics:
            self._topics[name] = self.app.topic(name)
        return self._topics[name]

    async def __call__(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        await self.topic(topic).send(key=key, value=value, headers=list(headers))


def input_record(event: faust.EventT[Any]) -> InputRecord:
    message = event.message
    raw: Any = message.headers or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = [(str(k), v if isinstance(v, bytes) else str(v or "").encode()) for k, v in pairs]
    return InputRecord(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        headers,
        int(message.timestamp * 1000) if message.timestamp else 0,
        None,
    )


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


def create_app(settings: EnrichmentSettings) -> tuple[faust.App, Enricher]:
    """The faust app with its tables and agents, and the enricher its agents call."""
    pipeline = settings.pipeline
    datadir = pipeline.state_dir / "faust" / f"{settings.name}-{settings.instance}"
    datadir.mkdir(parents=True, exist_ok=True)
    app = EnrichmentApp(
        settings.name,
        broker=";".join(f"kafka://{server}" for server in pipeline.kafka.bootstrap_servers.split(",")),
        broker_credentials=faust_credentials(pipeline.kafka),
        topic_partitions=settings.partitions,
        processing_guarantee="exactly_once" if settings.exactly_once else "at_least_once",
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
    profiles_table = app.Table(TABLES[0], partitions=settings.partitions, key_type=str)
    activity_table = app.Table(TABLES[1], partitions=settings.partitions, key_type=str)
    sender = TopicSender(app)
    sender.topic(settings.output_topic)
    enricher = Enricher(settings, EventCodec.from_settings(pipeline), profiles_table, activity_table, sender)
    sources = app.topic(settings.input_topic, replay_topic(settings.name))
    retries = app.topic(*(retry_topic(settings.name, level) for level in range(1, RETRY_LEVELS + 1)))
    profiles = app.topic(settings.profiles_topic)

    @app.agent(profiles)
    async def profiles_agent(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for event in stream.events():
            await enricher.on_profile(input_record(event))
            yield None

    @app.agent(sources)
    async def enrich_agent(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for event in stream.events():
            await enricher.on_event(input_record(event))
            yield None

    @app.agent(retries)
    async def retry_agent(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for event in stream.events():
            record = input_record(event)
            await enricher.hold_until_due(record)
            await enricher.on_event(record)
            yield None

    return app, enricher


def create_changelogs(settings: EnrichmentSettings) -> None:
    """Create the tables' changelog topics before faust starts (compacted, one partition per source partition):
    faust creates them itself, but a first event can arrive before their metadata shows any partition."""
    specs = [
        TopicSpec(f"{settings.name}-{table}-changelog", settings.partitions, "table key", None, compacted=True)
        for table in TABLES
    ]
    bootstrap_topics(settings.pipeline.kafka, specs)


def readiness(app: faust.App, enricher: Enricher) -> ReadinessCheck:
    """Ready once the group assigned partitions and the tables are recovered from their changelogs."""

    async def check() -> None:
        # Read the recovery service, never create it: faust creates it on first access, bound to the calling
        # thread's event loop, and this check runs on the health server's thread (the worker then crashed with
        # "Future attached to a different loop" when a /readyz came before the worker's own first access).
        recovery: Any = getattr(app.tables, "_recovery", None)
        if app.rebalancing or app.in_recovery or recovery is None or not recovery.completed.is_set():
            raise RuntimeError("rebalancing or recovering tables")
        if enricher.waiting_on:
            raise RuntimeError(f"waiting on a dependency: {enricher.waiting_on}")

    return check
