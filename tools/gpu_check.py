"""The inference path without Kafka or Redis, for a GPU machine: events/s through batcher, decode and handler."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from services.inference.adapters.backends import resolve_device, resolve_dtype
from services.inference.adapters.encoder import Encoder, model_dir
from services.inference.adapters.minilm import TriageModel
from services.inference.adapters.predictor import Breaker, Predictor
from services.inference.adapters.store import ResultStore
from services.inference.domain import KeywordModel
from services.inference.handlers import InferenceHandler
from shared.codec import EventCodec
from shared.events import CustomerSummary, EventEnriched
from shared.runtime.batching import PartitionBuffers
from shared.runtime.processing import decode_batch, handler_batches
from shared.settings import REPO_ROOT
from shared.topics import EVENTS_ENRICHED, EVENTS_INFERRED
from tools.training import DATA
from tools.training.evaluate import load_tickets

TOPIC = EVENTS_ENRICHED
PARTITIONS = 12


class Message:
    """What the batcher and the decode read of a consumed record."""

    def __init__(self, partition: int, offset: int, key: bytes, value: bytes, headers: list[tuple[str, bytes]]):
        self._partition, self._offset, self._key, self._value, self._headers = partition, offset, key, value, headers

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return self._key

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, int(time.time() * 1000))


class MemoryRedis:
    """Answers the handler's pipelined lookups with misses and accepts its cache writes."""

    def __init__(self) -> None:
        self.replies: list[Any] = []

    def pipeline(self, transaction: bool = False) -> MemoryRedis:
        return self

    def hget(self, key: str, field: str) -> None:
        self.replies.append(None)

    def get(self, key: str) -> None:
        self.replies.append(None)

    def set(self, key: str, value: str, ex: int | None = None) -> None:
        self.replies.append(True)

    def execute(self) -> list[Any]:
        replies, self.replies = self.replies, []
        return replies


def encoder_for(kit: Path, device: str, dtype: torch.dtype, random_weights: bool) -> Encoder:
    if not random_weights:
        return Encoder(device, dtype, kit)
    from transformers import AutoConfig, AutoModel

    folder = Path(tempfile.mkdtemp(prefix="minilm-random-"))
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(kit / name, folder / name)
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(str(folder))).save_pretrained(str(folder))  # type: ignore[no-untyped-call]
    return Encoder(device, dtype, folder)


def ticket_texts(count: int) -> list[str]:
    """The training tickets, each with a unique reference number (no two alike), as the CPU benchmark uses."""
    tickets = [t["text"] for t in load_tickets(DATA / "train.jsonl")]
    return [f"{tickets[i % len(tickets)]} (ref {i})" for i in range(count)]


def enriched(event_id: str, subject: str, text: str, at: datetime) -> EventEnriched:
    """An enriched ticket from a known gold customer, as enrichment would hand it on."""
    return EventEnriched(
        event_id=event_id,
        tenant="acme",
        type="ticket.created",
        source="helpdesk",
        subject=subject,
        occurred_at=at,
        received_at=at,
        text=text,
        attributes={"channel": "email"},
        pii_counts={"EMAIL": 1},
        customer=CustomerSummary(tier="gold", plan="pro", region="eu"),
        profile_found=True,
        events_1h=2,
        events_24h=5,
        seconds_since_previous=42.0,
        enriched_at=at,
    )


def messages(codec: EventCodec, texts: list[str]) -> list[tuple[tuple[str, int], Message]]:
    out = []
    at = datetime.now(UTC).replace(microsecond=0)
    for i, text in enumerate(texts):
        event = enriched(f"g-{i}", f"c{i % 500}", text, at)
        record = codec.encode(event, topic=TOPIC)
        partition = i % PARTITIONS
        assert record.value is not None and record.key is not None
        out.append(((TOPIC, partition), Message(partition, i, record.key, record.value, list(record.headers))))
    return out


def through_handler(
    handler: InferenceHandler, codec: EventCodec, msgs: list[tuple[tuple[str, int], Message]], batch: int, inflight: int
) -> float:
    """Events/s through batcher, decode and handler, ``inflight`` batches at a time, as the runtime drives it."""

    def decode(topic: str, value: bytes | None, partition: int, offset: int) -> Any:
        return codec.decode_value(topic, value, partition, offset, EventEnriched)

    buffers = PartitionBuffers(batch, 1_000_000)
    pending: deque[Future[Any]] = deque()
    done, fed = 0, 0
    started = time.perf_counter()
    while done < len(msgs):
        while fed < len(msgs) and buffers.count < batch:
            tp, msg = msgs[fed]
            buffers.add(tp, msg)  # type: ignore[arg-type]
            fed += 1
        if buffers.count:
            records, failures = decode_batch(buffers.take(), decode)
            pending.append(handler(handler_batches(records, failures)))
        while pending and (len(pending) >= inflight or not buffers.count):
            results = pending.popleft().result()
            done += len(results)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(msgs) / (time.perf_counter() - started)


