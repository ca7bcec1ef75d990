"""The ``pipeline`` command: run the local stack, inspect it, bootstrap topics and schemas."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from shared.errors import BrokerUnavailable
from shared.settings import PipelineSettings
from stack.dlq import dlq_app

if TYPE_CHECKING:
    from shared.auth import KeyStore

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Run and operate the Kafka inference pipeline.")
kafka_app = typer.Typer(no_args_is_help=True, help="The local Apache Kafka broker.")
redis_app = typer.Typer(no_args_is_help=True, help="The local Redis server.")
topics_app = typer.Typer(no_args_is_help=True, help="Topics from the registry in shared/topics.py.")
schemas_app = typer.Typer(no_args_is_help=True, help="Avro schemas in schemas/.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys: tenant, scopes and rate limit; stored hashed in Redis.")
secrets_app = typer.Typer(no_args_is_help=True, help="Tenant webhook signing secrets (whsec_...).")
app.add_typer(kafka_app, name="kafka")
app.add_typer(redis_app, name="redis")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(keys_app, name="keys")
app.add_typer(secrets_app, name="secrets")
app.add_typer(dlq_app, name="dlq")

err = Console(stderr=True)


def _settings() -> PipelineSettings:
    return PipelineSettings()


@kafka_app.command("fetch")
def kafka_fetch() -> None:
    """Resolve the broker jars from Maven Central into the cache."""
    from stack.launcher import fetch_kafka

    print(fetch_kafka(_settings().kafka_cache_dir))


@kafka_app.command("run")
def kafka_run(
    data_dir: Path = typer.Option(..., help="Broker state; survives restarts."),
    port: int = typer.Option(9092),
    controller_port: int = typer.Option(9093),
    heap: str = typer.Option("768m"),
) -> None:
    """Format the storage on first use, then become the broker process."""
    from stack.launcher import exec_kafka

    exec_kafka(data_dir, port, controller_port, _settings().kafka_cache_dir, heap)


@redis_app.command("run")
def redis_run(data_dir: Path = typer.Option(...), port: int = typer.Option(6379)) -> None:
    """Become a redis-server with append-only persistence in ``data_dir``."""
    from stack.launcher import redis_command

    command = redis_command(port, data_dir)
    os.execv(command[0], command)


@topics_app.command("bootstrap")
def topics_bootstrap(
    check: bool = typer.Option(False, help="Exit 1 when an existing topic drifts from the registry."),
    timeout: float = typer.Option(30.0, help="Seconds to wait for the broker."),
) -> None:
    """Create every topic in the registry; report drift in partitions or configs."""
    from shared.kafka import bootstrap_topics

    settings = _settings()
    try:
        report = bootstrap_topics(settings.kafka, timeout_s=timeout)
    except BrokerUnavailable as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    print(f"topics: {len(report.created)} created, {len(report.existing)} already present")
    for line in report.drift:
        print(f"drift: {line}")
    if check and report.drift:
        raise typer.Exit(1)


@schemas_app.command("register")
def schemas_register() -> None:
    """Register every topic's value schema with the registry."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from shared.schemas import SchemaCatalog

    settings = _settings()
    ids = SchemaCatalog(settings.schemas_dir).register_all(SchemaRegistryClient({"url": settings.schema_registry_url}))
    for subject, schema_id in ids.items():
        print(f"{subject}: id {schema_id}")


def _key_store(settings: PipelineSettings) -> KeyStore:
    from shared.auth import KeyStore

    return KeyStore.from_url(settings.redis_url)


def _provision_dev_key(settings: PipelineSettings) -> None:
    """The documented dev key: tenant ``dev``, every scope, 1000 requests/second (idempotent)."""
    from shared.auth import SCOPES

    if settings.dev_api_key:
        _key_store(settings).create(
            "dev", list(SCOPES), "1000/second", label="dev key (make up)", key=settings.dev_api_key, key_id="dev"
        )


