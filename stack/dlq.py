"""``pipeline dlq``: list dead-letter topics, page through one, and replay a filtered selection."""

from __future__ import annotations

import functools
import inspect
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from shared.replay.records import DlqFilter
from shared.settings import PipelineSettings

dlq_app = typer.Typer(no_args_is_help=True, help="Dead-letter topics: inspect and replay.")
# Piped into another program, rich would fit tables to 80 columns and cut their cells: not a terminal, no limit.
out = Console(width=None if sys.stdout.isatty() else 100_000)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 100_000)
# 0 done (or nothing to do), 1 partial, 2 bad arguments, 3 refused (everything selected was replayed before:
# ``--force`` replays it again; or all it matched failed again after a replay: ``--include-refailed`` takes it).
EXIT_CODES = {"done": 0, "dry_run": 0, "partial": 1, "refused": 3}

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(value: str | None) -> datetime | None:
    """RFC 3339 (``2026-11-27T03:00:00Z``) or an age (``90m``, ``2h``, ``1d``: that long ago)."""
    if value is None:
        return None
    relative = _RELATIVE.match(value.strip())
    if relative:
        return datetime.now(UTC) - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        moment = datetime.fromisoformat(value.strip().upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is neither RFC 3339 nor an age like 2h") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _codec(settings: PipelineSettings) -> Any:
    from shared.codec import EventCodec

    return EventCodec.from_settings(settings)


# The filter options of ``show`` and ``replay``, declared once: name -> (type, option).
FILTER_OPTIONS: dict[str, tuple[Any, Any]] = {
    "since": (str | None, typer.Option(None, help="Failed at or after: RFC 3339 or an age (2h, 1d).")),
    "until": (str | None, typer.Option(None, help="Failed before: RFC 3339 or an age.")),
    "category": (
        list[str] | None,
        typer.Option(None, help="Error category (repeatable): deserialization, dependency, ..."),
    ),
    "error_type": (list[str] | None, typer.Option(None, help="Error type (repeatable), e.g. DeserializationError.")),
    "key": (str | None, typer.Option(None, help="Exactly this record key (tenant:subject).")),
    "tenant": (str | None, typer.Option(None, help="Only this tenant's records.")),
    "event_id": (str | None, typer.Option(None, help="Only this event's dead letters (ce_id).")),
    "partition": (int | None, typer.Option(None, help="Only this DLQ partition.")),
    "offset_from": (int | None, typer.Option(None, help="From this DLQ offset (inclusive).")),
    "offset_to": (int | None, typer.Option(None, help="Up to this DLQ offset (inclusive).")),
}


def filtered(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the filter options after its first argument; it receives them as ``where``, a DlqFilter."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "where"]
    options = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=kind)
        for name, (kind, option) in FILTER_OPTIONS.items()
    ]

    @functools.wraps(command)
    def with_filter(**given: Any) -> None:
        chosen = {name: given.pop(name) for name in FILTER_OPTIONS}
        chosen["since"], chosen["until"] = parse_time(chosen["since"]), parse_time(chosen["until"])
        command(where=DlqFilter.from_params(**chosen), **given)

    with_filter.__signature__ = inspect.Signature([own[0], *options, *own[1:]])  # type: ignore[attr-defined]
    with_filter.__annotations__ = {}
    return with_filter


def _no_such_dlq(settings: PipelineSettings, service: str, exc: LookupError) -> typer.Exit:
    """Say which DLQs exist (and the nearest name) when ``service`` has none; exit 2."""
    import difflib

    from shared.topics import DLQ_SUFFIX

    try:
        topics = settings.kafka.admin(quiet=True).list_topics(timeout=10).topics
        known = sorted(t.removesuffix(DLQ_SUFFIX) for t in topics if t.endswith(DLQ_SUFFIX))
    except KafkaException:
        known = []
    near = difflib.get_close_matches(service, known, n=1)
    hint = f"; did you mean {near[0]}?" if near else ""
    err.print(f"[red]error:[/red] {exc}: no DLQ for {service!r}. The DLQs here: {', '.join(known) or 'none'}{hint}")
    return typer.Exit(2)


@dlq_app.command("list")
def dlq_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every service's DLQ: records by category, and the oldest and newest failure."""
    from shared.replay.operations import dlq_topics, read_ledger, summarize
    from shared.topics import REPLAY_LEDGER

    settings = PipelineSettings()
    ledger = read_ledger(settings.kafka, REPLAY_LEDGER, _codec(settings))
    found = [
        {"service": service, **summarize(settings.kafka, topic, ledger=ledger).as_dict()}
        for service, topic in dlq_topics(settings.kafka)
    ]
    if as_json:
        print(json.dumps({"dlqs": found}, indent=2))
        return
    table = Table(title="Dead-letter topics")
    for column in ("service", "topic", "records", "replayed", "refailed", "by category", "oldest", "newest"):
        table.add_column(column)
    for row in found:
        categories = ", ".join(f"{c} {n}" for c, n in row["by_category"].items())
        oldest = row["oldest"]["failed_at"] if row["oldest"] else ""
        newest = row["newest"]["failed_at"] if row["newest"] else ""
        table.add_row(
            row["service"],
            row["topic"],
            str(row["total"]),
            str(row["replayed"]),
            str(row["refailed"]),
            categories,
            oldest,
            newest,
        )
    out.print(table)


