"""Replays run by the ops service: each in a thread of its own, with its progress readable while it runs."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from shared.codec import EventCodec
from shared.kafka import KafkaConnection
from shared.replay.operations import ReplayOptions, ReplayPlan, ReplayResult, ReplayTopics, execute

KEPT = 200  # finished jobs remembered by this process (the audit topic keeps them all)


@dataclass
class ReplayJob:
    replay_id: str
    plan: ReplayPlan
    options: ReplayOptions
    done: int = 0
    result: ReplayResult | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def as_dict(self) -> dict[str, Any]:
        return {
            "replay_id": self.replay_id,
            "state": "finished" if self.finished.is_set() else "running",
            "progress": {"done": self.done, "total": self.plan.total},
            "plan": self.plan.as_dict(),
            "result": self.result.as_dict() if self.result else None,
        }


class ReplayJobs:
    def __init__(self, kafka: KafkaConnection, codec: EventCodec, topics: ReplayTopics) -> None:
        self.kafka = kafka
        self.codec = codec
        self.topics = topics
        self.jobs: OrderedDict[str, ReplayJob] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, plan: ReplayPlan, options: ReplayOptions) -> ReplayJob:
        job = ReplayJob(f"rp-{uuid.uuid4().hex[:12]}", plan, options)
        with self._lock:
            self.jobs[job.replay_id] = job
            while len(self.jobs) > KEPT:
                self.jobs.popitem(last=False)
        threading.Thread(target=self._run, args=(job,), name=f"replay-{job.replay_id}", daemon=True).start()
        return job

    def run_now(self, plan: ReplayPlan, options: ReplayOptions) -> ReplayJob:
        """Run in the caller's thread (a dry run: it writes only the audit)."""
        job = ReplayJob(f"rp-{uuid.uuid4().hex[:12]}", plan, options)
        self._run(job)
        return job

    def get(self, replay_id: str) -> ReplayJob | None:
        with self._lock:
            return self.jobs.get(replay_id)

    def _run(self, job: ReplayJob) -> None:
        def progress(done: int, _total: int) -> None:
            job.done = done

        try:
            job.result = execute(self.kafka, self.codec, job.plan, job.options, self.topics, progress, job.replay_id)
            job.done = job.result.replayed + job.result.skipped
        finally:
            job.finished.set()