@keys_app.command("create")
def keys_create(
    tenant: str = typer.Option(..., help="The tenant the key acts for."),
    scopes: str = typer.Option(..., help="Comma-separated: events:write,events:read,subscriptions:write,..."),
    rate: str = typer.Option("100/second", help="N/second, N/minute or N/hour."),
    label: str = typer.Option("", help="A note on what the key is for."),
) -> None:
    """Create a key: the key alone on stdout (shown once), its id and details on stderr."""
    from shared.auth import AuthError

    try:
        key, record = _key_store(_settings()).create(
            tenant, [s.strip() for s in scopes.split(",") if s.strip()], rate, label
        )
    except AuthError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    print(key)
    err.print(f"key id {record.id}: tenant {record.tenant}, scopes {','.join(record.scopes)}, rate {record.rate}")


@keys_app.command("list")
def keys_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every key's id, tenant, scopes and rate (never the key itself)."""
    from shared.auth import describe

    records = _key_store(_settings()).list()
    if as_json:
        print(json.dumps([describe(r) for r in records], indent=2))
        return
    table = Table(title="API keys")
    for column in ("id", "tenant", "scopes", "rate", "label", "created"):
        table.add_column(column)
    for r in records:
        table.add_row(r.id, r.tenant, ",".join(r.scopes), r.rate, r.label, r.created_at.isoformat(timespec="seconds"))
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (from `pipeline keys list`).")) -> None:
    """Revoke a key at once: the next request with it is a 401."""
    from shared.auth import AuthError

    try:
        record = _key_store(_settings()).revoke(key_id)
    except AuthError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    err.print(f"revoked key {record.id} of tenant {record.tenant}")


