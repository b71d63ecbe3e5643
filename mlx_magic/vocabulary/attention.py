"""The attention weights of one generated token: where the model looked when it wrote it.

Plain values (ints, floats, strings in tuples), made by
:func:`mlx_magic.engine.attention.attention_row` and drawn by
:mod:`mlx_magic.display.attention_view`; a notebook reads them as ``_mlx.attention``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from mlx_magic.errors import import_extra
from mlx_magic.vocabulary.values import GenerationRequest, ModelSpec

#: Why a server's answer cannot be read (the remote runtime says it, and the
#: magics before a generation is spent on ``--attention``).
NEEDS_LOCAL_MODEL = (
    "Attention weights are read from the model's layers: they need a local model (thread or "
    "process runtime; %mlx disconnect goes back to one)"
)


@dataclass(frozen=True)
class AttentionRequest:
    """Which token of which answer a runtime reads the attention of (``Runtime.attention``).

    Attributes:
        request: the request the answer was given (``_mlx.request``).
        answer_ids: the answer's token ids up to the token read, at least.
        step: the token read, 1-based (``%mlx attention STEP``).
        layer: the decoder layer (0-based; negative counts from the end;
            ``None``: the last one).
        head: the head the view shows (``None``: the mean over heads); every
            head's weights are read either way.
        expected_sha256: the answer's ``prompt_token_ids_sha256`` (its
            provenance): the prompt made again must have it (``None``: unchecked).
    """

    request: GenerationRequest
    answer_ids: tuple[int, ...]
    step: int
    layer: Optional[int] = None
    head: Optional[int] = None
    expected_sha256: Optional[str] = None
    needs_local: ClassVar[str] = NEEDS_LOCAL_MODEL

    @property
    def model(self) -> ModelSpec:
        """The model that gave the answer (the one the runtime reads)."""
        return self.request.model


@dataclass(frozen=True)
class ImagePatches:
    """Where one image's tokens are among the positions read, and the pixels each covers.

    Attributes:
        image: the image's index in the request's ``images``.
        start: the position of its first token.
        rows, cols: its tokens as a grid, row by row (Qwen2-VL: one token per
            2 × 2 patches of 14 pixels, so ``rows`` = patch rows / 2).
        size: the (width, height) in pixels of the image as the processor
            resized it, which the grid covers; the image sent is that scaled.
    """

    image: int
    start: int
    rows: int
    cols: int
    size: tuple[int, int]

    @property
    def tokens(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class AttentionMap:
    """One layer's attention from the position that wrote answer token ``step``.

    ``weights[h][p]`` is how much head ``h`` of decoder layer ``layer``, at the
    position whose output chose token ``step``, attends to position ``p`` (the
    prompt's tokens, then the answer's before ``step``): a row of
    softmax(q·Kᵀ·scale + mask) per head, each summing to 1.

    Attributes:
        model_type: the model's family as its config names it.
        layer: the decoder layer read (0-based); ``layers``: how many it has.
        head: the head shown (``None``: the mean over heads).
        step: the answer token read (1-based); ``written_id``, ``written``: that token.
        token_ids, tokens: every position read, with its text (one token at a time).
        prompt_tokens: how many of them are the prompt's (the rest are the answer's).
        weights: heads × positions.
        images: where each image's tokens are (vision models; empty otherwise).
    """

    model_type: str
    layer: int
    layers: int
    head: Optional[int]
    step: int
    written_id: int
    written: str
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    prompt_tokens: int
    weights: tuple[tuple[float, ...], ...]
    images: tuple[ImagePatches, ...] = ()

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.token_ids):
            raise ValueError("an AttentionMap needs one text per token id")
        if any(len(row) != len(self.token_ids) for row in self.weights):
            raise ValueError("every head of an AttentionMap has one weight per position")

    @property
    def heads(self) -> int:
        """How many heads the layer has (rows of ``weights``)."""
        return len(self.weights)

    def row(self, head: Optional[int] = None) -> list[float]:
        """The weights over the positions: of ``head``, else of the map's
        ``head``, else their mean over every head."""
        head = self.head if head is None else head
        if head is not None:
            return list(self.weights[head])
        count = max(1, self.heads)
        return [sum(column) / count for column in zip(*self.weights)]

    def image_grid(self, index: int = 0, head: Optional[int] = None) -> list[list[float]]:
        """The weights on the tokens of ``images[index]``, as its rows × cols grid."""
        patches = self.images[index]
        row = self.row(head)[patches.start : patches.start + patches.tokens]
        return [row[r * patches.cols : (r + 1) * patches.cols] for r in range(patches.rows)]

    def top(self, count: int = 5, head: Optional[int] = None) -> list[tuple[int, str, float]]:
        """The ``count`` positions with the most weight: (position, token, weight)."""
        row = self.row(head)
        order = sorted(range(len(row)), key=lambda p: -row[p])[:count]
        return [(p, self.tokens[p], row[p]) for p in order]

    def to_frame(self) -> Any:
        """One row per position (its token, weight shown, and each head's), as a
        pandas DataFrame (the ``tables`` extra).

        Raises:
            MissingExtra: pandas is not installed.
        """
        pandas = import_extra("pandas", "tables", "Attention weights as a table")
        shown = self.row()
        return pandas.DataFrame(
            [
                {
                    "position": position,
                    "token": self.tokens[position],
                    "token_id": self.token_ids[position],
                    "in": "prompt" if position < self.prompt_tokens else "answer",
                    "weight": shown[position],
                    **{f"head_{h}": self.weights[h][position] for h in range(self.heads)},
                }
                for position in range(len(self.token_ids))
            ]
        )


def unreadable_answer(request: GenerationRequest) -> Optional[str]:
    """Why the attention of the answer of ``request`` cannot be read (one line), or ``None``.

    A server's answer has no layers here; a video's frames are not mapped back
    (its answer is refused rather than read without them). Images are read as
    the model read them: the processor runs again on the request's images.
    """
    if request.model.source == "remote":
        return NEEDS_LOCAL_MODEL
    if request.has_video:
        return (
            "Attention weights are read over the prompt, the answer and images, not a video's "
            "frames: ask about images (or text) to see where the model looked"
        )
    return None
