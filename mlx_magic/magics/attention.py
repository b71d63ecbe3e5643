"""Attention in a notebook: ``%mlx attention STEP [NAME] [-l LAYER] [-h HEAD]`` and
``%%mlx --attention [LAYER[:HEAD]]`` (``%%mlx_vision`` too).

Both read an answer already given (``_mlx`` or a variable holding one): the
runtime makes its prompt again (its images through the processor again),
checks it against the answer's provenance, and computes one layer's attention
weights at the position that wrote token STEP
(:mod:`mlx_magic.engine.answer_attention`); the map is kept in the answer's
``attention`` and drawn under it (:mod:`mlx_magic.display.attention_view`),
with a footer line saying what it cost. Nothing is added to a generation: a
cell without ``--attention`` decodes exactly as before. Clicking a token of
the answer is not wired: ``%mlx attention STEP`` names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from mlx_magic.display.attention_view import attention_html, attention_text, describe
from mlx_magic.display.result import MLXResult, footer_html
from mlx_magic.display.views import StreamView, view_for
from mlx_magic.errors import UserError
from mlx_magic.magics.lens import prompt_sha256, read_on_the_runtime
from mlx_magic.vocabulary.attention import (
    NEEDS_LOCAL_MODEL,
    AttentionMap,
    AttentionRequest,
    unreadable_answer,
)
from mlx_magic.vocabulary.values import GenerationRequest

if TYPE_CHECKING:
    from mlx_magic.magics.session import MagicsHost, Session

USAGE = (
    "Usage: %mlx attention STEP [NAME] [-l LAYER] [-h HEAD] (STEP: the answer token, from 1; "
    "NAME: a variable holding an answer, default _mlx)"
)


def command_attention(
    magics: MagicsHost, names: list[str], layer: Optional[int] = None, head: Optional[int] = None
) -> None:
    """``%mlx attention STEP [NAME] [-l LAYER] [-h HEAD]``: where the model looked
    when it wrote token STEP of an answer.

    The weights one decoder layer (``-l``, 0-based, -1 the last: the default)
    gave, at the position that chose answer token STEP (1 is the first), to
    every token before it: the prompt's and the answer's so far. A strip over
    that text, each token shaded by its weight (the mean over heads, or head
    ``-h``); hovering a token shows every head's. For an answer about images,
    each image's tokens are one chip in the strip and a heatmap on the
    picture. The footer says how long it took; ``_mlx.attention`` keeps the
    numbers (``.row()``, ``.image_grid()``, ``.to_frame()``)::

        In [1]: %%mlx -n 8
           ...: The capital of France is

        In [2]: %mlx attention 3 -l 20

        In [3]: %%mlx_vision -i cat.jpg -n 12 --attention
           ...: What animal is this?

    MLX's fused attention does not return its weights, so they are computed
    again from the queries and keys the model's own forward pass hands it.
    Local models whose layers call it (llama, Qwen, SmolLM, Mistral, Gemma 3,
    Qwen2-VL, …); one line for anything else.
    """
    if not 1 <= len(names) <= 2:
        raise UserError(USAGE)
    try:
        step = int(names[0])
    except ValueError:
        raise UserError(USAGE) from None
    target = names[1] if len(names) == 2 else "_mlx"
    answer = magics.session.shell.user_ns.get(target)
    show_attention(
        magics.session, answer, target, view_for(magics.session.shell), step, layer, head
    )


def parse_spec(text: str) -> tuple[Optional[int], Optional[int]]:
    """``--attention``'s ``LAYER[:HEAD]``: ``""`` (the last layer, the mean over
    heads), ``"12"``, ``"12:3"``, ``":3"`` (the last layer's head 3).

    Raises:
        UserError: anything else (one line).
    """
    layer, _, head = text.partition(":")
    try:
        return (int(layer) if layer else None, int(head) if head else None)
    except ValueError:
        raise UserError(
            f"--attention takes LAYER or LAYER:HEAD (whole numbers; -1 is the last layer), "
            f"not {text!r}"
        ) from None


def check_attention_flags(args: Any, columns: int, runtime: str) -> None:
    """``--attention [LAYER[:HEAD]]`` goes with one answer of a local model (one
    line if not), checked before anything is generated."""
    spec = getattr(args, "attention", None)
    if spec is None:
        return
    parse_spec(spec)
    if getattr(args, "map", None):
        raise UserError(
            "--attention reads one answer, not a table of them: leave out --map (or "
            "--attention), then %mlx attention STEP NAME on one answer"
        )
    if columns > 1:
        raise UserError(
            "--attention reads one answer: compare side by side without it, then "
            "first = _mlx[0] and %mlx attention STEP first"
        )
    if getattr(args, "background", False):
        raise UserError(
            "--attention draws under the answer, which -b leaves at once: leave out one, "
            "or %mlx attention STEP NAME when the job is done"
        )
    if runtime == "remote":
        raise UserError(NEEDS_LOCAL_MODEL)


def attention_after_answer(
    session: Session, answer: MLXResult, view: StreamView, spec: str
) -> None:
    """``--attention``: the attention at the answer's last token, under it."""
    layer, head = parse_spec(spec)
    show_attention(session, answer, "_mlx", view, max(1, len(answer.tokens)), layer, head)


def show_attention(
    session: Session,
    answer: object,
    name: str,
    view: StreamView,
    step: int,
    layer: Optional[int],
    head: Optional[int],
) -> AttentionMap:
    """Read the attention at token ``step`` of ``answer`` (the value of ``name``),
    keep it in its ``attention`` and show it with its cost.

    Raises:
        UserError: not an answer, a step out of range, or the runtime's own
            line (a layer or head out of range, a family it cannot read); the
            answer is unchanged.
    """
    request = getattr(answer, "request", None)
    if not isinstance(answer, MLXResult) or not isinstance(request, GenerationRequest):
        raise UserError(
            f"%mlx attention: {name} holds no answer of a %%mlx cell; run one first (or name a "
            "variable holding one)"
        )
    problem = unreadable_answer(request)
    if problem is not None:
        raise UserError(problem)
    if not answer.tokens:
        raise UserError(f"%mlx attention: {name} has no answer tokens to read")
    if not 1 <= step <= len(answer.tokens):
        raise UserError(
            f"%mlx attention STEP: {name} has {len(answer.tokens)} answer tokens "
            f"(1 to {len(answer.tokens)}), not {step}"
        )
    ids = tuple(int(token.id) for token in answer.tokens[:step])
    asked = AttentionRequest(request, ids, step, layer, head, prompt_sha256(answer))
    found, took = read_on_the_runtime(
        session, "the attention weights", lambda: session.runtime.attention(asked)
    )
    answer.attention = found
    note = (
        f"attention · {describe(found)} · {len(found.token_ids)} positions · {took:.2f} s · "
        f"{answer.model} ({found.model_type}) · %mlx attention STEP reads another token"
    )
    images = list(request.images)
    view.show_bundle(
        {
            "text/plain": f"{attention_text(found)}\n[{note}]",
            "text/html": f"{attention_html(found, images)}{footer_html(note)}",
        }
    )
    return found
