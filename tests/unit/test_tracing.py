"""W3C traceparent: parse, keep the trace id across hops, start anew on garbage."""

from __future__ import annotations

import pytest

from shared.tracing import TraceContext

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_parse_reads_the_four_fields() -> None:
    trace = TraceContext.parse(VALID.encode())
    assert trace == TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    assert trace.header() == VALID


def test_child_keeps_the_trace_id_and_takes_a_new_span_id() -> None:
    parent = TraceContext.parse(VALID)
    assert parent is not None
    child = parent.child()
    assert child.trace_id == parent.trace_id
    assert child.span_id != parent.span_id and len(child.span_id) == 16


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ],
)
def test_invalid_headers_parse_to_none(header: str | None) -> None:
    assert TraceContext.parse(header) is None


def test_a_later_version_with_more_fields_is_read_by_its_first_four() -> None:
    trace = TraceContext.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next")
    assert trace is not None and trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_started_trace_is_well_formed() -> None:
    started = TraceContext.start()
    assert TraceContext.parse(started.header()) == started
