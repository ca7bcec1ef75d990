"""The inference handler on the shared runtime: merged partition batches through the model, one result each.

The runtime hands over one or more partition batches (merged up to ``max_batch_size``) and keeps up to
``max_inflight_batches`` in flight. Each batch goes through two single-thread stages, so the host-side work
of batch N+1 runs while the model runs batch N:

1. **prepare**: decode the features; ask Redis, in one round trip, for each event's status record (which
   model version already answered it) and for each text's cached result; tokenize what the model must see.
2. **infer**: run the model (``Predictor``: OOM halving, isolation of model-breaking records, breaker to the
   fallback), cache the new results, and build the ``EventInferred`` outputs in the records' order.

An event that the answering model version already answered (its status record says so, and that record is a
projection of the committed result topic) gets no second result: a replay adds nothing. A repeated event id
within one batch is answered once. A record that breaks the model answers a ``ModelFailure`` (to the DLQ);
Redis down is a ``DependencyUnavailable`` (the runtime waits and retries, routing nothing).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from prometheus_client import Counter, Gauge, Histogram

from services.inference.backends import Backend
from services.inference.keywords import Label, TicketFeatures, Triage
from services.inference.predictor import Answer, Predictor
from shared.codec import EventCodec
from shared.errors import DependencyUnavailable, PermanentError
from shared.events import EventEnriched, EventInferred, ModelRef, Prediction
from shared.runtime import InputRecord, PartitionBatch, RecordResult
from shared.status import RESULT_FIELD, answered_version, status_key
from shared.tracing import TraceContext

log = logging.getLogger(__name__)

CACHE_LOOKUPS = Counter("inference_cache_lookups_total", "Result cache lookups", ["service", "result"])
CACHE_HIT_RATIO = Gauge("inference_cache_hit_ratio", "Cache hits over lookups since the process started", ["service"])
RESULTS = Counter("inference_results_total", "Results produced", ["service", "model", "cached"])
ALREADY_ANSWERED = Counter(
    "inference_already_answered_total", "Records skipped: this model version already answered the event", ["service"]
)
MODEL_SECONDS = Histogram(
    "inference_model_seconds",
    "Model time per merged batch",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class InvalidTicket(PermanentError):
    category = "validation"


@dataclass
class Job:
    """One merged batch between the two stages."""

    records: list[InputRecord]
    results: list[RecordResult | None]
    backend: Backend
    cached: dict[int, Triage] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)
    keys: dict[int, str] = field(default_factory=dict)
    prepared: Any = None


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


class InferenceHandler:
    """The runtime handler: returns a Future of one result per record, from the prepare and infer stages."""

    def __init__(
        self,
        service: str,
        predictor: Predictor,
        codec: EventCodec,
        client: redis.Redis,
        output_topic: str,
        review_threshold: float,
        cache_enabled: bool = True,
        cache_ttl_s: int = 86400,
    ) -> None:
        self.service = service
        self.predictor = predictor
        self.codec = codec
        self.redis = client
        self.output_topic = output_topic
        self.review_threshold = review_threshold
        self.cache_enabled = cache_enabled
        self.cache_ttl_s = cache_ttl_s
        self.prepare_stage = ThreadPoolExecutor(1, thread_name_prefix=f"{service}-prepare")
        self.infer_stage = ThreadPoolExecutor(1, thread_name_prefix=f"{service}-infer")
        self.hits = 0
        self.lookups = 0

    def __call__(self, batches: Sequence[PartitionBatch]) -> Future[Sequence[RecordResult]]:
        records = [r for b in batches for r in b.records]
        answer: Future[Sequence[RecordResult]] = Future()

        def relay(source: Future[Any]) -> None:
            if answer.cancelled():
                return
            exc = source.exception()
            if exc is not None:
                answer.set_exception(exc)
            else:
                answer.set_result(source.result())

        def on_prepared(prepared: Future[Job]) -> None:
            if prepared.exception() is not None:
                relay(prepared)
                return
            self.infer_stage.submit(self.infer, prepared.result()).add_done_callback(relay)

        self.prepare_stage.submit(self.prepare, records).add_done_callback(on_prepared)
        return answer

    def close(self) -> None:
        self.prepare_stage.shutdown(wait=False, cancel_futures=True)
        self.infer_stage.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ stage 1

    def prepare(self, records: list[InputRecord]) -> Job:
        backend = self.predictor.answering()
        job = Job(records, [None] * len(records), backend)
        cacheable = self.cache_enabled and not backend.uses_features
        lookups: list[tuple[int, EventEnriched]] = []
        seen: set[tuple[str, str]] = set()
        for i, record in enumerate(records):
            event = record.payload
            if not isinstance(event, EventEnriched):
                job.results[i] = InvalidTicket(f"{record.position} is not an EventEnriched")
            elif not event.text.strip():
                job.results[i] = InvalidTicket(f"{record.position}: event {event.event_id} has no text")
            elif (event.tenant, event.event_id) in seen:
                job.results[i] = []  # the same event twice in one batch: answered once
                ALREADY_ANSWERED.labels(self.service).inc()
            else:
                seen.add((event.tenant, event.event_id))
                lookups.append((i, event))
        if cacheable:
            job.keys = {i: cache_key(backend.version, event.text) for i, event in lookups}
        replies = self._lookup(lookups, job.keys)
        for (i, _), (answered, cached) in zip(lookups, replies, strict=True):
            if answered_version(answered) == backend.version:
                job.results[i] = []
                ALREADY_ANSWERED.labels(self.service).inc()
                continue
            if cached is not None:  # only looked up when the answering model's results are cacheable
                job.cached[i] = load_triage(cached)
                continue
            job.pending.append(i)
        if cacheable:
            self._count_cache(len(job.cached), len(job.cached) + len(job.pending))
        if job.pending:
            job.prepared = self.predictor.prepare([records[i].payload.text for i in job.pending])
        return job

    def _lookup(self, lookups: list[tuple[int, EventEnriched]], keys: dict[int, str]) -> list[tuple[Any, Any]]:
        """(the status record's result field, the cached result under ``keys``, if any) for each event: one
        Redis round trip."""
        if not lookups:
            return []
        cacheable = bool(keys)
        pipe = self.redis.pipeline(transaction=False)
        for i, event in lookups:
            pipe.hget(status_key(event.tenant, event.event_id), RESULT_FIELD)
            if cacheable:
                pipe.get(keys[i])
        try:
            replies = pipe.execute()
        except redis.RedisError as exc:
            raise DependencyUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        if cacheable:
            return list(zip(replies[0::2], replies[1::2], strict=True))
        return [(reply, None) for reply in replies]

    def _count_cache(self, hits: int, lookups: int) -> None:
        CACHE_LOOKUPS.labels(self.service, "hit").inc(hits)
        CACHE_LOOKUPS.labels(self.service, "miss").inc(lookups - hits)
        self.hits += hits
        self.lookups += lookups
        if self.lookups:
            CACHE_HIT_RATIO.labels(self.service).set(self.hits / self.lookups)

    # ------------------------------------------------------------------ stage 2

    def infer(self, job: Job) -> list[RecordResult]:
        records = job.records
        if job.pending:
            events = [records[i].payload for i in job.pending]
            started = time.perf_counter()
            answers = self.predictor.run([e.text for e in events], [features_of(e) for e in events], job.prepared)
            MODEL_SECONDS.labels(self.service).observe(time.perf_counter() - started)
            self._cache(
                [(job.keys[i], a) for i, a in zip(job.pending, answers, strict=True) if i in job.keys], job.backend
            )
        else:
            answers = []
        now = datetime.now(UTC)
        for i, triage in job.cached.items():
            job.results[i] = self._output(records[i], triage, job.backend, True, now)
        for i, answer in zip(job.pending, answers, strict=True):
            if isinstance(answer, Answer):
                job.results[i] = self._output(records[i], answer.triage, answer.backend, False, now)
            else:
                job.results[i] = answer
        results: list[RecordResult] = []
        for result in job.results:
            assert result is not None
            results.append(result)
        return results

    def _cache(self, fresh: list[tuple[str, Any]], keyed_for: Backend) -> None:
        """Keep what the model the keys name answered (not a fallback that stepped in); a Redis failure here
        costs only future hits."""
        entries = [(key, a) for key, a in fresh if isinstance(a, Answer) and a.backend is keyed_for]
        if not entries:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key, answer in entries:
            pipe.set(key, dump_triage(answer.triage), ex=self.cache_ttl_s)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("result cache write failed", extra={"error": f"{type(exc).__name__}: {exc}"})

    def _output(
        self, record: InputRecord, triage: Triage, backend: Backend, cached: bool, now: datetime
    ) -> RecordResult:
        event: EventEnriched = record.payload
        inferred = EventInferred(
            event_id=event.event_id,
            tenant=event.tenant,
            type=event.type,
            subject=event.subject,
            occurred_at=event.occurred_at,
            category=_prediction(triage.category),
            priority=_prediction(triage.priority),
            needs_review=triage.category.confidence < self.review_threshold,
            model=ModelRef(name=backend.name, version=backend.version),
            cached=cached,
            inferred_at=now,
            # From the enriched record's write to this result: queueing, batching and the model.
            latency_ms=max(0.0, now.timestamp() * 1000 - record.timestamp_ms) if record.timestamp_ms > 0 else 0.0,
            source=event.source,
            callback_url=event.callback_url,
        )
        RESULTS.labels(self.service, backend.name, str(cached).lower()).inc()
        trace = TraceContext.parse(record.header("traceparent"))
        return [self.codec.encode(inferred, topic=self.output_topic, trace=trace)]