@dlq_app.command("show")
@filtered
def dlq_show(
    service: str = typer.Argument(..., help="The service whose DLQ to read (inference, notifier, ...)."),
    *,
    where: DlqFilter,
    limit: int = typer.Option(20, min=1, max=1000, help="Records per page."),
    cursor: str | None = typer.Option(None, help="The next page's cursor, as printed by the previous page."),
    values: bool = typer.Option(False, "--values", help="Decode values and show headers and stack traces."),
    full: bool = typer.Option(False, "--full", help="Error messages in full (else their first 120 characters)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One page of dead letters matching the filters (``--cursor`` for the next page)."""
    from shared.replay.operations import browse
    from shared.topics import dlq_topic

    settings = PipelineSettings()
    try:
        page = browse(settings.kafka, _codec(settings) if values else None, dlq_topic(service), where, cursor, limit)
    except LookupError as exc:
        raise _no_such_dlq(settings, service, exc) from exc
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps({"records": page.records, "next_cursor": page.next_cursor}, indent=2))
        return
    table = Table(title=f"{dlq_topic(service)}")
    for column in ("partition/offset", "failed at", "category", "error", "event", "message"):
        table.add_column(column)
    for r in page.records:
        table.add_row(
            f"{r['partition']}/{r['offset']}",
            r["failed_at"],
            r["category"],
            r["error_type"],
            r["event_id"],
            r["message"] if full else r["message"][:120],
        )
    out.print(table)
    if values:
        for r in page.records:
            out.print_json(json.dumps({k: r[k] for k in ("partition", "offset", "headers", "value", "stacktrace")}))
    err.print(f"next page: --cursor {page.next_cursor}" if page.next_cursor else "end of the DLQ")


@dlq_app.command("replay")
@filtered
def dlq_replay(
    service: str = typer.Argument(..., help="The service whose DLQ to replay into <service>.replay."),
    *,
    where: DlqFilter,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan and audit it; write nothing."),
    rate: float | None = typer.Option(None, min=0.1, help="Records per second, at most."),
    limit: int | None = typer.Option(None, min=1, help="Replay at most this many (the first, by partition)."),
    keep_headers: bool = typer.Option(False, "--keep-headers", help="Keep the dlq.* headers on the replayed records."),
    force: bool = typer.Option(False, "--force", help="Replay records the ledger says were replayed already."),
    include_refailed: bool = typer.Option(
        False, "--include-refailed", help="Also take records that failed again after a replay (left out by default)."
    ),
    requested_by: str = typer.Option("", help="Who asks (recorded in the audit); default: $USER."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (the plan and the result)."),
) -> None:
    """Replay the dead letters the filters select, in transactions, with a ledger and an audit record.

    Records that failed again after a replay are left out (and listed) unless --include-refailed.
    Exit codes: 0 done (or nothing to do), 1 partial, 2 bad arguments, 3 refused: everything selected was
    replayed before (--force replays it again), or everything matched failed again after a replay
    (--include-refailed takes it).
    """
    import getpass

    from shared.replay.operations import ReplayOptions, execute, plan

    settings = PipelineSettings()
    try:
        chosen = plan(settings.kafka, service, where, limit, include_refailed)
    except LookupError as exc:
        raise _no_such_dlq(settings, service, exc) from exc
    options = ReplayOptions(
        requested_by=requested_by or getpass.getuser(),
        rate=rate,
        keep_headers=keep_headers,
        force=force,
        dry_run=dry_run,
    )
    if not as_json:
        categories = ", ".join(f"{c} {n}" for c, n in chosen.by_category.most_common()) or "none"
        err.print(f"{chosen.dlq_topic} → {chosen.target_topic}: {chosen.total} selected ({categories})")
        for sample in chosen.samples:
            err.print(f"  {sample['partition']}/{sample['offset']} {sample['category']} {sample['message'][:100]}")
        if chosen.refailed:
            err.print(f"left out: {chosen.describe_refailed()} (--include-refailed takes them)")
            for sample in chosen.refailed_samples:
                err.print(f"  {sample['partition']}/{sample['offset']} after replay {sample['replays']}x")
    if as_json or dry_run or not chosen.total:
        result = execute(settings.kafka, _codec(settings), chosen, options)
    else:
        with Progress(
            TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err
        ) as bar:
            task = bar.add_task("replay", total=chosen.total)
            result = execute(
                settings.kafka,
                _codec(settings),
                chosen,
                options,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    if as_json:
        print(json.dumps({"plan": chosen.as_dict(), "result": result.as_dict()}, indent=2))
    else:
        color = {"done": "green", "dry_run": "cyan", "partial": "yellow", "refused": "red"}[result.outcome]
        err.print(
            f"[{color}]{result.outcome}[/{color}] {result.replay_id}: selected {result.selected}, replayed "
            f"{result.replayed}, skipped {result.skipped} (replayed before), failed {result.failed}"
            + (f" — {result.error}" if result.error else "")
            + (f", left out {result.refailed} (failed again after replay)" if result.refailed else "")
            + (f" — refused: {_refusal(result)}" if result.outcome == "refused" else "")
        )
    raise typer.Exit(EXIT_CODES[result.outcome])


def _refusal(result: Any) -> str:
    """Why a replay was refused, and the option that overrides each reason."""
    reasons = []
    if result.skipped:
        reasons.append(f"{result.skipped} replayed before (--force replays them again)")
    if result.refailed:
        reasons.append(
            f"{result.refailed} failed again after a replay, so replaying them again could loop "
            "(--include-refailed replays them anyway)"
        )
    return "; ".join(reasons)
