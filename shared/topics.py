"""The one registry of topics: every topic's name, partitions, retention, compaction and key."""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000

EVENTS_RECEIVED = "events.received.v1"
CUSTOMERS_PROFILE = "customers.profile.v1"
EVENTS_ENRICHED = "events.enriched.v1"
EVENTS_INFERRED = "events.inferred.v1"
# The same results as JSON (no registry needed), written by inference in the same transaction; same key.
EVENTS_INFERRED_JSON = "events.inferred.json.v1"
NOTIFICATIONS_DELIVERED = "notifications.delivered.v1"
AUDIT_REPLAYS = "audit.replays.v1"
REPLAY_LEDGER = "replay.ledger.v1"
SCHEMAS = "_schemas"

# Services that consume with retry, dead-letter and replay topics.
NOTIFIER = "notifier"
CONSUMING_SERVICES = ("enrichment", "inference", NOTIFIER, "status")
RETRY_LEVELS = 3
EVENT_PARTITIONS = 12


@dataclass(frozen=True)
class TopicSpec:
    """One row of the topic registry."""

    name: str
    partitions: int
    key: str
    value_schema: str | None
    replication: int = 1
    compacted: bool = False
    retention_ms: int | None = 7 * DAY_MS
    extra_config: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, str]:
        """Return the topic-level configs that bootstrap sets and drift checks compare."""
        conf = {"cleanup.policy": "compact" if self.compacted else "delete"}
        # Compacted topics keep every key forever; only delete topics have a time limit.
        conf["retention.ms"] = "-1" if self.compacted or self.retention_ms is None else str(self.retention_ms)
        conf.update(self.extra_config)
        return conf


def retry_topic(service: str, level: int) -> str:
    return f"{service}.retry.{level}"


DLQ_SUFFIX = ".dlq"


def dlq_topic(service: str) -> str:
    return f"{service}{DLQ_SUFFIX}"


def replay_topic(service: str) -> str:
    return f"{service}.replay"


def changelog_topic(service: str, table: str) -> str:
    """The compacted topic a runtime table's writes go to; partition ``p`` holds input partition ``p``'s state."""
    return f"{service}.{table}.changelog"


# The runtime tables each service keeps (``shared/runtime/state``): their changelogs are bootstrapped like any topic.
SERVICE_TABLES: dict[str, tuple[str, ...]] = {"enrichment": ("activity",)}


def service_topics(service: str, partitions: int = EVENT_PARTITIONS) -> list[TopicSpec]:
    """A consuming service's retry levels, dead-letter topic and replay topic."""
    specs = [TopicSpec(retry_topic(service, n), partitions, "original key", None) for n in range(1, RETRY_LEVELS + 1)]
    specs.append(TopicSpec(dlq_topic(service), partitions, "original key", None, retention_ms=30 * DAY_MS))
    specs.append(TopicSpec(replay_topic(service), partitions, "original key", None))
    return specs


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(EVENTS_RECEIVED, EVENT_PARTITIONS, "tenant:subject", "EventReceived"),
    TopicSpec(CUSTOMERS_PROFILE, EVENT_PARTITIONS, "tenant:customer_id", "CustomerProfile", compacted=True),
    TopicSpec(EVENTS_ENRICHED, EVENT_PARTITIONS, "tenant:subject", "EventEnriched"),
    TopicSpec(EVENTS_INFERRED, EVENT_PARTITIONS, "tenant:subject", "EventInferred"),
    TopicSpec(EVENTS_INFERRED_JSON, EVENT_PARTITIONS, "tenant:subject", None),
    TopicSpec(NOTIFICATIONS_DELIVERED, EVENT_PARTITIONS, "tenant:subject", "NotificationDelivered"),
    *(spec for service in CONSUMING_SERVICES for spec in service_topics(service)),
    *(
        TopicSpec(changelog_topic(service, table), EVENT_PARTITIONS, "the table's key", None, compacted=True)
        for service, tables in SERVICE_TABLES.items()
        for table in tables
    ),
    TopicSpec(AUDIT_REPLAYS, 1, "replay id", "ReplayAudit", retention_ms=365 * DAY_MS),
    TopicSpec(REPLAY_LEDGER, 1, "dlq-topic/partition/offset", "ReplayLedgerEntry", compacted=True),
    TopicSpec(SCHEMAS, 1, "registry key (JSON)", None, compacted=True),
)

BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}


def value_subject(topic: str) -> str:
    """TopicNameStrategy: the registry subject of a topic's values."""
    return f"{topic}-value"
