"""The numbers of a logit lens: what each layer would have predicted for each answer token.

Plain values (ints, floats, strings in tuples), made by
:func:`mlx_magic.engine.lens.logit_lens` and drawn by
:mod:`mlx_magic.display.lens_view`; a notebook reads them as ``_mlx.lens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from mlx_magic.errors import import_extra
from mlx_magic.vocabulary.values import GenerationRequest, ModelSpec

#: Why a server's answer cannot be read (the remote runtime says it, and the
#: magics before a generation is spent on ``--lens``).
NEEDS_LOCAL_MODEL = (
    "The logit lens reads the model's layers: it needs a local model (thread or process "
    "runtime; %mlx disconnect goes back to one)"
)


@dataclass(frozen=True)
class LensRequest:
    """Which answer a runtime's lens reads (``Runtime.lens``).

    Attributes:
        request: the request the answer was given (``_mlx.request``).
        answer_ids: the answer's token ids, or its first ones.
        top_k: how many top tokens each cell keeps (its hover).
        expected_sha256: the answer's ``prompt_token_ids_sha256`` (its
            provenance): the prompt made again must have it (``None``: unchecked).
    """

    request: GenerationRequest
    answer_ids: tuple[int, ...]
    top_k: int = 5
    expected_sha256: Optional[str] = None
    needs_local: ClassVar[str] = NEEDS_LOCAL_MODEL

    @property
    def model(self) -> ModelSpec:
        """The model that gave the answer (the one the runtime reads)."""
        return self.request.model


@dataclass(frozen=True)
class LensCell:
    """One layer's reading at one answer token.

    Attributes:
        top_ids: the most likely next tokens by this layer, most likely first.
        top_texts: their text, decoded one token at a time.
        top_probs: their probabilities (softmax over the whole vocabulary).
        chosen_prob: the probability this layer gives the token the model
            actually generated there.
    """

    top_ids: tuple[int, ...]
    top_texts: tuple[str, ...]
    top_probs: tuple[float, ...]
    chosen_prob: float


@dataclass(frozen=True)
class LensGrid:
    """A layers × answer-tokens grid of :class:`LensCell`.

    ``rows[i][j]`` is what the output of decoder layer ``i`` (``model.layers[i]``,
    0-based), put through the final norm and the output head, predicts at the
    position that generated answer token ``j``. The last row is the model's
    own output distribution.

    Attributes:
        model_type: the model's family as its config names it (``llama``, ``qwen2``, …).
        token_ids: the generated tokens' ids.
        tokens: the generated tokens' text, one token at a time.
        rows: one tuple of cells per layer, first layer first.
    """

    model_type: str
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    rows: tuple[tuple[LensCell, ...], ...]

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.token_ids):
            raise ValueError("a LensGrid needs one text per token id")
        if any(len(row) != len(self.token_ids) for row in self.rows):
            raise ValueError("every row of a LensGrid has one cell per answer token")

    @property
    def layers(self) -> int:
        """How many decoder layers were read (rows)."""
        return len(self.rows)

    def cell(self, layer: int, token: int) -> LensCell:
        """The cell of ``layer`` (0-based; -1 is the last) at answer token ``token``."""
        return self.rows[layer][token]

    def chosen_probs(self) -> list[list[float]]:
        """Per layer, the probability it gives each generated token (a layers × tokens matrix)."""
        return [[cell.chosen_prob for cell in row] for row in self.rows]

    def to_frame(self) -> Any:
        """One row per (layer, answer token), as a pandas DataFrame (the ``tables`` extra).

        Raises:
            MissingExtra: pandas is not installed.
        """
        pandas = import_extra("pandas", "tables", "The logit lens as a table")
        return pandas.DataFrame(
            [
                {
                    "layer": layer,
                    "position": position,
                    "token": self.tokens[position],
                    "token_id": self.token_ids[position],
                    "chosen_prob": cell.chosen_prob,
                    "top": cell.top_texts[0] if cell.top_texts else "",
                    "top_prob": cell.top_probs[0] if cell.top_probs else 0.0,
                    "top_texts": list(cell.top_texts),
                    "top_probs": list(cell.top_probs),
                }
                for layer, row in enumerate(self.rows)
                for position, cell in enumerate(row)
            ]
        )


def unreadable_answer(request: GenerationRequest) -> Optional[str]:
    """Why the lens cannot read the answer of ``request`` (one line), or ``None``.

    A server's answer has no layers here. An answer about images or a video is
    refused rather than read without them: the lens feeds the language model
    token ids only, so the picture would be placeholder tokens and no row,
    not even the last, would be what the model computed for that answer. A
    vision model's text-only answer (``%%mlx -m`` a vision model) is read exactly.
    """
    if request.model.source == "remote":
        return NEEDS_LOCAL_MODEL
    if request.images or request.has_video:
        return (
            "The logit lens reads text: this answer saw images or a video, which it cannot "
            "feed through the layers (they would be placeholder tokens, and the grid would not "
            "be what the model computed); ask the same model without them, with %%mlx"
        )
    return None
