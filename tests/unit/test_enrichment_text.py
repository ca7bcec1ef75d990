"""Normalisation and PII redaction: properties over generated PII inside random text."""

from __future__ import annotations

import string

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from services.enrichment.text import clean, iban_valid, luhn_valid, normalise, redact, truncate

WORDS = st.lists(st.text(alphabet=string.ascii_letters + ",.!?'", min_size=1, max_size=12), max_size=12).map(" ".join)
IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24, "IT": 27, "BE": 16, "CH": 21, "NO": 15, "MT": 31}


def with_check_digit(body: str) -> str:
    for digit in "0123456789":
        if luhn_valid(body + digit):
            return body + digit
    raise AssertionError("unreachable")


@st.composite
def cards(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.text(alphabet=string.digits, min_size=length - 1, max_size=length - 1))
    number = with_check_digit(draw(st.sampled_from("3456")) + body[1:])
    separator = draw(st.sampled_from(["", " ", "-"]))
    return separator.join(number[i : i + 4] for i in range(0, len(number), 4))


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(sorted(IBAN_LENGTHS)))
    bban = draw(st.text(alphabet=string.digits + string.ascii_uppercase, min_size=1, max_size=1)) + draw(
        st.text(alphabet=string.digits, min_size=IBAN_LENGTHS[country] - 5, max_size=IBAN_LENGTHS[country] - 5)
    )
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    assert iban_valid(iban)
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if draw(st.booleans()) else iban


@st.composite
def phones(draw: st.DrawFn) -> str:
    def d(n: int) -> str:
        return draw(st.text(alphabet=string.digits, min_size=n, max_size=n))

    return draw(
        st.sampled_from(
            [
                f"+{d(2)} {d(3)} {d(4)} {d(3)}",
                f"+1 ({d(3)}) {d(3)}-{d(4)}",
                f"+{d(2)}{d(10)}",
                f"({d(3)}) {d(3)}-{d(4)}",
                f"{d(3)}-{d(3)}-{d(4)}",
                f"{d(3)}.{d(3)}.{d(4)}",
            ]
        )
    )


ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).filter(lambda ip: not ip.is_unspecified).map(str)
PII = {"email": st.emails(), "card": cards(), "iban": ibans(), "phone": phones(), "ip": ips}


@settings(max_examples=300)
@given(before=WORDS, after=WORDS, kind=st.sampled_from(sorted(PII)), data=st.data())
def test_generated_pii_inside_random_text_never_survives(
    before: str, after: str, kind: str, data: st.DataObject
) -> None:
    secret = data.draw(PII[kind])
    result = redact(f"{before} {secret} {after}")
    assert secret not in result.text
    assert result.counts.get(kind, 0) >= 1, (secret, result)


@given(before=WORDS, after=WORDS, body=st.text(alphabet=string.digits, min_size=16, max_size=16))
def test_luhn_invalid_sixteen_digit_numbers_are_kept(before: str, after: str, body: str) -> None:
    assume(not luhn_valid(body))
    text = f"{before} order {body} {after}"
    assert redact(text).text == text


@given(WORDS)
def test_plain_text_is_kept(text: str) -> None:
    assert redact(text).text == text and redact(text).counts == {}


def test_a_card_beside_another_number_and_an_iban_before_words_are_still_found() -> None:
    result = redact("paid 2 4111 1111 1111 1111 3 times, IBAN DE89 3704 0044 0532 0130 00 and more")
    assert result.text == "paid 2 [CARD] 3 times, IBAN [IBAN] and more"
    assert result.counts == {"card": 1, "iban": 1}


def test_each_kind_has_its_placeholder() -> None:
    result = redact("mail a.b@example.com, call +44 20 7946 0958 or (555) 123-4567 from 10.0.0.1 / 2001:db8::1")
    assert result.text == "mail [EMAIL], call [PHONE] or [PHONE] from [IP] / [IP]"
    assert result.counts == {"email": 1, "phone": 2, "ip": 2}


def test_times_versions_and_order_numbers_are_not_pii() -> None:
    text = "at 10:30:00 on build 1.2.3.4.5, order 12345678, ticket 2026-11-26"
    assert redact(text).text == text


def test_clean_strips_html_controls_and_collapses_whitespace_with_nfkc() -> None:
    raw = (
        "<p>Hello&nbsp;<b>World</b></p><script>alert(1)</script>\x00\u200b  \uff46\uff55\uff4c\uff4c\twidth\n\n<br>end"
    )
    assert clean(raw) == "Hello World full width end"


def test_truncation_never_splits_a_placeholder_and_marks_the_cut() -> None:
    text, cut = truncate("write to [EMAIL] soon", 12)
    assert cut and text == "write to"
    assert truncate("short", 10) == ("short", False)
    result = normalise("mail me at someone@example.com " + "x" * 50, 30)
    assert result.truncated and "@" not in result.text and result.pii_counts == {"email": 1}


def test_text_empty_after_cleaning_is_empty() -> None:
    assert normalise("<p> \x00 </p>", 100).text == ""


def test_activity_counts_sliding_windows_and_repeats_the_first_answer_for_a_seen_id() -> None:
    from datetime import UTC, datetime, timedelta

    from services.enrichment.domain import record_activity

    t0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    state, first = record_activity(None, "a", t0)
    assert (first.events_1h, first.events_24h, first.seconds_since_previous, first.duplicate) == (1, 1, None, False)
    state, second = record_activity(state, "b", t0 + timedelta(minutes=30))
    assert (second.events_1h, second.events_24h, second.seconds_since_previous) == (2, 2, 1800.0)
    state, late = record_activity(state, "c", t0 + timedelta(minutes=75))
    assert (late.events_1h, late.events_24h) == (2, 3)  # "a" left the hour, not the day
    state, again = record_activity(state, "b", t0 + timedelta(minutes=80))
    assert again.duplicate and (again.events_1h, again.events_24h, again.seconds_since_previous) == (2, 2, 1800.0)
    state, next_day = record_activity(state, "d", t0 + timedelta(hours=25))
    assert (next_day.events_1h, next_day.events_24h) == (1, 2)  # "a" and "b" are gone after 24 h
    assert set(state["ids"]) == {"c", "d"}
