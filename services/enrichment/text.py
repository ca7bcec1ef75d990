"""Text cleaning and PII redaction: pure functions, run before anything is stored, inferred or logged."""

from __future__ import annotations

import html
import ipaddress
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

_HIDDEN_BLOCKS = re.compile(r"<(script|style|head)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENTS = re.compile(r"<!--.*?-->", re.DOTALL)
_TAGS = re.compile(r"</?[A-Za-z][^<>]*>")
_BREAKS = re.compile(r"<(br|/p|/div|/li|/tr|/h[1-6])\b[^>]*>", re.IGNORECASE)

# Candidates; each is confirmed by a check (Luhn, mod-97, a parse) before it is replaced. The digit-led patterns put
# their "nothing before me" lookbehind after the first digit, not before it: a pattern that opens with a character
# class lets the regex engine jump from digit to digit instead of trying the lookbehind at every position. Same
# matches: once the digit is consumed, the lookbehind still only tests the character before it.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9!#$%&'*+/=?^_`{|}~.-])"
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?![A-Za-z0-9-])"
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])", re.IGNORECASE)
_CARD = re.compile(r"\d(?<![\d-]\d)(?:[ -]?\d){12,18}(?!\d)")
_IPV4 = re.compile(r"\d(?<![\d.]\d)\d{0,2}(?:\.\d{1,3}){3}(?!\d|\.\d)")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)[0-9A-Fa-f:]{2,39}(?![0-9A-Fa-f:])")
# International (+ and 8 to 15 digits, groups split by spaces, dots, dashes or parentheses) or North-American
# style with separators. A bare run of digits is not a phone: it is an order or ticket number.
_PHONE = re.compile(
    r"\+(?<![\w+]\+)\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?!\w)"
    r"|(?:\((?<![\w(]\()\d{3}\) ?|\d(?<![\w(]\d)\d{2}[-. ])\d{3}[-. ]\d{4}(?!\w)"
)
# Quick scans that find something in every text their pattern matches in, so that the slow scan runs only where it
# may: two letters, the check digits and the eleven characters every IBAN has after them; an IPv4 address from its
# first dot; two colons with only hex digits between them. Each opens with a digit or a literal, for the jump.
_IBAN_GUARD = re.compile(r"\d(?<=[A-Z]{2}\d)\d(?: ?[A-Za-z0-9]){11}", re.IGNORECASE)
_IPV4_GUARD = re.compile(r"\.(?<=\d\.)\d{1,3}\.\d{1,3}\.\d")
_IPV6_GUARD = re.compile(r":[0-9A-Fa-f]*:")
_DIGIT = re.compile(r"\d")

PLACEHOLDERS = {"email": "[EMAIL]", "iban": "[IBAN]", "card": "[CARD]", "ip": "[IP]", "phone": "[PHONE]"}


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    iban = candidate.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


Span = tuple[int, int]


def _whole(check: Callable[[str], bool]) -> Callable[[str], list[Span]]:
    return lambda match: [(0, len(match))] if check(match) else []


def _groups(match: str) -> list[Span]:
    """The runs of non-space, non-dash characters of ``match``, as spans."""
    return [m.span() for m in re.finditer(r"[^ -]+", match)]


def _card_spans(match: str) -> list[Span]:
    """The likeliest run of whole digit groups that is 13 to 19 digits and passes Luhn (a card written next to
    another number must still be found), then the same for what is left on either side."""
    digits = _digits(match)
    if len(digits) == 16 and luhn_valid(digits):
        # The common case, a card alone: no run of its groups ranks above all of them (16 digits, the most likely
        # length), and nothing is left on either side (the pattern starts and ends with a digit).
        return [(0, len(match))]
    groups = _groups(match)
    found: list[tuple[tuple[bool, bool, int], Span]] = []
    for i in range(len(groups)):
        for j in range(i, len(groups)):
            start, end = groups[i][0], groups[j][1]
            digits = _digits(match[start:end])
            if 13 <= len(digits) <= 19 and luhn_valid(digits):
                # Most cards have 16 digits, then 15 (Amex); a neighbouring number passes Luhn one time in ten.
                found.append(((len(digits) == 16, len(digits) == 15, len(digits)), (start, end)))
    if not found:
        return []
    best = max(found, key=lambda item: item[0])[1]
    return [*_card_spans_in(match, 0, best[0]), best, *_card_spans_in(match, best[1], len(match))]


def _card_spans_in(match: str, start: int, end: int) -> list[Span]:
    return [(start + a, start + b) for a, b in _card_spans(match[start:end])] if end - start >= 13 else []


def _iban_spans(match: str) -> list[Span]:
    """The longest prefix, ending at a group boundary, that passes mod-97 (text may follow a grouped IBAN)."""
    ends = sorted({end for _, end in _groups(match)}, reverse=True)
    for end in ends:
        if iban_valid(match[:end]):
            return [(0, end)]
    return []


