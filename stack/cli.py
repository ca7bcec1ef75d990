"""The ``pipeline`` command: run the local stack, inspect it, bootstrap topics and schemas."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from shared.errors import BrokerUnavailable
from shared.settings import PipelineSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Run and operate the Kafka inference pipeline.")
kafka_app = typer.Typer(no_args_is_help=True, help="The local Apache Kafka broker.")
redis_app = typer.Typer(no_args_is_help=True, help="The local Redis server.")
topics_app = typer.Typer(no_args_is_help=True, help="Topics from the registry in shared/topics.py.")
schemas_app = typer.Typer(no_args_is_help=True, help="Avro schemas in schemas/.")
app.add_typer(kafka_app, name="kafka")
app.add_typer(redis_app, name="redis")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")

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


if __name__ == "__main__":
    sys.exit(app())
