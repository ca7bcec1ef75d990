"""enrichment on faust-streaming: normalise, redact, join the customer table, count per-subject activity.

Agents:
- ``profiles``: ``customers.profile.v1`` (compacted) into the ``profiles`` Table (changelog-backed).
- ``enrich``: ``events.received.v1`` and ``enrichment.replay`` to ``events.enriched.v1``.
- ``retries``: ``enrichment.retry.1..3``, each record held until its ``retry.due``, then enriched the same way.

Every topic has 12 partitions and keys ``tenant:subject`` / ``tenant:customer_id`` by murmur2, so an event and
its customer's profile sit in the same partition number: the Tables co-partition with the streams. Values stay
raw bytes in faust and are decoded with the shared serde inside the agent, so an undecodable value is a
record to dead-letter, not a crashed stream. Failures go through the runtime's ``FailureRouter`` (the same
headers and retry ladder as every other service); a registry outage pauses the agent with backoff instead.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import faust
import mode
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastapi import FastAPI
from prometheus_client import Counter

from services.enrichment.domain import enrich, profile_entry, record_activity
from services.enrichment.engine import EnrichmentApp, EnrichmentWorker
from services.enrichment.settings import EnrichmentSettings
from shared.codec import DecodedEvent, EventCodec
from shared.errors import DependencyUnavailable
from shared.events import AvroRecord, CustomerProfile, EventReceived
from shared.health import ReadinessCheck, health_router
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.logging import configure_logging, logging_dict, payload_hash
from shared.runtime.model import InputRecord
from shared.runtime.routing import Failure, FailureRouter, due_at
from shared.schemas import SchemaCatalog
from shared.serde import AvroSerde
from shared.service import standard_checks, uvicorn_config
from shared.topics import RETRY_LEVELS, TopicSpec, replay_topic, retry_topic

log = logging.getLogger(__name__)
SERVICE = "enrichment"
T = TypeVar("T")

ENRICHED = Counter("enrichment_events_total", "Events by outcome: enriched, duplicate, retried, dead", ["outcome"])
PII = Counter("enrichment_pii_redactions_total", "PII placeholders written, by kind", ["kind"])
TABLES = ("profiles", "activity")
OUTAGE_WAITS = Counter("enrichment_dependency_waits_total", "Backoff waits for an unavailable dependency")


class Enricher:
    """The per-record work of the agents, with the faust app, tables and topics it needs."""

    def __init__(self, settings: EnrichmentSettings, app: faust.App) -> None:
        pipeline = settings.pipeline
        self.settings = settings
        self.app = app
        self.codec = EventCodec(
            AvroSerde(SchemaRegistryClient({"url": pipeline.schema_registry_url}), SchemaCatalog(pipeline.schemas_dir))
        )
        runtime = settings.runtime
        self.router = FailureRouter(
            settings.name, runtime.retry_delays_ms, RETRY_LEVELS, runtime.stacktrace_max_bytes, runtime.max_deferral_ms
        )
        # Keys are the record keys as text (``tenant:subject``); values JSON (faust's default for tables).
        self.profiles = app.Table(TABLES[0], partitions=settings.partitions, key_type=str)
        self.activity = app.Table(TABLES[1], partitions=settings.partitions, key_type=str)
        self.output = app.topic(settings.output_topic)
        self._topics: dict[str, faust.TopicT] = {}
        self.waiting_on: str | None = None

    def topic(self, name: str) -> faust.TopicT:
        if name not in self._topics:
            self._topics[name] = self.app.topic(name)
        return self._topics[name]

    async def patiently(self, record: InputRecord, work: Callable[[], T], network: bool) -> T:
        """Run ``work``; while a dependency (the registry) is unavailable, wait with backoff and try again,
        routing nothing. Work that may go to the network runs in a thread: the registry client blocks."""
        delay = self.settings.outage_backoff_initial_s
        while True:
            try:
                result = await asyncio.to_thread(work) if network or self.waiting_on else work()
            except DependencyUnavailable as exc:
                self.waiting_on = str(exc)
                OUTAGE_WAITS.inc()
                log.warning(
                    "dependency unavailable; waiting",
                    extra={"position": record.position, "error": str(exc), "delay_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.outage_backoff_max_s)
            else:
                self.waiting_on = None
                return result

    async def decode(self, record: InputRecord, event_type: type[AvroRecord]) -> DecodedEvent:
        """Decode with the shared serde (a bad value raises, to be routed; an outage waits)."""
        return await self.patiently(
            record,
            lambda: self.codec.decode(
                record.topic, record.value, record.headers, record.partition, record.offset, event_type
            ),
            self.codec.serde.needs_registry(record.topic, record.value),
        )

    async def on_profile(self, event: faust.EventT[Any]) -> None:
        record = input_record(event)
        key = (record.key or b"").decode(errors="replace")
        if record.value is None:
            self.profiles.pop(key, None)  # a tombstone deletes the profile
            return
        try:
            decoded = await self.decode(record, CustomerProfile)
        except Exception as exc:
            await self.fail(record, exc)
            return
        self.profiles[key] = profile_entry(decoded.event.model_dump())

    async def on_event(self, event: faust.EventT[Any]) -> None:
        record = input_record(event)
        try:
            decoded = await self.decode(record, EventReceived)
            received = decoded.event
            assert isinstance(received, EventReceived)
            key = f"{received.tenant}:{received.subject}"
            state, activity = record_activity(self.activity.get(key), received.event_id, received.received_at)
            if not activity.duplicate:
                # Stored at once: ``record_activity`` updated the entry in place, so what the table holds in
                # memory and what its changelog says stay the same even if this record fails below.
                self.activity[key] = state
            enriched = enrich(received, self.profiles.get(key), activity, self.settings.max_text_chars)
            topic = self.settings.output_topic
            output = await self.patiently(
                record,
                lambda: self.codec.encode(enriched, topic=topic, trace=decoded.context.trace),
                self.codec.serde.needs_registry(topic),
            )
        except Exception as exc:
            await self.fail(record, exc)
            return
        await self.output.send(key=output.key, value=output.value, headers=list(output.headers))
        ENRICHED.labels("duplicate" if activity.duplicate else "enriched").inc()
        for kind, count in enriched.pii_counts.items():
            PII.labels(kind).inc(count)
        if log.isEnabledFor(logging.DEBUG):
            self._log_enriched(record, received, enriched, decoded)

    def _log_enriched(self, record: InputRecord, received: EventReceived, enriched: Any, decoded: DecodedEvent) -> None:
        log.debug(
            "event enriched",
            extra={
                "event_id": received.event_id,
                "position": record.position,
                "trace_id": decoded.context.trace.trace_id if decoded.context.trace else None,
                "text": payload_hash(enriched.text),
            },
        )

    async def fail(self, record: InputRecord, exc: BaseException) -> None:
        """Route a failed record to its retry level or the DLQ, with the shared headers."""
        routed = self.router.route(record, Failure.of(exc))
        await self.topic(routed.topic).send(key=routed.key, value=routed.value, headers=list(routed.headers))
        ENRICHED.labels("dead" if routed.dead else "retried").inc()
        log.warning(
            "record dead-lettered" if routed.dead else "record sent to retry",
            extra={
                "position": record.position,
                "to": routed.topic,
                "error": f"{type(exc).__name__}: {exc}"[:300],
                "value": payload_hash(record.value),
            },
        )

    async def hold_until_due(self, record: InputRecord) -> None:
        due = due_at(record.headers, record.timestamp_ms, self.settings.runtime.max_retry_delay_ms)
        if due is not None:
            wait_s = due / 1000 - time.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)


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
    enricher = Enricher(settings, app)
    sources = app.topic(settings.input_topic, replay_topic(settings.name))
    retries = app.topic(*(retry_topic(settings.name, level) for level in range(1, RETRY_LEVELS + 1)))
    profiles = app.topic(settings.profiles_topic)

    @app.agent(profiles)
    async def profiles_agent(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for event in stream.events():
            await enricher.on_profile(event)
            yield None

    @app.agent(sources)
    async def enrich_agent(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for event in stream.events():
            await enricher.on_event(event)
            yield None

    @app.agent(retries)
    async def retry_agent(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for event in stream.events():
            await enricher.hold_until_due(input_record(event))
            await enricher.on_event(event)
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
        recovery: Any = getattr(app.tables, "recovery", None)
        if app.rebalancing or app.in_recovery or recovery is None or not recovery.completed.is_set():
            raise RuntimeError("rebalancing or recovering tables")
        if enricher.waiting_on:
            raise RuntimeError(f"waiting on a dependency: {enricher.waiting_on}")

    return check


def serve_health(settings: EnrichmentSettings, app: faust.App, enricher: Enricher) -> threading.Thread:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``ENRICHMENT_PORT``, in a thread of their own."""
    import uvicorn

    web = FastAPI(title=SERVICE)
    checks = standard_checks(SERVICE, settings.pipeline, redis=False, registry=True)
    web.include_router(health_router(SERVICE, {**checks, "faust": readiness(app, enricher)}))
    # In a thread, uvicorn leaves signal handling alone: SIGTERM stays faust's (a graceful stop).
    server = uvicorn.Server(uvicorn_config(web, settings))
    thread = threading.Thread(target=server.run, name=f"{SERVICE}-http", daemon=True)
    thread.start()
    return thread


def main() -> None:
    settings = EnrichmentSettings()
    configure_logging(SERVICE, settings.pipeline.log_level)
    create_changelogs(settings)
    app, enricher = create_app(settings)
    serve_health(settings, app, enricher)
    worker = EnrichmentWorker(
        app,
        loglevel=settings.pipeline.log_level,
        logging_config=logging_dict(SERVICE, settings.pipeline.log_level),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