@secrets_app.command("show")
def secrets_show(
    tenant: str = typer.Option(...), as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """The tenant's current signing secret (and the previous one while its grace period lasts)."""
    from shared.auth import AuthError

    try:
        found = _key_store(_settings()).secrets(tenant)
    except AuthError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        print(found.model_dump_json(indent=2))
    else:
        print(found.current)
        if found.previous is not None and len(found.valid()) > 1:
            err.print(f"previous secret valid until {found.previous_until_ms} (epoch ms)")


@secrets_app.command("rotate")
def secrets_rotate(
    tenant: str = typer.Option(...),
    grace: float = typer.Option(24 * 3600, help="Seconds the old secret stays valid."),
) -> None:
    """A new signing secret on stdout; the old one keeps signing for the grace period."""
    from shared.auth import AuthError

    try:
        rotated = _key_store(_settings()).rotate(tenant, grace)
    except AuthError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    print(rotated.current)
    err.print(f"previous secret valid for {grace:.0f}s more")


def _summary(settings: PipelineSettings) -> None:
    from stack.runner import components

    print("pipeline is up:")
    for part in components(settings):
        print(f"  {part.name:<11} {part.url}")
    print(f"  {'state':<11} {settings.state_path()}  (logs in {settings.state_path() / 'logs'})")
    print(f"dev API key: {settings.dev_api_key}")


@app.command()
def up(timeout: float = typer.Option(180.0, help="Seconds to wait for every component to be ready.")) -> None:
    """Install what is missing, start what is down, bootstrap topics and schemas, wait until ready."""
    from shared.kafka import bootstrap_topics, wait_for_broker
    from stack import runner
    from stack.launcher import ensure_redis_server, fetch_kafka

    settings = _settings()
    started_at = time.monotonic()
    fetch_kafka(settings.kafka_cache_dir)
    ensure_redis_server()
    try:
        # The platform first; consuming services only once their topics exist, so none crash-loops at start.
        started = runner.start(settings, runner.PLATFORM)
        wait_for_broker(settings.kafka, timeout)
        report = bootstrap_topics(settings.kafka, timeout_s=timeout)
        started += runner.start(settings, runner.CONSUMERS)
        print("started: " + (", ".join(started) if started else "nothing (everything was already running)"))
        print(f"topics: {len(report.created)} created, {len(report.existing)} already present")
        for line in report.drift:
            print(f"drift: {line}")
        runner.wait_ready(settings, timeout)
        schemas_register()
        _provision_dev_key(settings)
    except runner.PortHeld as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    except (BrokerUnavailable, TimeoutError, KafkaException) as exc:
        err.print(f"[red]error:[/red] {exc}")
        err.print(f"logs: {settings.state_path() / 'logs'}")
        raise typer.Exit(1) from exc
    print(f"ready in {time.monotonic() - started_at:.1f}s")
    _summary(settings)


@app.command()
def bootstrap(timeout: float = typer.Option(120.0, help="Seconds to wait for the broker and the registry.")) -> None:
    """Once per cluster, idempotent (compose runs it as a one-shot service before the consumers): wait for the
    broker, create the topics, wait for the registry, register the schemas, provision the dev key."""
    import httpx

    from shared.kafka import bootstrap_topics, wait_for_broker

    settings = _settings()
    try:
        wait_for_broker(settings.kafka, timeout)
        report = bootstrap_topics(settings.kafka, timeout_s=timeout)
    except (BrokerUnavailable, KafkaException) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    print(f"topics: {len(report.created)} created, {len(report.existing)} already present")
    for line in report.drift:
        print(f"drift: {line}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{settings.schema_registry_url}/subjects", timeout=5.0).raise_for_status()
            break
        except httpx.HTTPError as exc:
            if time.monotonic() > deadline:
                err.print(f"[red]error:[/red] the registry at {settings.schema_registry_url} did not answer: {exc}")
                raise typer.Exit(1) from exc
            time.sleep(1.0)
    schemas_register()
    _provision_dev_key(settings)
    print("bootstrap done")


@app.command()
def down() -> None:
    """Stop the processes `pipeline up` started, through the supervisor; data stays."""
    from stack.runner import Supervisor

    supervisor = Supervisor(_settings())
    if supervisor.shutdown():
        print("pipeline stopped (data kept in .pipeline/)")
    else:
        removed = supervisor.clear_stale()
        print("pipeline was not running" + (f"; removed stale {', '.join(removed)}" if removed else ""))


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print the same as JSON.")) -> None:
    """Show every component (up/down, pid, port) and Kafka's topics with end offsets; exit 1 if any is down."""
    from shared.kafka import end_offsets
    from shared.topics import TOPICS
    from stack import runner

    settings = _settings()
    rows = runner.status(settings)
    kafka_up = next(r for r in rows if r["name"] == "kafka")["up"]
    offsets: dict[str, dict[int, int]] = {}
    if kafka_up:
        try:
            offsets = end_offsets(settings.kafka, [t.name for t in TOPICS], timeout_s=5)
        except Exception as exc:
            err.print(f"could not read end offsets: {exc}")
    all_up = all(r["up"] for r in rows)
    if as_json:
        topics = {
            t: {
                "partitions": len(p),
                "end_offsets": {str(k): v for k, v in p.items()},
                "total": sum(p.values()),
            }
            for t, p in offsets.items()
        }
        print(json.dumps({"up": all_up, "components": rows, "topics": topics}, indent=2))
    else:
        console = Console()
        table = Table(title="pipeline components")
        for column in ("component", "status", "pid", "port", "supervisor state"):
            table.add_column(column)
        for r in rows:
            table.add_row(
                r["name"],
                "[green]up[/green]" if r["up"] else "[red]down[/red]",
                str(r["pid"] or "-"),
                str(r["port"]),
                r["state"],
            )
        console.print(table)
        if offsets:
            topic_table = Table(title="kafka topics")
            topic_table.add_column("topic")
            topic_table.add_column("partitions", justify="right")
            topic_table.add_column("end offset (sum)", justify="right")
            for topic, parts in offsets.items():
                topic_table.add_row(topic, str(len(parts)), str(sum(parts.values())))
            console.print(topic_table)
    if not all_up:
        raise typer.Exit(1)


@app.command()
def demo() -> None:
    """Publish one event with the stock Confluent AvroSerializer and read it back with AvroDeserializer."""
    from stack.demo import round_trip

    result = round_trip(_settings())
    print(json.dumps(result, indent=2, default=str))


@app.command("triage-demo")
def triage_demo(timeout_s: float = 120.0) -> None:
    """Send a dozen realistic tickets through intake and print each triage result as a table."""
    from stack.triage_demo import run, table

    rows = run(_settings(), timeout_s)
    print(table(rows))
    if any(row["result"] is None for row in rows):
        raise typer.Exit(1)


if __name__ == "__main__":
    sys.exit(app())
