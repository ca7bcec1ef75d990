"""The MiniLM triage model: frozen all-MiniLM-L6-v2 embeddings and two trained linear heads (category, priority)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from services.inference.adapters.encoder import Encoder, Prepared, weights_digest
from services.inference.domain import Label, TicketFeatures, Triage

# ``make train`` writes the heads here; their label order is in the file's metadata.
HEADS = Path(__file__).parent / "heads.safetensors"


class Heads(torch.nn.Module):
    """One linear layer per head over the sentence embedding."""

    def __init__(self, dimensions: int, categories: Sequence[str], priorities: Sequence[str]) -> None:
        super().__init__()
        self.categories = tuple(categories)
        self.priorities = tuple(priorities)
        self.category = torch.nn.Linear(dimensions, len(self.categories))
        self.priority = torch.nn.Linear(dimensions, len(self.priorities))

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.category(embeddings), self.priority(embeddings)

    def save(self, path: Path) -> None:
        tensors = {name: tensor.detach().contiguous() for name, tensor in self.state_dict().items()}
        metadata = {"categories": ",".join(self.categories), "priorities": ",".join(self.priorities)}
        save_file(tensors, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: Path) -> Heads:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        dimensions = tensors["category.weight"].shape[1]
        heads = cls(dimensions, metadata["categories"].split(","), metadata["priorities"].split(","))
        heads.load_state_dict(tensors)
        return heads.eval()


def labels_of(logits: torch.Tensor, names: Sequence[str]) -> list[Label]:
    probabilities = torch.softmax(logits.float(), dim=1).tolist()
    out = []
    for row in probabilities:
        scores = dict(zip(names, row, strict=True))
        best = max(range(len(row)), key=row.__getitem__)
        out.append(Label(names[best], row[best], scores))
    return out


class TriageModel:
    """MiniLM embeddings through the trained heads; the text alone decides (so results may be cached by text).
    The version is a hash of the encoder's and the heads' weights."""

    name = "minilm-triage"
    uses_features = False

    def __init__(self, encoder: Encoder | None = None, heads_path: Path = HEADS, batch_size: int = 64) -> None:
        self.encoder = encoder or Encoder()
        self.heads = Heads.load(heads_path).to(self.encoder.device)
        self.version = weights_digest(self.encoder.path / "model.safetensors", heads_path)
        self.batch_size = batch_size

    def prepare(self, texts: Sequence[str]) -> Prepared:
        """The host-side half (tokenize, bucket by length, pad): it may run beside ``run`` of another batch."""
        return self.encoder.prepare(texts, self.batch_size)

    @torch.inference_mode()
    def run(self, prepared: Prepared, features: Sequence[TicketFeatures] | None = None) -> list[Triage]:
        embeddings = self.encoder.run(prepared).to(self.encoder.device)
        category, priority = self.heads(embeddings)
        return [
            Triage(c, p)
            for c, p in zip(
                labels_of(category, self.heads.categories), labels_of(priority, self.heads.priorities), strict=True
            )
        ]

    def predict(self, texts: Sequence[str], features: Sequence[TicketFeatures] | None = None) -> list[Triage]:
        return self.run(self.prepare(texts), features)

    def shrink(self) -> bool:
        """Halve the chunk the encoder runs at once (after running out of device memory); False at one."""
        if self.batch_size <= 1:
            return False
        self.batch_size //= 2
        return True
