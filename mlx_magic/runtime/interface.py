"""The interface every runtime serves: what the magics need from a place that runs models.

It carries only the typed values of :mod:`mlx_magic.vocabulary.values`, so the
same magics work with the thread runtime in the kernel, a worker process over
JSON-RPC, or remote OpenAI-compatible servers.
"""

from __future__ import annotations

import abc
from typing import Optional, Union, cast

from mlx_magic.errors import UserError
from mlx_magic.vocabulary.attention import AttentionMap, AttentionRequest
from mlx_magic.vocabulary.embedding import Embeddings, EmbedRequest
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.lens import LensGrid, LensRequest
from mlx_magic.vocabulary.masks import Segmentation, SegmentRequest
from mlx_magic.vocabulary.values import GenerationRequest, ModelInfo, ModelSpec, RuntimeStatus

#: What a runtime may be asked to read of an answer's model, of a segmenter or of
#: an embedding model (:meth:`Runtime.inspect`).
Inspection = Union[LensRequest, AttentionRequest, SegmentRequest, EmbedRequest]
INSPECTIONS = (LensRequest, AttentionRequest, SegmentRequest, EmbedRequest)


class Runtime(abc.ABC):
    """What the magics need from a place that runs models."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> Job:
        """Queue a generation; returns at once with its :class:`Job`."""

    def generate_together(self, requests: list[GenerationRequest]) -> list[Job]:
        """Queue generations that advance together, token by token (models
        side by side). A runtime that cannot interleave runs them in turn."""
        return [self.generate(request) for request in requests]

    @abc.abstractmethod
    def load(self, spec: ModelSpec) -> ModelInfo:
        """Make a model warm (blocking); returns what was loaded."""

    def lens(self, asked: LensRequest) -> LensGrid:
        """The logit lens of an answer (blocking): what each layer of its model
        predicts at each of its tokens (:class:`LensRequest` says which).

        Raises:
            UserError: this runtime has no model's layers to read, or the
                answer cannot be read (one line).
        """
        return cast(LensGrid, self.inspect(asked))

    def attention(self, asked: AttentionRequest) -> AttentionMap:
        """The attention of one layer when an answer's token was written (blocking):
        its weights over the prompt and the answer before it
        (:class:`AttentionRequest` says which token, layer and head).

        Raises:
            UserError: this runtime has no model's layers to read, or the
                answer, step, layer or head cannot be read (one line).
        """
        return cast(AttentionMap, self.inspect(asked))

    def segment(self, asked: SegmentRequest) -> Segmentation:
        """The masks a segmenter (SAM 3, SAM 3.1) finds in images (blocking), from text
        and box prompts (:class:`SegmentRequest` says which); the model stays warm.

        Raises:
            UserError: this runtime holds no models (one line).
        """
        return cast(Segmentation, self.inspect(asked))

    def embed(self, asked: EmbedRequest) -> Embeddings:
        """The vectors of texts or images (blocking), from a warm embedding model,
        batched (:class:`EmbedRequest` says which model and items).

        Raises:
            UserError: this runtime has no local model to embed with, or the
                model cannot read the items (images for a text embedder; one line).
        """
        return cast(Embeddings, self.inspect(asked))

    def inspect(self, asked: Inspection) -> object:
        """Read what ``asked`` asks of an answer's model (:meth:`lens`,
        :meth:`attention`) or of a segmenter (:meth:`segment`): the runtimes
        that hold models serve it; here, one line."""
        raise UserError(asked.needs_local)

    @abc.abstractmethod
    def unload(self, key: Optional[str] = None) -> list[str]:
        """Free one warm model (by key), or all when ``key`` is ``None``."""

    @abc.abstractmethod
    def models(self) -> list[ModelInfo]:
        """The warm models, least recently used first."""

    @abc.abstractmethod
    def status(self) -> RuntimeStatus:
        """A snapshot of the runtime's state."""

    @abc.abstractmethod
    def clear_caches(self) -> int:
        """Empty every warm model's prompt prefix and vision feature caches;
        returns how many entries were dropped."""

    @abc.abstractmethod
    def set_memory_budget(self, budget_bytes: int) -> None:
        """Change the warm-model budget, evicting models if needed."""

    @abc.abstractmethod
    def stop(self, timeout: float = 30.0) -> None:
        """Stop, free every model, and wait for the work to end."""
