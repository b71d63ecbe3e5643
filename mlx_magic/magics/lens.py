"""The logit lens in a notebook: ``%mlx lens [NAME] [-k K] [-t N]`` and ``%%mlx --lens [N]``.

Both read an answer already given (``_mlx`` or a variable holding one): the
runtime makes its prompt again, checks it against the answer's provenance, and
reads every decoder layer through the final norm and the head
(:mod:`mlx_magic.engine.answer_lens`); the grid is kept in the answer's
``lens`` and drawn under it (:mod:`mlx_magic.display.lens_view`), with a
one-line footer saying what it cost. Nothing is added to a generation: a cell
without ``--lens`` decodes exactly as before.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from mlx_magic.display.lens_view import lens_html, lens_text
from mlx_magic.display.result import MLXResult, footer_html
from mlx_magic.display.views import StreamView, view_for
from mlx_magic.errors import GenerationInterrupted, UserError
from mlx_magic.vocabulary.lens import NEEDS_LOCAL_MODEL, LensGrid, LensRequest, unreadable_answer
from mlx_magic.vocabulary.values import GenerationRequest

T = TypeVar("T")

if TYPE_CHECKING:
    from mlx_magic.magics.session import MagicsHost, Session

#: The answer tokens read unless ``-t N`` / ``--lens N`` says otherwise: the
#: lens costs about one forward pass per layer over them.
DEFAULT_TOKENS = 64
#: The top tokens each cell keeps (its hover) unless ``-k K`` says otherwise.
DEFAULT_TOP_K = 5
MAX_TOP_K = 20

USAGE = "Usage: %mlx lens [NAME] [-k K] [-t N] (NAME: a variable holding an answer; default _mlx)"


def command_lens(
    magics: MagicsHost, names: list[str], top_k: Optional[int] = None, tokens: Optional[int] = None
) -> None:
    """``%mlx lens [NAME] [-k K] [-t N]``: what every layer would have said, for an answer.

    For each token of the answer in ``_mlx`` (or the variable NAME), what each
    decoder layer of the model predicts there: that layer's output put through
    the model's final norm and output head (the "logit lens"). A layers ×
    tokens table, last layer (the model's own output) on top; each cell shows
    the layer's top token, shaded by its probability, bold where it is the
    token that was generated; hovering shows its top K (``-k``, default 5).
    The first N answer tokens are read (``-t``, default 64); the footer says
    how many layers and tokens, and how long it took. ``_mlx.lens`` keeps the
    numbers (``_mlx.lens.to_frame()`` is a table)::

        In [1]: %%mlx -n 3
           ...: What is the capital of France?

        In [2]: %mlx lens

        In [3]: _mlx.lens.cell(-1, 0).top_texts   # the last layer, the first token

    Local text models of the families mlx-lm runs (llama, Qwen, SmolLM, Gemma,
    Mistral, Phi-3, …) and a vision model's text-only answers; one line for
    anything else (a server's answer, an answer about images, a family it
    cannot read, a prompt that changed since). ``%%mlx --lens`` does the same
    right after the answer.
    """
    if len(names) > 1:
        raise UserError(USAGE)
    target = names[0] if names else "_mlx"
    answer = magics.session.shell.user_ns.get(target)
    show_lens(
        magics.session,
        answer,
        target,
        view_for(magics.session.shell),
        top_k=DEFAULT_TOP_K if top_k is None else top_k,
        tokens=DEFAULT_TOKENS if tokens is None else tokens,
        more="-t N",
    )


def check_lens_flags(args: Any, columns: int, runtime: str) -> None:
    """``%%mlx --lens [N]`` goes with one answer of a local model (one line if not),
    checked before anything is generated."""
    tokens = getattr(args, "lens", None)
    if tokens is None:
        return
    if tokens < 1:
        raise UserError(f"--lens N reads the first N answer tokens: N is at least 1, not {tokens}")
    if getattr(args, "map", None):
        raise UserError(
            "--lens reads one answer's layers, not a table of them: leave out --map (or "
            "--lens), then %mlx lens NAME on one answer"
        )
    if columns > 1:
        raise UserError(
            "--lens reads one answer's layers: compare side by side without it, then "
            "first = _mlx[0] and %mlx lens first"
        )
    if getattr(args, "background", False):
        raise UserError(
            "--lens draws the grid under the answer, which -b leaves at once: leave out one, "
            "or %mlx lens NAME when the job is done"
        )
    if runtime == "remote":
        raise UserError(NEEDS_LOCAL_MODEL)


def lens_after_answer(session: Session, answer: MLXResult, view: StreamView, tokens: int) -> None:
    """``%%mlx --lens N``: the lens of the answer just kept, under it."""
    show_lens(session, answer, "_mlx", view, top_k=DEFAULT_TOP_K, tokens=tokens, more="--lens N")


def show_lens(
    session: Session,
    answer: object,
    name: str,
    view: StreamView,
    *,
    top_k: int,
    tokens: int,
    more: str,
) -> LensGrid:
    """Read the lens of ``answer`` (the value of ``name``), keep it in its
    ``lens`` and show it with its cost; ``more`` names the option that reads
    more tokens, for the footer.

    Raises:
        UserError: not an answer, nothing to read, options out of range, or
            the runtime's own line (one line each); the answer is unchanged.
    """
    request = getattr(answer, "request", None)
    if not isinstance(answer, MLXResult) or not isinstance(request, GenerationRequest):
        raise UserError(
            f"%mlx lens: {name} holds no answer of a %%mlx cell; run one first (or name a "
            "variable holding one)"
        )
    if not 1 <= top_k <= MAX_TOP_K:
        raise UserError(f"%mlx lens -k takes 1 to {MAX_TOP_K} top tokens, not {top_k}")
    if tokens < 1:
        raise UserError(
            f"%mlx lens -t N reads the first N answer tokens: N is at least 1, not {tokens}"
        )
    problem = unreadable_answer(request)
    if problem is not None:
        raise UserError(problem)
    if not answer.tokens:
        raise UserError(f"%mlx lens: {name} has no answer tokens to read")
    ids = tuple(int(token.id) for token in answer.tokens[:tokens])
    asked = LensRequest(request, ids, top_k, prompt_sha256(answer))
    grid, took = read_on_the_runtime(session, "the logit lens", lambda: session.runtime.lens(asked))
    answer.lens = grid
    read = f"{len(ids)} answer tokens"
    if len(ids) < len(answer.tokens):
        read = f"the first {len(ids)} of {len(answer.tokens)} answer tokens ({more} reads more)"
    note = (
        f"logit lens · {grid.layers} layers × {read} · {took:.2f} s · {answer.model} "
        f"({grid.model_type})"
    )
    view.show_bundle(
        {
            "text/plain": f"{lens_text(grid)}\n[{note}]",
            "text/html": f"{lens_html(grid)}{footer_html(note)}",
        }
    )
    return grid


def read_on_the_runtime(session: Session, what: str, read: Callable[[], T]) -> tuple[T, float]:
    """``read()`` (a runtime method that reads a warm model), saying so when it
    waits behind a generation; its value and how long it took (s).

    Raises:
        GenerationInterrupted: an interrupt while it waited (one line).
    """
    if session.runtime_started and session.runtime.status().busy:
        print(f"Waiting for the generation in progress to end before reading {what}…")
    started = time.perf_counter()
    try:
        value = read()
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, GenerationInterrupted):
            raise
        raise GenerationInterrupted(f"stopped waiting for {what}") from interrupt
    return value, time.perf_counter() - started


def prompt_sha256(answer: MLXResult) -> Optional[str]:
    """The hash of the prompt's token ids the answer was generated from: its
    provenance record's, else its stats' (a branch keeps only those)."""
    for record in (answer.provenance, getattr(answer.stats, "provenance", None)):
        value = (record or {}).get("prompt_token_ids_sha256")
        if isinstance(value, str):
            return value
    return None