def model_alone(model: TriageModel, texts: list[str], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        model.run(model.prepare(texts[start : start + batch]))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(texts) / (time.perf_counter() - started)


# What the GPU image lacks of this path's imports, with what those need in turn (it has torch, transformers,
# tokenizers, safetensors, numpy, prometheus-client, anyio, idna, certifi, attrs).
KIT_PACKAGES = (
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "python-dotenv",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
    "fastavro",
    "confluent-kafka",
    "authlib",
    "joserfc",
    "cryptography",
    "cffi",
    "pycparser",
    "cachetools",
    "httpx2",
    "httpcore2",
    "truststore",
    "h11",
    "redis",
)


def make_kit(kit: Path, wheels: Path) -> None:
    """The tokenizer and config into ``kit``; Python 3.12 wheels of ``KIT_PACKAGES`` (the versions installed
    here) into ``wheels``."""
    import importlib.metadata
    import subprocess

    kit.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(model_dir() / name, kit / name)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in KIT_PACKAGES]
    platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34)] + [
        "--platform=manylinux2014_x86_64"
    ]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version=3.12", "--implementation=cp", *platforms, "-d", str(wheels), *pins]
    subprocess.run(command, check=True)


def main() -> None:
    """Events/s through the runtime's batcher, the decode and the handler's two stages, two batches in flight,
    against the model alone on the same device, dtype, texts and batch size; prints JSON. Redis is an in-memory
    stand-in (every lookup misses) and the registry is ``mock://``, so no network is needed.

    Here: ``make gpu-kit`` (``python -m tools.gpu_check kit``) writes ``.gpu-kit/`` (tokenizer and config) and
    ``.whl/`` (Python 3.12 wheels of what the GPU image lacks), both carried there. There, from the repository
    root: ``python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:.
    python3 -m tools.gpu_check --kit .gpu-kit --random-weights`` (random weights of the real shapes: throughput
    does not depend on their values). On the CPU here: ``python -m tools.gpu_check --device cpu``."""
    if sys.argv[1:2] == ["kit"]:
        make_kit(REPO_ROOT / ".gpu-kit", REPO_ROOT / ".whl")
        return
    parser = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kit", type=Path, default=None, help="tokenizer.json and config.json (default: installed)")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--events", type=int, default=None, help="default: 100k on a GPU, 600 on a CPU")
    parser.add_argument("--max-batch-size", type=int, default=None, help="default: the service's for the device")
    parser.add_argument("--model-batch-size", type=int, default=None)
    parser.add_argument("--inflight", type=int, default=2)
    args = parser.parse_args()
    device = resolve_device(args.device)
    gpu = device == "cuda"
    batch = args.max_batch_size or (2048 if gpu else 512)
    chunk = args.model_batch_size or (512 if gpu else 32)
    count = args.events or (100_000 if gpu else 600)
    dtype = resolve_dtype("auto", device)
    encoder = encoder_for(args.kit or model_dir(), device, dtype, args.random_weights)
    model = TriageModel(encoder, batch_size=chunk)
    codec = EventCodec.connect("mock://gpu-bench", REPO_ROOT / "schemas")
    texts = ticket_texts(count)
    msgs = messages(codec, texts)
    handler = InferenceHandler(
        "gpu-bench",
        Predictor(model, KeywordModel(), Breaker("gpu-bench", 3, 30.0)),
        codec,
        ResultStore(MemoryRedis()),  # type: ignore[arg-type]
        EVENTS_INFERRED,
        0.5,
        cache_enabled=False,
    )
    warm = msgs[: min(len(msgs), batch * 2)]
    through_handler(handler, codec, warm, batch, args.inflight)
    model_alone(model, texts[: batch * 2], batch)
    service = through_handler(handler, codec, msgs, batch, args.inflight)
    alone = model_alone(model, texts, batch)
    handler.close()
    report = {
        "benchmark": "inference-gpu",
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "events": count,
        "max_batch_size": batch,
        "model_batch_size": chunk,
        "inflight": args.inflight,
        "random_weights": args.random_weights,
        "events_per_s": round(service, 1),
        "model_alone_texts_per_s": round(alone, 1),
        "ratio": round(service / alone, 3),
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
