"""Normalisation and PII redaction: properties over generated PII inside random text."""

from __future__ import annotations

import string
from collections.abc import Callable

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from services.enrichment.text import (
    clean,
    iban_valid,
    luhn_valid,
    normalise,
    redact,
    truncate,
)
from tools.text_reference import reference_clean, reference_normalise, reference_redact

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
    iban = iban_of(country, bban)
    assert iban_valid(iban)
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if draw(st.booleans()) else iban


def iban_of(country: str, bban: str) -> str:
    """``country``, the check digits that make the whole pass mod-97, then ``bban``."""
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


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


def test_activity_counts_sliding_windows_and_a_repeat_reports_what_it_reported_first() -> None:
    from datetime import UTC, datetime, timedelta

    from services.enrichment.domain import Activity, record_activity

    t0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    state, first = record_activity(None, t0)
    assert (first.events_1h, first.events_24h, first.seconds_since_previous, first.duplicate) == (1, 1, None, False)
    state, second = record_activity(state, t0 + timedelta(minutes=30))
    assert (second.events_1h, second.events_24h, second.seconds_since_previous) == (2, 2, 1800.0)
    state, late = record_activity(state, t0 + timedelta(minutes=75))
    assert (late.events_1h, late.events_24h) == (2, 3)  # the first left the hour, not the day
    # What the seen table keeps of the second, and what a repeat of it reports: the same, marked a duplicate.
    again = Activity.repeat(second.seen())
    assert again.duplicate and (again.events_1h, again.events_24h, again.seconds_since_previous) == (2, 2, 1800.0)
    state, next_day = record_activity(state, t0 + timedelta(hours=25))
    assert (next_day.events_1h, next_day.events_24h) == (1, 2)  # the first two are gone after 24 h
    assert sorted(int(m) for m in state["m"]) == [
        int((t0 + timedelta(minutes=m)).timestamp() // 60) for m in (75, 1500)
    ]


def test_activity_drops_the_ids_an_entry_kept_before_the_seen_table() -> None:
    from datetime import UTC, datetime

    from services.enrichment.domain import record_activity

    at = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    minute = str(int(at.timestamp() // 60))
    state, counted = record_activity({"m": {minute: 2}, "ids": {"a": [int(minute), 1, 1, None]}, "last": None}, at)
    assert state == {"m": {minute: 3}, "last": at.timestamp()} and counted.events_1h == 3


# Tickets for the comparison with the reference: words, PII of every kind, markup, characters that NFKC or the
# patterns treat specially (full-width and Arabic-Indic digits, the Kelvin sign and the long s that match [A-Z]
# ignoring case, entities that decode to '@' or '<'), controls and format characters, odd whitespace, and raw
# characters from the patterns' own classes; glued with and without separators, so that lookarounds meet neighbours.
MARKUP = [
    "<p>", "</p>", "<br>", "<br/>", "<b>", "</div>", "<li>", "<h2 class=x>", "<script>var a = 1;</script>",
    "<style>p { color: red }</style>", "<!-- 4111 1111 1111 1111 -->", "<head><title>t</title></head>",
    "<a href='mailto:a@b.io'>", "&nbsp;", "&amp;", "&lt;b&gt;", "&#64;", "&#x40;", "&#49;&#50;", "<", ">", "&",
]  # fmt: skip
UNICODE = [
    "\uff11\uff12\uff13\uff14", "\uff20", "\uff1cb\uff1e", "\u0663\u0664\u0665\u0666", "\u0967\u0968",
    "\u00b2", "\u2460", "\u212a", "\u017f", "\u0131", "\u0130", "\ufb01", "e\u0301", "\u00e9", "\u00a0", "\u200b",
    "\u2028", "\u3000", "\x85", "\x1c", "\x00", "\x07", "\x7f", "\ufeff", "\u00ad", "\u202e", "\t", "\r\n",
]  # fmt: skip
RAW = string.digits + "abcdefxyzABCDEFXYZ:.-+()[] @<>&;#/_\n" + "\u0663\u212a\u017f\u00a0"
SEPARATORS = ["", " ", "  ", "\n", "-", ".", ":", "+", "(", ")", "@", ", ", "_", "/"]


@st.composite
def numbers(draw: st.DrawFn) -> str:
    """Short digit groups, split the ways phones, addresses, dates and order numbers are: candidates of every size,
    down to the fewest digits a kind can have (a seven-digit phone, an IPv4 address of one-digit parts)."""
    groups = draw(st.lists(st.text(alphabet=string.digits, min_size=1, max_size=4), min_size=1, max_size=5))
    splits = st.sampled_from(["", " ", ".", "-", "(", ") ", "+"])
    splits_drawn = draw(st.lists(splits, min_size=len(groups) - 1, max_size=len(groups) - 1))
    pieces = [split + group for split, group in zip(splits_drawn, groups[1:], strict=True)]
    return draw(st.sampled_from(["", "+", "("])) + groups[0] + "".join(pieces)


@st.composite
def lettered_ibans(draw: st.DrawFn) -> str:
    """Valid IBANs of any country and length with letters in the BBAN (as few as two digits in all), some in lower
    case or with the letters that match [A-Z] when case is ignored (dotless i, long s, the Kelvin sign)."""
    country = draw(st.text(alphabet=string.ascii_uppercase, min_size=2, max_size=2))
    alphabet = draw(st.sampled_from([string.ascii_uppercase, string.ascii_uppercase + string.digits]))
    iban = iban_of(country, draw(st.text(alphabet=alphabet, min_size=11, max_size=30)))
    odd = [iban.lower(), iban.replace("I", "\u0131"), iban.replace("S", "\u017f"), iban.replace("K", "\u212a")]
    return draw(st.sampled_from([iban, *odd]))


# Digits that \d matches besides ASCII: Arabic-Indic and Devanagari (NFKC keeps them), full-width (NFKC makes them
# ASCII).
DIGIT_SCRIPTS = [
    str.maketrans(string.digits, "".join(chr(zero + n) for n in range(10))) for zero in (0x660, 0x966, 0xFF10)
]


def in_other_digits(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(strategy, st.sampled_from(DIGIT_SCRIPTS)).map(lambda drawn: drawn[0].translate(drawn[1]))


PIECES = st.one_of(
    WORDS,
    *PII.values(),
    numbers(),
    lettered_ibans(),
    ips.map(str.upper),
    in_other_digits(st.one_of(cards(), phones(), ips, numbers())),
    st.sampled_from(MARKUP),
    st.sampled_from(UNICODE),
    st.text(alphabet=RAW, max_size=24),
    st.text(alphabet=string.digits + " -.", min_size=4, max_size=24),
    st.text(max_size=8),
)


@st.composite
def tickets(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(PIECES, max_size=12))
    glue = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(pieces), max_size=len(pieces)))
    return "".join(piece + sep for piece, sep in zip(pieces, glue, strict=True))


def outcome(call: Callable[[], object]) -> object:
    """What ``call`` returns, or the type of what it raises: a failure is reproduced too, not just a result."""
    try:
        return call()
    except Exception as error:
        return type(error)


@settings(max_examples=1000, deadline=None)
@given(text=tickets(), limit=st.integers(16, 300))
def test_normalise_matches_the_reference_on_generated_tickets(text: str, limit: int) -> None:
    assert outcome(lambda: normalise(text, limit)) == outcome(lambda: reference_normalise(text, limit))


@settings(max_examples=500, deadline=None)
@given(tickets())
def test_clean_matches_the_reference_on_generated_tickets(text: str) -> None:
    assert outcome(lambda: clean(text)) == outcome(lambda: reference_clean(text))


@settings(max_examples=500, deadline=None)
@given(tickets())
def test_redact_matches_the_reference_on_uncleaned_generated_tickets(text: str) -> None:
    # Not cleaned first: the characters NFKC would have replaced reach the patterns and their checks.
    assert outcome(lambda: redact(text)) == outcome(lambda: reference_redact(text))


@settings(max_examples=1000, deadline=None)
@given(before=WORDS, after=WORDS, number=st.one_of(numbers(), in_other_digits(numbers()), lettered_ibans()))
def test_normalise_matches_the_reference_on_one_number_among_words(before: str, after: str, number: str) -> None:
    # The only digits in the text: a candidate with just as many as its kind needs must still be found.
    text = f"{before} {number} {after}"
    assert outcome(lambda: normalise(text, 4000)) == outcome(lambda: reference_normalise(text, 4000))
