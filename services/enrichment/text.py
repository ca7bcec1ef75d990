"""Text cleaning and PII redaction: pure functions, run before anything is stored, inferred or logged."""

from __future__ import annotations

import html
import ipaddress
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

_HIDDEN_BLOCKS = re.compile(r"<(script|style|head)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENTS = re.compile(r"<!--.*?-->", re.DOTALL)
_TAGS = re.compile(r"</?[A-Za-z][^<>]*>")
_BREAKS = re.compile(r"<(br|/p|/div|/li|/tr|/h[1-6])\b[^>]*>", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")

# Candidates; each is confirmed by a check (Luhn, mod-97, a parse) before it is replaced.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9!#$%&'*+/=?^_`{|}~.-])"
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?![A-Za-z0-9-])"
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])", re.IGNORECASE)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d]|\.\d)")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)[0-9A-Fa-f:]{2,39}(?![0-9A-Fa-f:])")
# International (+ and 8 to 15 digits, groups split by spaces, dots, dashes or parentheses) or North-American
# style with separators. A bare run of digits is not a phone: it is an order or ticket number.
_PHONE = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?![\w])"
    r"|(?<![\w(])(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\w])"
)

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


_RULES: list[tuple[str, re.Pattern[str], Callable[[str], list[Span]]]] = [
    ("email", _EMAIL, _whole(lambda _: True)),
    ("iban", _IBAN, _iban_spans),
    ("card", _CARD, _card_spans),
    ("ip", _IPV4, _whole(_ip)),
    ("ip", _IPV6, _whole(_ip)),
    ("phone", _PHONE, _whole(_phone)),
]


@dataclass
class Redacted:
    text: str
    counts: dict[str, int] = field(default_factory=dict)


def redact(text: str) -> Redacted:
    """Replace e-mails, IBANs (mod-97), payment cards (Luhn), IP addresses and phone numbers with typed
    placeholders; count each kind. A candidate that fails its check (an order number) is kept."""
    counts: Counter[str] = Counter()
    for kind, pattern, confirmed in _RULES:

        def replace(match: re.Match[str], kind: str = kind, confirmed: Callable[[str], list[Span]] = confirmed) -> str:
            found = match.group(0)
            spans = confirmed(found)
            if not spans:
                return found
            counts[kind] += len(spans)
            pieces, at = [], 0
            for start, end in spans:
                pieces += [found[at:start], PLACEHOLDERS[kind]]
                at = end
            return "".join([*pieces, found[at:]])

        text = pattern.sub(replace, text)
    return Redacted(text, dict(counts))


def strip_html(text: str) -> str:
    if "<" not in text and "&" not in text:
        return text
    text = _COMMENTS.sub(" ", _HIDDEN_BLOCKS.sub(" ", text))
    text = _TAGS.sub(" ", _BREAKS.sub("\n", text))
    return html.unescape(text)


def clean(text: str) -> str:
    """HTML stripped, NFKC, control and format characters dropped, whitespace collapsed to single spaces."""
    text = unicodedata.normalize("NFKC", strip_html(text))
    if not text.isprintable():  # only then look for control (Cc) and format (Cf) characters, one by one
        text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf"))
    return _WHITESPACE.sub(" ", text).strip()


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
