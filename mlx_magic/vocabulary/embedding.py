"""What a runtime is asked to embed, and the vectors it gives back.

An :class:`EmbedRequest` names an embedding model and the texts or images to
turn into vectors (``Runtime.embed``); :class:`Embeddings` holds them, one
row per item, as the model's own pooling and normalisation made them
(:mod:`mlx_magic.engine.embedding`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mlx_magic.vocabulary.values import ModelSpec

#: Why a server cannot embed here (the remote runtime says it).
NEEDS_LOCAL_MODEL = (
    "Embeddings run on a local embedding model (thread or process runtime): "
    "%mlx disconnect goes back to one"
)
#: Texts embedded in one forward pass unless ``--batch-size`` says otherwise.
DEFAULT_BATCH_SIZE = 32


def embedder_not_chat(name: str) -> str:
    """The one line for an embedding model given to a cell that asks for an answer."""
    return (
        f"'{name}' is an embedding model: it gives vectors, not answers. Use %mlx embed "
        "ITEMS -m MODEL (or %%mlx --embed), or pass a chat model with -m"
    )


def not_an_embedder(name: str) -> str:
    """The one line for a chat model given to ``--embed`` / ``%mlx embed``."""
    return (
        f"'{name}' is a chat model, not an embedding model: pass one with -m (an "
        "EmbeddingGemma, Qwen3-Embedding, BERT or ModernBERT folder or Hub id) or set "
        "%config MLXMagics.default_embedding_model"
    )


@dataclass(frozen=True)
class EmbedRequest:
    """Texts or images for an embedding model to turn into vectors (``Runtime.embed``).

    Attributes:
        model: the embedding model (its ``kind`` is ``"embedding"``).
        texts: the texts, in order (empty when the items are images).
        images: RGB ``PIL.Image`` objects, in order (empty when they are texts).
        batch_size: how many texts share one forward pass (padded together).
    """

    model: ModelSpec
    texts: tuple[str, ...] = ()
    images: tuple = ()
    batch_size: int = DEFAULT_BATCH_SIZE
    needs_local: ClassVar[str] = NEEDS_LOCAL_MODEL

    @property
    def count(self) -> int:
        return len(self.texts) + len(self.images)


@dataclass(frozen=True)
class Embeddings:
    """The vectors of an :class:`EmbedRequest`.

    Attributes:
        vectors: a float32 numpy array, one row per item in the request's order.
        model_type: the model's ``model_type`` (``qwen3_embedding``, ``bert``…).
        pooling: how the tokens became one vector (``lasttoken``, ``mean``, ``cls``…).
        normalized: whether each vector has length 1 (cosine = dot product).
        tokens: the tokens read, padding left out.
        batches: how many forward passes it took.
        seconds: how long the forward passes took.
        failed: ``(position, reason)`` of each item that could not be
            embedded (its row of ``vectors`` is NaN), the reason one line.
    """

    vectors: Any
    model_type: str
    pooling: str
    normalized: bool
    tokens: int
    batches: int
    seconds: float
    failed: tuple[tuple[int, str], ...] = ()

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0
