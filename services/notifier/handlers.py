"""The notifier's handler: each result to its endpoints, concurrently, one answer per record for the runtime."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

import orjson
from prometheus_client import Counter, Gauge, Histogram

from services.notifier.adapters.http import WebhookClient
from services.notifier.adapters.store import Known, Mark, NotifierStore
from services.notifier.domain import (
    AddressRefused,
    Circuits,
    CircuitState,
    Target,
    WebhookReply,
    body_of,
    hop_ms,
    request_headers,
    retry_delay_ms,
    targets_for,
)
from services.notifier.settings import NotifierSettings
from shared.codec import EventCodec
from shared.errors import DependencyUnavailable, PermanentError, RetryableError
from shared.events import EventInferred, NotificationDelivered
from shared.headers import REDELIVERY_ENDPOINTS, REDELIVERY_ID, REPLAY_ID, TRACEPARENT
from shared.runtime import InputRecord, Output, PartitionBatch, RecordResult
from shared.subscriptions import DeliveryAttempt
from shared.topics import RETRY_LEVELS
from shared.tracing import TraceContext

log = logging.getLogger(__name__)

DELIVERIES = Counter("notifier_deliveries_total", "Webhook calls and their verdicts", ["verdict"])
SKIPPED = Counter("notifier_deliveries_skipped_total", "Deliveries not attempted, by reason", ["reason"])
CALL_SECONDS = Histogram(
    "notifier_call_seconds", "Webhook call time", buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
)
CIRCUIT = Gauge("notifier_circuit_state", "Per-endpoint circuit: 0 closed, 1 half-open, 2 open", ["endpoint"])

Kind = Literal["delivered", "failed", "gone", "retry", "parked", "already_delivered", "already_failed", "already_gone"]
FINAL = ("delivered", "failed", "gone")  # outcomes decided in this pass, each with a receipt


@dataclass(frozen=True)
class DeliveryOutcome:
    """What became of one endpoint of one record in this pass."""

    target: Target
    kind: Kind
    detail: str = ""
    http_status: int | None = None
    latency_ms: float = 0.0
    delay_ms: int | None = None
    counts_attempt: bool = True
    mark: Mark | None = None


@dataclass(frozen=True)
class Plan:
    record: InputRecord
    event: EventInferred
    trace: TraceContext | None
    # Which pass this is: a replay's id, a redelivery's, both, or "" for the result's first pass.
    generation: str
    # A redelivery's endpoints (called again though delivered before); None for any other record.
    redelivery: frozenset[str] | None = None


class NotifierHandler:
    """Called by the runtime (on its event loop) with partition batches; answers one result per record."""

    def __init__(
        self,
        settings: NotifierSettings,
        codec: EventCodec,
        store: NotifierStore,
        client: WebhookClient,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.store = store
        self.client = client
        self.circuits = Circuits(settings.circuit_failures, settings.circuit_cooldown_s)
        self.rng = rng or random.Random()
        self.schedule_ms = settings.retry_schedule_ms
        # The legs a wait is carried in: the retry levels that exist (see ``hop_ms``).
        self.ladder_ms = settings.runtime.retry_delays_ms[:RETRY_LEVELS]
        # The last delivery started per (endpoint URL, subject): the next one of that subject waits for it,
        # so a healthy endpoint sees one subject's results in order, across batches in flight too.
        self._tails: dict[tuple[str, str], asyncio.Task[DeliveryOutcome]] = {}
        self._verdicts = {v: DELIVERIES.labels(v) for v in ("delivered", "retry", "permanent", "gone")}
        self._shown: dict[str, CircuitState] = {}

    def _show(self, endpoint: str, state: CircuitState) -> None:
        """The circuit gauge, set when an endpoint's state changes (not on every call)."""
        if self._shown.get(endpoint) is not state:
            self._shown[endpoint] = state
            CIRCUIT.labels(endpoint).set(state)

    async def __call__(self, batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        records = [r for b in batches for r in b.records]
        plans = [self._plan(r) for r in records]
        try:
            known = await self.store.load(
                (p.event.tenant for p in plans), ((p.event.tenant, p.event.event_id) for p in plans)
            )
        except DependencyUnavailable as exc:
            return [exc] * len(records)  # Redis down: an outage, the runtime pauses and routes nothing
        deadline = time.monotonic() + self.settings.batch_deadline_s
        started = [self._start(plan, known, deadline) for plan in plans]
        # One wait for the whole batch; calls in flight are bounded by the HTTP client's connection pool.
        tasks = [job for jobs in started for job in jobs if isinstance(job, asyncio.Task)]
        if tasks:
            await asyncio.wait(tasks)
        return [
            self._result(plan, [job.result() if isinstance(job, asyncio.Task) else job for job in jobs])
            for plan, jobs in zip(plans, started, strict=True)
        ]

    def _plan(self, record: InputRecord) -> Plan:
        event = record.payload
        assert isinstance(event, EventInferred)
        replay = (record.header(REPLAY_ID) or b"").decode(errors="replace")
        redelivery_id = (record.header(REDELIVERY_ID) or b"").decode(errors="replace")
        redelivery = None
        if redelivery_id:
            redelivery = frozenset(_urls(record.header(REDELIVERY_ENDPOINTS)))
        generation = "/".join(part for part in (redelivery_id, replay) if part)
        return Plan(record, event, TraceContext.parse(record.header(TRACEPARENT)), generation, redelivery)

    def _start(
        self, plan: Plan, known: Known, deadline: float
    ) -> list[DeliveryOutcome | asyncio.Task[DeliveryOutcome]]:
        event = plan.event
        secrets = known.secrets.get(event.tenant)
        tenant_secrets = secrets.valid() if secrets is not None else []
        targets = targets_for(event, known.subscriptions.get(event.tenant, []), tenant_secrets)
        if plan.redelivery is not None:
            # A redelivery calls only the endpoints it names (those still the event's: one disabled or deleted
            # since the request is not called), however they answered before.
            targets = [t for t in targets if t.url in plan.redelivery]
        marks = known.marks.get((event.tenant, event.event_id), {})
        body: bytes | None = None
        jobs: list[DeliveryOutcome | asyncio.Task[DeliveryOutcome]] = []
        now_ms = int(time.time() * 1000)
        for target in targets:
            mark = marks.get(target.url)
            attempt = 1
            if mark is not None and plan.redelivery is not None and mark.generation != plan.generation:
                mark = None  # an earlier pass's outcome: this redelivery calls again
            if mark is not None and mark.state in ("delivered", "gone"):
                # Final in every replay generation: a 2xx, or the receiver's own "never again" (410).
                kind: Kind = "already_delivered" if mark.state == "delivered" else "already_gone"
                SKIPPED.labels(kind).inc()
                jobs.append(DeliveryOutcome(target, kind, mark=mark))
                continue
            if mark is not None and mark.generation == plan.generation:
                if mark.state == "failed":
                    SKIPPED.labels("already_failed").inc()
                    jobs.append(
                        DeliveryOutcome(target, "already_failed", mark.error or "refused", mark.http_status, mark=mark)
                    )
                    continue
                # Retrying: the schedule, not the retry level the record came back from, says when the next
                # call is due; until then the record goes round the retry levels again without a call.
                attempt = mark.attempts + 1
                if mark.next_at_ms is not None and mark.next_at_ms > now_ms:
                    SKIPPED.labels("scheduled").inc()
                    wait = hop_ms(mark.next_at_ms - now_ms, self.ladder_ms)
                    detail = (
                        f"{mark.error or 'retrying'}; call {attempt} due in {(mark.next_at_ms - now_ms) / 1000:.1f}s"
                    )
                    jobs.append(
                        DeliveryOutcome(target, "parked", detail, mark.http_status, delay_ms=wait, counts_attempt=False)
                    )
                    continue
            body = body if body is not None else body_of(event, plan.trace.trace_id if plan.trace else None)
            key = (target.url, event.subject)
            previous = self._tails.get(key)
            call = self._deliver(plan, target, body, deadline, attempt)
            task = asyncio.ensure_future(call if previous is None else self._after(previous, call))
            self._tails[key] = task
            task.add_done_callback(partial(self._forget, key))
            jobs.append(task)
        return jobs

    def _forget(self, key: tuple[str, str], task: asyncio.Task[DeliveryOutcome]) -> None:
        if self._tails.get(key) is task:
            del self._tails[key]

    @staticmethod
    async def _after(
        previous: asyncio.Task[DeliveryOutcome], call: Coroutine[Any, Any, DeliveryOutcome]
    ) -> DeliveryOutcome:
        await asyncio.wait([previous])
        return await call

    async def _deliver(self, plan: Plan, target: Target, body: bytes, deadline: float, attempt: int) -> DeliveryOutcome:
        event = plan.event
        if time.monotonic() > deadline:
            SKIPPED.labels("deadline").inc()
            return DeliveryOutcome(
                target, "parked", "the batch's delivery deadline passed", delay_ms=0, counts_attempt=False
            )
        if not target.secrets:
            return await self._refused(plan, target, None, f"tenant {event.tenant!r} has no signing secret", attempt)
        circuit = self.circuits.of(target.endpoint)
        now = time.monotonic()
        admitted, probe = circuit.admit(now)
        self._show(target.endpoint, circuit.state(now))
        if not admitted:
            SKIPPED.labels("circuit_open").inc()
            wait_ms = hop_ms(int(circuit.remaining_s(now) * 1000), self.ladder_ms)
            return DeliveryOutcome(
                target, "parked", f"{target.endpoint}: circuit open", delay_ms=wait_ms, counts_attempt=False
            )
        try:
            answer, seconds = await self.client.post(
                target.url, body, request_headers(event.event_id, body, target.secrets)
            )
        except AddressRefused as exc:
            circuit.record(True, time.monotonic(), probe)  # not the endpoint's health
            SKIPPED.labels("address_refused").inc()
            self._attempted(plan, target, "refused", None, None, f"address refused: {exc}")
            return await self._refused(plan, target, None, f"address refused: {exc}", attempt)
        verdict = answer.verdict
        self._attempted(
            plan, target, verdict, answer, seconds * 1000, None if verdict == "delivered" else answer.describe()
        )
        circuit.record(verdict != "retry", time.monotonic(), probe)
        self._show(target.endpoint, circuit.state(time.monotonic()))
        self._verdicts[verdict].inc()
        CALL_SECONDS.observe(seconds)
        latency_ms = seconds * 1000
        if verdict == "delivered":
            mark = Mark(
                state="delivered",
                at_ms=int(time.time() * 1000),
                http_status=answer.status,
                attempts=attempt,
                latency_ms=latency_ms,
                subscription_id=target.subscription_id,
                generation=plan.generation,
            )
            await self._remember(plan, target, mark)
            return DeliveryOutcome(target, "delivered", http_status=answer.status, latency_ms=latency_ms, mark=mark)
        if verdict == "gone":
            return await self._gone(plan, target, answer, attempt, latency_ms)
        if verdict == "permanent":
            return await self._refused(plan, target, answer, answer.describe(), attempt)
        # Retryable: the schedule (or a later Retry-After) says when; the wait rides the runtime's deferral
        # (``counts_attempt=False``), so the schedule may be longer than the retry levels. A failed probe says
        # the endpoint is still down, nothing about this record: it uses no entry of the schedule.
        now_ms = int(time.time() * 1000)
        if probe:
            calls, wait = attempt - 1, int(circuit.remaining_s(time.monotonic()) * 1000)
        else:
            calls = attempt
            cap_ms = self.settings.runtime.max_deferral_ms
            scheduled = retry_delay_ms(
                attempt, self.schedule_ms, answer.retry_after_s, cap_ms, self.settings.retry_jitter, self.rng
            )
            if scheduled is None:
                reason = f"{answer.describe()} (call {attempt}, the retry schedule's last)"
                return await self._refused(plan, target, answer, reason, attempt)
            wait = scheduled
        mark = Mark(
            state="retrying",
            at_ms=now_ms,
            http_status=answer.status,
            attempts=calls,
            latency_ms=latency_ms,
            subscription_id=target.subscription_id,
            generation=plan.generation,
            error=answer.describe()[:500],
            next_at_ms=now_ms + wait,
        )
        await self._remember(plan, target, mark)
        self._log_failure(plan, target, answer, "retry")
        return DeliveryOutcome(
            target,
            "retry",
            answer.describe(),
            answer.status,
            latency_ms,
            delay_ms=hop_ms(wait, self.ladder_ms),
            counts_attempt=False,
        )

    def _attempted(
        self,
        plan: Plan,
        target: Target,
        outcome: Literal["delivered", "retry", "permanent", "gone", "refused"],
        answer: WebhookReply | None,
        latency_ms: float | None,
        error: str | None,
    ) -> None:
        """A subscription's call, for its recent-deliveries list (a callback_url has no such list)."""
        if target.subscription_id is None:
            return
        entry = DeliveryAttempt(
            at=datetime.now(UTC),
            event_id=plan.event.event_id,
            endpoint=target.url,
            outcome=outcome,
            http_status=answer.status if answer is not None else None,
            latency_ms=latency_ms,
            error=error[:500] if error else None,
        )
        self.store.attempt(plan.event.tenant, target.subscription_id, entry)

    async def _gone(
        self, plan: Plan, target: Target, answer: WebhookReply, attempt: int, latency_ms: float
    ) -> DeliveryOutcome:
        # 410 is the receiver's deliberate "stop": a final outcome for this endpoint, with a receipt and no DLQ
        # record. A subscription is disabled too; a callback_url (the event's own) is just not called again.
        if target.subscription_id is not None:
            await self._disable(plan, target)
        mark = Mark(
            state="gone",
            at_ms=int(time.time() * 1000),
            http_status=answer.status,
            attempts=attempt,
            latency_ms=latency_ms,
            subscription_id=target.subscription_id,
            generation=plan.generation,
            error="410 Gone: the endpoint asked not to be called again",
        )
        await self._remember(plan, target, mark)
        return DeliveryOutcome(target, "gone", mark.error or "", answer.status, latency_ms, mark=mark)

    async def _refused(
        self, plan: Plan, target: Target, answer: WebhookReply | None, reason: str, attempt: int
    ) -> DeliveryOutcome:
        status = answer.status if answer is not None else None
        mark = Mark(
            state="failed",
            at_ms=int(time.time() * 1000),
            http_status=status,
            attempts=attempt,
            subscription_id=target.subscription_id,
            generation=plan.generation,
            error=reason[:500],
        )
        await self._remember(plan, target, mark)
        self._log_failure(plan, target, answer, "permanent", reason)
        return DeliveryOutcome(target, "failed", reason, status, mark=mark)

    async def _remember(self, plan: Plan, target: Target, mark: Mark) -> None:
        try:
            await self.store.mark(plan.event.tenant, plan.event.event_id, target.url, mark)
        except Exception as exc:  # the call happened; losing the mark risks one repeat call, not the receipt
            log.warning(
                "delivery mark not written",
                extra={**_context(plan), "endpoint": target.endpoint, "error": f"{type(exc).__name__}: {exc}"},
            )

    async def _disable(self, plan: Plan, target: Target) -> None:
        assert target.subscription_id is not None
        try:
            await self.store.disable(plan.event.tenant, target.subscription_id, "410 Gone")
            log.warning(
                "subscription disabled: 410 Gone", extra={**_context(plan), "subscription": target.subscription_id}
            )
        except Exception as exc:
            log.warning("subscription not disabled", extra={**_context(plan), "error": f"{type(exc).__name__}: {exc}"})

    def _log_failure(
        self, plan: Plan, target: Target, answer: WebhookReply | None, verdict: str, reason: str = ""
    ) -> None:
        log.info(
            "delivery failed",
            extra={
                **_context(plan),
                "endpoint": target.endpoint,
                "verdict": verdict,
                "http_status": answer.status if answer else None,
                "reason": (answer.describe() if answer else reason)[:200],
            },
        )

    def _result(self, plan: Plan, outcomes: list[DeliveryOutcome]) -> RecordResult:
        fresh = [o for o in outcomes if o.kind in FINAL]
        receipts = [self._receipt(plan, o) for o in fresh]
        waiting = [o for o in outcomes if o.kind in ("retry", "parked")]
        refused = [o for o in outcomes if o.kind in ("failed", "already_failed")]
        if waiting:
            left = len(waiting) + len(refused)
            message = f"{left} of {len(outcomes)} endpoints not delivered: " + "; ".join(
                f"{o.target.url}: {o.detail}" for o in waiting + refused
            )
            delays = [o.delay_ms for o in waiting if o.delay_ms is not None]
            return RetryableError(
                message,
                category="delivery",
                delay_ms=min(delays) if delays else None,
                counts_attempt=any(o.counts_attempt for o in waiting),
                outputs=receipts,
            )
        if refused:
            message = f"{len(refused)} of {len(outcomes)} endpoints refused: " + "; ".join(
                f"{o.target.url}: {o.detail}" for o in refused
            )
            tries = [o.mark.attempts for o in refused if o.mark is not None]
            return PermanentError(message, category="delivery", outputs=receipts, attempts=max(tries, default=None))
        if not fresh:
            # Every endpoint had answered before (a replay, or a redelivery after a crash between the call and
            # the commit): no call, but the receipts again, so one lost with an aborted transaction comes back.
            receipts = [self._receipt(plan, o) for o in outcomes if o.kind in ("already_delivered", "already_gone")]
        return receipts

    def _receipt(self, plan: Plan, outcome: DeliveryOutcome) -> Output:
        event, mark = plan.event, outcome.mark
        receipt = NotificationDelivered.model_construct(  # our own typed values: no validation needed
            event_id=event.event_id,
            tenant=event.tenant,
            subject=event.subject,
            endpoint=outcome.target.url,
            subscription_id=outcome.target.subscription_id,
            status=mark.state if mark is not None else "delivered",
            http_status=mark.http_status if mark else outcome.http_status,
            attempts=mark.attempts if mark else 1,
            delivered_at=datetime.fromtimestamp(mark.at_ms / 1000, UTC) if mark else datetime.now(UTC),
            latency_ms=mark.latency_ms if mark else outcome.latency_ms,
            error=mark.error if mark else None,
            type=event.type,
        )
        return self.codec.encode(receipt, topic=self.settings.output_topic, trace=plan.trace)


def _urls(raw: bytes | None) -> list[str]:
    """A redelivery's endpoints header (a JSON list of URLs); unreadable means none."""
    try:
        found = orjson.loads(raw or b"[]")
    except orjson.JSONDecodeError:
        return []
    return [url for url in found if isinstance(url, str)] if isinstance(found, list) else []


def _context(plan: Plan) -> dict[str, object]:
    return {
        "event_id": plan.event.event_id,
        "position": plan.record.position,
        "trace_id": plan.trace.trace_id if plan.trace else None,
        "payload_sha256": hashlib.sha256(plan.record.value or b"").hexdigest()[:16],
    }
