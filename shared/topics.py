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
SERVICE_TABLES: dict[str, tuple[str, ...]] = {"enrichment": ("activity", "seen")}


def service_topics(service: str, partitions: int = EVENT_PARTITIONS) -> list[TopicSpec]:
    """A consuming service's retry levels, dead-letter topic and replay topic."""
    specs = [TopicSpec(retry_topic(service, n), partitions, "original key", None) for n in range(1, RETRY_LEVELS + 1)]
    specs.append(TopicSpec(dlq_topic(service), partitions, "original key", None, retention_ms=30 * DAY_MS))
    specs.append(TopicSpec(replay_topic(service), partitions, "original key", None))
    return specs


# analytics (faust): its repartition topic and its tables' changelogs, named as faust names them. The windows and how
# long each is kept (stream time) decide the windowed changelogs' retention.
ANALYTICS = "analytics"
ANALYTICS_STATE_TABLE = "state"
ANALYTICS_WINDOW_S: dict[str, int] = {"1m": 60, "1h": 3600}
ANALYTICS_HORIZON_S: dict[str, int] = {"1m": 2 * 3600, "1h": 2 * 86400}


def analytics_window_table(window: str) -> str:
    return f"figures-{window}"


def analytics_repartition_topic(name: str = ANALYTICS) -> str:
    """Where analytics' first stage sends its snapshots, keyed by (tenant, category) or tenant."""
    return f"{name}-figures-repartition"


def faust_changelog_topic(name: str, table: str) -> str:
    """faust's name for a table's changelog."""
    return f"{name}-{table}-changelog"


def analytics_topics(name: str = ANALYTICS, partitions: int = EVENT_PARTITIONS) -> list[TopicSpec]:
    """analytics' repartition topic and table changelogs, with as many partitions as its inputs."""
    specs = [
        TopicSpec(analytics_repartition_topic(name), partitions, "c|tenant|category or d|tenant", None),
        TopicSpec(
            faust_changelog_topic(name, ANALYTICS_STATE_TABLE), partitions, "partition|kind|...", None, compacted=True
        ),
    ]
    for window, horizon in ANALYTICS_HORIZON_S.items():
        # Windows past their horizon leave the changelog with their segments (faust's own windowed changelogs).
        retention_ms = (horizon + ANALYTICS_WINDOW_S[window]) * 1000 + DAY_MS
        specs.append(
            TopicSpec(
                faust_changelog_topic(name, analytics_window_table(window)),
                partitions,
                "[key, [start, end]]",
                None,
                compacted=True,
                extra_config={"cleanup.policy": "compact,delete", "retention.ms": str(retention_ms)},
            )
        )
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
    *analytics_topics(),
    TopicSpec(AUDIT_REPLAYS, 1, "replay id", "ReplayAudit", retention_ms=365 * DAY_MS),
    TopicSpec(REPLAY_LEDGER, 1, "dlq-topic/partition/offset", "ReplayLedgerEntry", compacted=True),
    TopicSpec(SCHEMAS, 1, "registry key (JSON)", None, compacted=True),
)

BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}


def value_subject(topic: str) -> str:
    """TopicNameStrategy: the registry subject of a topic's values."""
    return f"{topic}-value"
