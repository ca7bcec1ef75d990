"""The topic registry covers every topic in ARCHITECTURE.md with the right shape."""

from __future__ import annotations

from shared.topics import BY_NAME, CONSUMING_SERVICES, TOPICS

ARCHITECTURE_TOPICS = {
    "events.received.v1",
    "customers.profile.v1",
    "events.enriched.v1",
    "events.inferred.v1",
    "notifications.delivered.v1",
    "audit.replays.v1",
    "replay.ledger.v1",
    "_schemas",
}


def test_every_architecture_topic_is_in_the_registry() -> None:
    assert set(BY_NAME) >= ARCHITECTURE_TOPICS


def test_each_consuming_service_has_three_retry_levels_a_dlq_and_a_replay_topic() -> None:
    for service in CONSUMING_SERVICES:
        for suffix in ("retry.1", "retry.2", "retry.3", "dlq", "replay"):
            assert f"{service}.{suffix}" in BY_NAME


def test_event_topics_and_their_side_topics_have_twelve_partitions_and_schemas_one() -> None:
    for spec in TOPICS:
        if (
            spec.name.startswith(("events.", "customers.", "notifications."))
            or spec.name.split(".")[0] in CONSUMING_SERVICES
        ):
            assert spec.partitions == 12, spec.name
    assert BY_NAME["_schemas"].partitions == 1


def test_compacted_topics_keep_keys_forever_but_windowed_changelogs() -> None:
    compacted = {spec.name for spec in TOPICS if spec.compacted}
    windowed = {"analytics-figures-1m-changelog", "analytics-figures-1h-changelog"}
    assert compacted == {
        "customers.profile.v1",
        "replay.ledger.v1",
        "_schemas",
        "enrichment.activity.changelog",
        "enrichment.seen.changelog",
        "analytics-state-changelog",
        *windowed,
    }
    for name in compacted - windowed:
        assert BY_NAME[name].config() == {"cleanup.policy": "compact", "retention.ms": "-1"}
    # A window past its horizon leaves with its segments: compacted and deleted, kept a day past the horizon.
    assert BY_NAME["analytics-figures-1m-changelog"].config() == {
        "cleanup.policy": "compact,delete",
        "retention.ms": str((2 * 3600 + 60) * 1000 + 86_400_000),
    }


def test_analytics_creates_the_topics_the_registry_bootstraps() -> None:
    from services.analytics.adapters.faust_app import internal_topics
    from services.analytics.settings import AnalyticsSettings

    assert all(BY_NAME[spec.name] == spec for spec in internal_topics(AnalyticsSettings(instance=0)))


def test_topic_names_are_unique() -> None:
    assert len({spec.name for spec in TOPICS}) == len(TOPICS)


def test_the_registered_changelogs_are_the_tables_the_services_keep() -> None:
    from services.enrichment.handlers import ACTIVITY, PROFILES, SEEN
    from shared.topics import BY_NAME, SERVICE_TABLES, changelog_topic

    # The profiles table's changelog is the profiles topic itself (a source table): nothing to register for it.
    assert {"enrichment": (ACTIVITY.name, SEEN.name)} == SERVICE_TABLES
    assert PROFILES.name not in SERVICE_TABLES["enrichment"]
    for table in (ACTIVITY, SEEN):
        spec = BY_NAME[changelog_topic("enrichment", table.name)]
        assert spec.compacted and spec.partitions == BY_NAME["events.received.v1"].partitions