def _ip(match: str) -> bool:
    try:
        ipaddress.ip_address(match)
    except ValueError:
        return False
    return any(ch.isdigit() or ch.lower() in "abcdef" for ch in match)


def _phone(match: str) -> bool:
    return 7 <= len(_digits(match)) <= 15


# One kind's scan, and what a text must hold for the scan to confirm anything in it.
class _Rule(NamedTuple):
    kind: str
    pattern: re.Pattern[str]
    confirmed: Callable[[str], list[Span]]
    min_digits: int = 0  # a confirmed candidate holds at least this many digits
    needs: str = ""  # a character every candidate holds
    guard: re.Pattern[str] | None = None


# The order decides what a text that fits two kinds is (an e-mail address's digits are never a phone number).
_RULES: list[_Rule] = [
    _Rule("email", _EMAIL, _whole(lambda _: True), needs="@"),
    _Rule("iban", _IBAN, _iban_spans, min_digits=2, guard=_IBAN_GUARD),
    _Rule("card", _CARD, _card_spans, min_digits=13),
    _Rule("ip", _IPV4, _whole(_ip), min_digits=4, guard=_IPV4_GUARD),
    _Rule("ip", _IPV6, _whole(_ip), needs=":", guard=_IPV6_GUARD),
    _Rule("phone", _PHONE, _whole(_phone), min_digits=7),
]


@dataclass
class Redacted:
    text: str
    counts: dict[str, int] = field(default_factory=dict)


def redact(text: str) -> Redacted:
    """Replace e-mails, IBANs (mod-97), payment cards (Luhn), IP addresses and phone numbers with typed
    placeholders; count each kind. A candidate that fails its check (an order number) is kept."""
    counts: Counter[str] = Counter()
    # A scan is skipped only where it could confirm nothing, so the text and the counts are those of running them
    # all. One scan counts the digits for every rule; replacing never adds a digit (placeholders have none), so the
    # count stays an upper bound for the text each later rule sees. The other tests look at that text itself.
    digits = len(_DIGIT.findall(text))
    for rule in _RULES:
        if digits < rule.min_digits or rule.needs not in text or (rule.guard and not rule.guard.search(text)):
            continue
        text = rule.pattern.sub(partial(_replace, rule, counts), text)
    return Redacted(text, dict(counts))


def _replace(rule: _Rule, counts: Counter[str], match: re.Match[str]) -> str:
    found = match.group(0)
    spans = rule.confirmed(found)
    if not spans:
        return found
    counts[rule.kind] += len(spans)
    pieces, at = [], 0
    for start, end in spans:
        pieces += [found[at:start], PLACEHOLDERS[rule.kind]]
        at = end
    return "".join([*pieces, found[at:]])


def strip_html(text: str) -> str:
    """Tags, comments, scripts and styles out, entities decoded; a text without ``<`` or ``&`` is returned as is."""
    if "<" in text:  # every markup pattern opens with it
        text = _COMMENTS.sub(" ", _HIDDEN_BLOCKS.sub(" ", text))
        text = _TAGS.sub(" ", _BREAKS.sub("\n", text))
    return html.unescape(text) if "&" in text else text


def clean(text: str) -> str:
    """HTML stripped, NFKC, control and format characters dropped, whitespace collapsed to single spaces."""
    text = strip_html(text)
    if not text.isascii():  # NFKC leaves every ASCII character as it is
        text = unicodedata.normalize("NFKC", text)
    if not text.isprintable():  # only then look for control (Cc) and format (Cf) characters
        # Each distinct character once, not every character: a ticket repeats a few dozen. Cc and Cf are never
        # printable, so the rest need no category lookup.
        dropped = {
            ord(ch): None
            for ch in set(text)
            if not ch.isprintable() and not ch.isspace() and unicodedata.category(ch) in ("Cc", "Cf")
        }
        if dropped:
            text = text.translate(dropped)
    # str.split's whitespace is the regex \s (both are Py_UNICODE_ISSPACE): the same runs collapse, the same ends go.
    return " ".join(text.split())


@dataclass
class Normalised:
    text: str
    truncated: bool
    pii_counts: dict[str, int]


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """At most ``limit`` characters, never ending inside a placeholder; cut at a space when one is near."""
    if len(text) <= limit:
        return text, False
    cut = text[:limit]
    opening = cut.rfind("[")
    if opening != -1 and "]" not in cut[opening:] and text[opening:].split("]", 1)[0] + "]" in PLACEHOLDERS.values():
        cut = cut[:opening]
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip(), True


def normalise(text: str, limit: int) -> Normalised:
    """What enrichment does to a text: clean, redact, truncate. The result may be empty (the caller decides)."""
    # In this order, so a cut never leaves half an e-mail address behind and never splits a placeholder.
    redacted = redact(clean(text))
    cut, truncated = truncate(redacted.text, limit)
    return Normalised(cut, truncated, redacted.counts)
