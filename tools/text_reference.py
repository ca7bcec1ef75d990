"""enrichment's ``normalise`` as it was before its fast paths (issue 22): the oracle the unit tests compare the fast
paths with, and the "before" of ``python -m loadtest.bench_text``."""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable

from services.enrichment.text import (
    PLACEHOLDERS,
    Normalised,
    Redacted,
    Span,
    _card_spans,
    _iban_spans,
    _ip,
    _phone,
    _whole,
    truncate,
)
from tools.training.evaluate import EVAL_SET

# The reference: normalise as it was before its fast paths (issue 22), every pattern scanned over every text, each
# step run whether or not its input can change it, the patterns as they were written then. The fast paths are
# checked against it, not against themselves. The checks that confirm a candidate (Luhn, mod-97, a parse) and
# truncate are shared: the fast paths only decide which scans run, never what a candidate is. A new kind of PII, or
# a pattern that finds more, goes into both.
_REF_HIDDEN_BLOCKS = re.compile(r"<(script|style|head)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_REF_COMMENTS = re.compile(r"<!--.*?-->", re.DOTALL)
_REF_TAGS = re.compile(r"</?[A-Za-z][^<>]*>")
_REF_BREAKS = re.compile(r"<(br|/p|/div|/li|/tr|/h[1-6])\b[^>]*>", re.IGNORECASE)
_REF_WHITESPACE = re.compile(r"\s+")
_REF_RULES: list[tuple[str, re.Pattern[str], Callable[[str], list[Span]]]] = [
    (
        "email",
        re.compile(
            r"(?<![A-Za-z0-9!#$%&'*+/=?^_`{|}~.-])"
            r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
            r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
            r"(?![A-Za-z0-9-])"
        ),
        _whole(lambda _: True),
    ),
    (
        "iban",
        re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])", re.IGNORECASE),
        _iban_spans,
    ),
    ("card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])"), _card_spans),
    ("ip", re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d]|\.\d)"), _whole(_ip)),
    (
        "ip",
        re.compile(r"(?<![0-9A-Fa-f:])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)[0-9A-Fa-f:]{2,39}(?![0-9A-Fa-f:])"),
        _whole(_ip),
    ),
    (
        "phone",
        re.compile(
            r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?![\w])"
            r"|(?<![\w(])(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\w])"
        ),
        _whole(_phone),
    ),
]


def reference_redact(text: str) -> Redacted:
    counts: Counter[str] = Counter()
    for kind, pattern, confirmed in _REF_RULES:

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


def reference_clean(text: str) -> str:
    if "<" in text or "&" in text:
        text = _REF_COMMENTS.sub(" ", _REF_HIDDEN_BLOCKS.sub(" ", text))
        text = html.unescape(_REF_TAGS.sub(" ", _REF_BREAKS.sub("\n", text)))
    text = unicodedata.normalize("NFKC", text)
    if not text.isprintable():
        text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf"))
    return _REF_WHITESPACE.sub(" ", text).strip()


def reference_normalise(text: str, limit: int) -> Normalised:
    """``normalise`` without its fast paths: what they must reproduce, and the bench's "before"."""
    redacted = reference_redact(reference_clean(text))
    cut, truncated = truncate(redacted.text, limit)
    return Normalised(cut, truncated, redacted.counts)


def eval_texts() -> list[str]:
    """The 120 hand-written evaluation tickets' texts (``shared/data/tickets-eval.jsonl``, beside the repository)."""
    with EVAL_SET.open(encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines if line.strip()]
