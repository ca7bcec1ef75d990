"""The inference handler on the shared runtime: merged partition batches through the model, one result each."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import Counter, Gauge, Histogram

from services.inference.adapters.predictor import Predictor
from services.inference.adapters.store import ResultStore
from services.inference.domain import (
    Backend,
    InvalidTicket,
    Outcome,
    Triage,
    Triaged,
    answered_version,
    cache_key,
    features_of,
    inferred_event,
    load_triage,
)
from shared.codec import EventCodec
from shared.events import EventEnriched, EventInferred
from shared.headers import CONTENT_TYPE, TRACEPARENT
from shared.results import CONTENT_TYPE_JSON, result_document
from shared.runtime import InputRecord, Output, PartitionBatch, RecordResult
from shared.tracing import TraceContext

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


class InferenceHandler:
    """The runtime handler: returns a Future of one result per record, from two single-thread stages, so the
    host-side work of batch N+1 runs while the model runs batch N.

    1. prepare: check the records; ask Redis, in one round trip, what answered each event and what the cache
       holds for its text; tokenize what the model must see.
    2. infer: run the model (the ``Predictor``), cache the new results, build the outputs in the records' order.

    An event the answering model version already answered gets no second result (a replay adds nothing), nor
    does a repeated event id within one batch. With a ``mirror_topic``, each result goes out twice: the Avro record
    and its JSON mirror, in the same transaction. A record that breaks the model answers a ``ModelFailure`` (to the
    DLQ); Redis down is a ``DependencyUnavailable`` (the runtime waits and retries, routing nothing)."""

    def __init__(
        self,
        service: str,
        predictor: Predictor,
        codec: EventCodec,
        store: ResultStore,
        output_topic: str,
        review_threshold: float,
        cache_enabled: bool = True,
        mirror_topic: str | None = None,
    ) -> None:
        self.service = service
        self.predictor = predictor
        self.codec = codec
        self.store = store
        self.output_topic = output_topic
        self.review_threshold = review_threshold
        self.cache_enabled = cache_enabled
        self.mirror_topic = mirror_topic
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
        events = [(event.tenant, event.event_id) for _, event in lookups]
        replies = self.store.lookup(events, [job.keys[i] for i, _ in lookups] if job.keys else None)
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
            if isinstance(answer, Triaged):
                job.results[i] = self._output(records[i], answer.triage, answer.backend, False, now)
            else:
                job.results[i] = answer
        results: list[RecordResult] = []
        for result in job.results:
            assert result is not None
            results.append(result)
        return results

    def _cache(self, fresh: list[tuple[str, Outcome]], keyed_for: Backend) -> None:
        """Keep what the model the keys name answered (not a fallback that stepped in)."""
        self.store.keep([(key, a.triage) for key, a in fresh if isinstance(a, Triaged) and a.backend is keyed_for])

    def _output(
        self, record: InputRecord, triage: Triage, backend: Backend, cached: bool, now: datetime
    ) -> RecordResult:
        event: EventEnriched = record.payload
        inferred = inferred_event(event, triage, backend, cached, now, record.timestamp_ms, self.review_threshold)
        RESULTS.labels(self.service, backend.name, str(cached).lower()).inc()
        trace = TraceContext.parse(record.header(TRACEPARENT))
        output = self.codec.encode(inferred, topic=self.output_topic, trace=trace)
        if self.mirror_topic is None:
            return [output]
        return [output, self._mirror(inferred, output, self.mirror_topic)]

    @staticmethod
    def _mirror(inferred: EventInferred, output: Output, topic: str) -> Output:
        """The JSON twin of ``output``: the webhook body's document, under the same key and CloudEvents headers
        (so the same partition, ``ce_id`` and trace) but ``content-type: application/json``."""
        headers = [(k, CONTENT_TYPE_JSON.encode() if k == CONTENT_TYPE else v) for k, v in output.headers]
        trace = TraceContext.parse(next((v for k, v in output.headers if k == TRACEPARENT), None))
        value = orjson.dumps(result_document(inferred, trace.trace_id if trace is not None else None))
        return Output(topic, value, output.key, headers)
