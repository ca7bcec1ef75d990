"""DlqFilter without a broker: the query string and the command line spell the same filter, and each condition,
event id and exact partition/offset included, selects only the dead letters it names."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.replay.records import DeadLetter, DlqFilter


def make_dead_letter(**overrides: Any) -> DeadLetter:
    fields: dict[str, Any] = {
        "topic": "svc.dlq",
        "partition": 1,
        "offset": 42,
        "timestamp_ms": 1_700_000_000_000,
        "key": b"acme:customer-1",
        "value": b"\x00bad",
        "headers": [("ce_id", b"ev-1"), ("ce_tenant", b"acme"), ("dlq.error.category", b"dependency")],
    }
    fields.update(overrides)
    return DeadLetter(**fields)


def test_from_params_leaves_out_what_is_none() -> None:
    where = DlqFilter.from_params(event_id="ev-1", tenant=None, partition=1, offset_from=None)
    assert where == DlqFilter(event_id="ev-1", partition=1)


def test_from_params_refuses_an_unknown_condition() -> None:
    with pytest.raises(ValidationError):
        DlqFilter.from_params(ce_id="ev-1")


def test_an_event_id_selects_only_that_events_dead_letters() -> None:
    where = DlqFilter.from_params(event_id="ev-1")
    assert where.matches(make_dead_letter())
    assert not where.matches(make_dead_letter(headers=[("ce_id", b"ev-2"), ("ce_tenant", b"acme")]))
    assert not where.matches(make_dead_letter(headers=[]))


def test_a_partition_and_one_offset_select_exactly_one_record() -> None:
    where = DlqFilter.from_params(partition=1, offset_from=42, offset_to=42)
    assert where.matches(make_dead_letter())
    assert not where.matches(make_dead_letter(offset=41))
    assert not where.matches(make_dead_letter(offset=43))
    assert not where.matches(make_dead_letter(partition=0))


def test_a_tenant_selects_only_its_records() -> None:
    assert DlqFilter.from_params(tenant="acme").matches(make_dead_letter())
    assert not DlqFilter.from_params(tenant="globex").matches(make_dead_letter())


def test_the_description_names_the_event_id() -> None:
    assert DlqFilter(event_id="ev-1").describe() == '{"event_id": "ev-1"}'
