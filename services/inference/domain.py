"""Inference's rules and types, without I/O: labels, the keyword baseline, a record's outcome, what was answered."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from shared.errors import PermanentError, PipelineError
from shared.events import EventEnriched, EventInferred, ModelRef, Prediction
from shared.status import read_result

CATEGORIES = ("billing", "technical", "account", "shipping", "security", "other")
PRIORITIES = ("low", "normal", "high", "urgent")
# A plain ticket any working model answers.
CANARY = "I was charged twice for my subscription this month, please refund one of the payments."


@dataclass(frozen=True)
class Label:
    """One head's answer: the label, its probability and every label's probability."""

    label: str
    confidence: float
    scores: Mapping[str, float]


@dataclass(frozen=True)
class Triage:
    category: Label
    priority: Label


@dataclass(frozen=True)
class TicketFeatures:
    """What the priority rules may use beside the text (enrichment's join and windows)."""

    tier: str | None = None
    events_1h: int = 0


@runtime_checkable
class Backend(Protocol):
    """A triage model as the service runs it: a host-side ``prepare`` (tokenizing) that may overlap the
    device-side ``run`` of the previous batch, and ``shrink`` to take smaller steps after running out of
    device memory. ``uses_features`` says whether more than the text decides (then results are not cached
    by text)."""

    name: str
    version: str
    uses_features: bool

    def prepare(self, texts: Sequence[str]) -> Any: ...

    def run(self, prepared: Any, features: Sequence[TicketFeatures] | None = None) -> list[Triage]: ...

    def shrink(self) -> bool: ...


def _patterns(rules: Mapping[str, float]) -> list[tuple[re.Pattern[str], float]]:
    return [(re.compile(pattern, re.IGNORECASE), weight) for pattern, weight in rules.items()]


# The keyword baseline. A ticket's scores are the weights of the patterns it matches, through a softmax, so
# ``confidence`` is low when nothing or several things match. The rules follow the labelling rules of
# ``shared/data/README.md`` (what the customer needs fixed, not the words around it): a reset the customer did
# not ask for is ``security``, a lockout is ``account``, damage in transit is ``shipping`` even when a refund is
# wanted. Priority is rules over urgency words, legal threats, deadlines, outages for everyone and fraud in
# progress, raised a step for enterprise customers.
CATEGORY_RULES: dict[str, list[tuple[re.Pattern[str], float]]] = {
    "billing": _patterns(
        {
            r"\b(invoice|invoiced|receipt|billing|billed|bill)\b": 2.0,
            r"\b(refund|refunded|reimburse)\w*": 1.5,
            r"\b(charged|charge|charges|overcharg\w*|double[- ]charg\w*|debit\w*)\b": 2.0,
            r"\b(subscription|renewal|plan|pricing|price|discount|coupon|promo|vat|tax)\b": 1.2,
            r"\b(payment|paid|pay|credit card|card declined|prorat\w*)\b": 1.2,
            r"\b(cancel\w*)\b.{0,40}\b(still|again|charged|billed)\b": 1.5,
        }
    ),
    "technical": _patterns(
        {
            r"\b(error|bug|crash\w*|broken|fails?|failing|failed|exception|stack ?trace)\b": 1.8,
            r"\b(api|sdk|webhook|endpoint|integration|sso|saml|oauth|server|timeout|latency)\b": 1.8,
            r"\b(500|502|503|504|404)\b": 1.5,
            r"\b(app|page|button|dashboard|export|import|upload|sync\w*|load\w*)\b.{0,30}\b(not|won'?t|doesn'?t|"
            r"can'?t|cannot|never)\b": 1.5,
            r"\b(slow|down|outage|not working|doesn'?t work|stopped working)\b": 1.5,
            r"\b(browser|chrome|firefox|safari|android|ios|version|update|install\w*)\b": 0.8,
        }
    ),
    "account": _patterns(
        {
            r"\b(log ?in|sign ?in|signin|logon)\b": 1.2,
            r"\b(password|reset|locked out|lock(ed)? (me )?out|lockout|2fa|mfa|two[- ]factor|authenticator)\b": 2.0,
            r"\b(username|email address|change (my )?email|profile|account settings)\b": 1.5,
            r"\b(delete|close|deactivate|merge|transfer)\b.{0,20}\baccount\b": 2.0,
            r"\b(add|invite|remove)\b.{0,20}\b(user|users|seat|seats|member|members|admin|role)\b": 1.8,
            r"\b(account)\b": 0.8,
        }
    ),
    "shipping": _patterns(
        {
            r"\b(parcel|package|shipment|shipping|shipped|delivery|delivered|deliver|courier|tracking)\b": 2.0,
            r"\b(dhl|ups|fedex|usps|royal mail|dpd|hermes|gls)\b": 2.0,
            r"\b(customs|duty|duties|clearance)\b": 1.8,
            r"\b(damaged|broken on arrival|arrived (broken|damaged)|missing item|wrong item|return|replacement)\b": 1.6,
            r"\b(order)\b.{0,30}\b(arrive\w*|late|lost|where)\b": 1.5,
            r"\bwhere is my\b": 1.5,
        }
    ),
    "security": _patterns(
        {
            r"\b(hack\w*|breach\w*|compromis\w*|phish\w*|malware|virus|ransom\w*|scam\w*|fraud\w*)\b": 2.5,
            r"\b(didn'?t|did not|never) (request|ask|make|buy|authori[sz]e)\w*": 2.0,
            r"\b(unknown|unrecogni[sz]ed|suspicious|strange|unauthori[sz]ed)\b.{0,30}\b(login|log ?in|sign[- ]?in|"
            r"device|admin|purchase|charge|access|activity|ip)\w*": 2.5,
            r"\b(someone|somebody)\b.{0,40}\b(access\w*|logged|changed|using)\b": 1.8,
            r"\b(vulnerabilit\w*|exploit|xss|csrf|injection|leak\w*|exposed)\b": 2.0,
        }
    ),
    "other": _patterns(
        {
            r"\b(thank\w*|great job|love (your|the)|awesome|kudos)\b": 1.2,
            r"\b(feature request|would be (nice|great)|suggest\w*|wish|idea)\b": 1.5,
            r"\b(partnership|partner|collaborat\w*|press|journalist|interview|sponsor\w*|reseller)\b": 2.0,
            r"\b(unsubscribe|newsletter|marketing)\b": 1.0,
        }
    ),
}
# A little for ``other`` always: a ticket that matches nothing is most likely not a support problem.
OTHER_PRIOR = 0.6

PRIORITY_RULES: dict[str, list[tuple[re.Pattern[str], float]]] = {
    "urgent": _patterns(
        {
            r"\b(urgent\w*|asap|immediately|emergency|critical)\b": 1.5,
            r"\b(lawyer|legal action|attorney|court|sue|lawsuit)\b": 2.0,
            r"\b(today|tonight|within (the )?(hour|\d+ ?(minutes|hours)))\b": 1.0,
            r"\b(all (our |of our )?(users|customers|staff)|everyone|whole (team|company)|production)\b.{0,40}\b(down|"
            r"can'?t|cannot|blocked|outage)\b": 2.0,
            r"\b(fraud|hacked|breach|compromised|ransom\w*)\b": 1.5,
        }
    ),
    "high": _patterns(
        {
            r"\b(can'?t|cannot|unable to|blocked|stuck|stopped)\b": 1.0,
            r"\b(deadline|tomorrow|third time|still (not|no)|again)\b": 1.0,
            r"\b(not working|broken|down|outage|lost)\b": 1.0,
            r"\b(refund)\b.{0,30}\b(never|still|weeks?)\b": 1.0,
        }
    ),
    "low": _patterns(
        {
            r"\b(question|wondering|curious|just (a|wanted)|no rush|whenever|at your convenience)\b": 1.5,
            r"\b(thank\w*|feature request|suggest\w*|would be (nice|great)|discount|pricing)\b": 1.2,
            r"\b(how (do|can) i|is it possible|do you (offer|support|have))\b": 1.2,
        }
    ),
}
PRIORITY_PRIOR = {"normal": 1.2}


def softmax(raw: Mapping[str, float]) -> dict[str, float]:
    top = max(raw.values())
    exp = {label: math.exp(value - top) for label, value in raw.items()}
    total = sum(exp.values())
    return {label: value / total for label, value in exp.items()}


def _matched(text: str, rules: Sequence[tuple[re.Pattern[str], float]]) -> float:
    return sum(weight for pattern, weight in rules if pattern.search(text))


def classify_category(text: str) -> Label:
    raw = {category: _matched(text, CATEGORY_RULES[category]) for category in CATEGORIES}
    raw["other"] += OTHER_PRIOR
    return _label(softmax(raw))


def classify_priority(text: str, features: TicketFeatures | None = None) -> Label:
    raw = {priority: _matched(text, PRIORITY_RULES.get(priority, [])) for priority in PRIORITIES}
    for priority, prior in PRIORITY_PRIOR.items():
        raw[priority] += prior
    features = features or TicketFeatures()
    if features.tier in ("enterprise", "platinum"):
        raw["high"] += 0.5
    if features.events_1h >= 3:  # a customer writing again and again within the hour
        raw["high"] += 0.5
    return _label(softmax(raw))


def _label(scores: dict[str, float]) -> Label:
    label = max(scores, key=lambda key: scores[key])
    return Label(label, scores[label], scores)


class KeywordModel:
    """The baseline as a model: same inputs and output shape as the MiniLM triage model."""

    name = "keywords"
    version = "rules-1"
    uses_features = True  # priority reads the tier and the recent-event count

    def prepare(self, texts: Sequence[str]) -> list[str]:
        return list(texts)

    def run(self, prepared: list[str], features: Sequence[TicketFeatures] | None = None) -> list[Triage]:
        return self.predict(prepared, features)

    def predict(self, texts: Sequence[str], features: Sequence[TicketFeatures] | None = None) -> list[Triage]:
        extras = features or [TicketFeatures()] * len(texts)
        return [Triage(classify_category(t), classify_priority(t, f)) for t, f in zip(texts, extras, strict=True)]

    def shrink(self) -> bool:
        return False


@dataclass(frozen=True)
class Triaged:
    """One record's triage and the backend that gave it."""

    triage: Triage
    backend: Backend


class ModelFailure(PermanentError):
    """A record whose input makes the model raise."""

    category = "model"


class DeviceFailure(RuntimeError):
    """The device itself failed (a plugin may raise it; CUDA errors are recognised by their message)."""


class InvalidTicket(PermanentError):
    category = "validation"


# One record's outcome from the model: its triage, a ``ModelFailure``, or the typed error it raised.
Outcome = Triaged | ModelFailure | PipelineError


def answered_version(result: bytes | str | None) -> str | None:
    """The model version in a status record's ``result`` field (JSON), or None when there is none: an event
    that the answering model version already answered gets no second result."""
    found = read_result(result)
    model = found.get("model") if found is not None else None
    version = model.get("version") if isinstance(model, dict) else None
    return version if isinstance(version, str) else None


def cache_key(version: str, text: str) -> str:
    """``inference:cache:<model version>:<sha256 of the normalised text>``."""
    normalised = " ".join(text.split())
    return f"inference:cache:{version}:{hashlib.sha256(normalised.encode()).hexdigest()}"


def _label_json(label: Label) -> list[Any]:
    return [label.label, label.confidence, dict(label.scores)]


def dump_triage(triage: Triage) -> str:
    return json.dumps({"c": _label_json(triage.category), "p": _label_json(triage.priority)}, separators=(",", ":"))


def load_triage(raw: bytes | str) -> Triage:
    data = json.loads(raw)
    return Triage(Label(*data["c"]), Label(*data["p"]))


def features_of(event: EventEnriched) -> TicketFeatures:
    return TicketFeatures(tier=event.customer.tier if event.customer else None, events_1h=event.events_1h)


def _prediction(label: Label) -> Prediction:
    return Prediction(label=label.label, confidence=label.confidence, scores=dict(label.scores))


def inferred_event(
    event: EventEnriched,
    triage: Triage,
    backend: Backend,
    cached: bool,
    now: datetime,
    written_ms: int,
    review_threshold: float,
) -> EventInferred:
    """The result of ``event``: ``needs_review`` below ``review_threshold``; latency from the enriched record's
    write (``written_ms``, 0 when unknown) to ``now``: queueing, batching and the model."""
    return EventInferred(
        event_id=event.event_id,
        tenant=event.tenant,
        type=event.type,
        subject=event.subject,
        occurred_at=event.occurred_at,
        category=_prediction(triage.category),
        priority=_prediction(triage.priority),
        needs_review=triage.category.confidence < review_threshold,
        model=ModelRef(name=backend.name, version=backend.version),
        cached=cached,
        inferred_at=now,
        latency_ms=max(0.0, now.timestamp() * 1000 - written_ms) if written_ms > 0 else 0.0,
        source=event.source,
        callback_url=event.callback_url,
    )
