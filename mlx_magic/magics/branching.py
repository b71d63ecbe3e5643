"""``%mlx branch STEP TOKEN [NAME]``: go on from one of an answer's tokens with
another one of its alternatives.

The branch is the same request with the answer's first STEP - 1 tokens and
the chosen token put after the prompt (``continue_ids``): the prefix cache
holds the original answer's KV state and mlx-lm's prompt cache trims it to
that point, so only the chosen token is read anew (the footer's "cached"
count says so). The branch streams into the cell; then both answers are
shown side by side, each with its probabilities, and the branch is kept in
the original's ``branches``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from mlx_magic.display.branch_view import branch_bundle, branch_title
from mlx_magic.display.result import MLXResult, TokenInfo
from mlx_magic.display.streaming import stream_job
from mlx_magic.display.views import view_for
from mlx_magic.errors import GenerationFailed, GenerationInterrupted, UserError
from mlx_magic.vocabulary.values import GenerationRequest

if TYPE_CHECKING:
    from mlx_magic.display.views import StreamView
    from mlx_magic.magics.session import MagicsHost, Session

USAGE = (
    "Usage: %mlx branch STEP TOKEN [NAME]: STEP is a token's number in the --probs table, "
    "TOKEN one of its alternatives (as the table shows it, or #K for the K-th most likely); "
    "NAME an --out variable (default: _mlx)"
)


def command_branch(magics: MagicsHost, names: list[str]) -> None:
    session = magics.session
    if len(names) not in (2, 3):
        raise UserError(USAGE)
    target = names[2] if len(names) == 3 else "_mlx"
    original = session.shell.user_ns.get(target)
    step, alternative = chosen_alternative(original, target, names[0], names[1])
    view = view_for(session.shell)
    branch = run_branch(session, original, step, alternative, view)
    view.show_bundle(branch_bundle(original, branch))


def chosen_alternative(
    original: object, target: str, step_text: str, token_text: str
) -> tuple[int, tuple]:
    """The token number and the alternative (id, text, logprob) the user named.

    Raises:
        UserError: not an answer with probabilities, no such step, or no
            such alternative there (one line each, naming what there is).
    """
    request = getattr(original, "request", None)
    if not isinstance(original, MLXResult) or not isinstance(request, GenerationRequest):
        raise UserError(f"%mlx branch: {target} holds no answer of a %%mlx cell; run one first")
    if request.model.kind != "text" or request.images:
        raise UserError("%mlx branch works with text models: this answer is a vision model's")
    if not original.tokens or original.tokens[0].logprob is None:
        raise UserError(
            f"%mlx branch: {target} has no token probabilities: run the cell with --probs"
        )
    try:
        step = int(step_text)
    except ValueError:
        raise UserError(USAGE) from None
    if not 1 <= step <= len(original.tokens):
        raise UserError(
            f"%mlx branch: the answer has tokens 1 to {len(original.tokens)}, not {step}"
        )
    top = original.tokens[step - 1].top
    if token_text.startswith("#") and token_text[1:].isdigit():
        rank = int(token_text[1:])
        if not 1 <= rank <= len(top):
            raise UserError(f"%mlx branch: token {step} has alternatives #1 to #{len(top)}")
        return step, tuple(top[rank - 1])
    matches = [t for t in top if t[1] == token_text] or [
        t for t in top if t[1].strip() == token_text.strip()
    ]
    if not matches:
        shown = ", ".join(repr(t[1]) for t in top)
        raise UserError(
            f"%mlx branch: {token_text!r} is not an alternative of token {step} ({shown}); "
            "pick one of them, or #K"
        )
    return step, tuple(matches[0])


def run_branch(
    session: Session, original: MLXResult, step: int, alternative: tuple, view: StreamView
) -> MLXResult:
    """Generate the branch (streamed into ``view``); returns it, kept in
    ``original.branches``."""
    token_id, token_text, logprob = alternative
    before = [token.id for token in original.tokens[: step - 1]]
    request = original.request
    assert isinstance(request, GenerationRequest)  # checked by chosen_alternative
    sampling = dataclasses.replace(
        request.sampling, max_tokens=max(1, request.sampling.max_tokens - step)
    )
    branch_request = dataclasses.replace(
        request,
        continue_ids=tuple(before) + (int(token_id),),
        sampling=sampling,
        top_logprobs=request.top_logprobs or 5,
        conversation=None,  # a what-if, not a turn of the conversation
    )
    print(f"[{branch_title(original, step, token_text)}]")
    (job,) = session.start(branch_request)
    try:
        outcome = stream_job(job, view, interval_s=session.stream_interval_s)
    except GenerationFailed as failed:
        raise UserError(f"%mlx branch: {failed.failure.message}") from failed
    rest = outcome.result
    outcome.shield.release()
    head = original.tokens[: step - 1]
    chosen = TokenInfo(
        id=int(token_id), text=token_text, logprob=logprob, top=original.tokens[step - 1].top
    )
    branch = dataclasses.replace(
        rest,
        text="".join(token.text for token in head) + token_text + rest.text,
        tokens=[dataclasses.replace(token) for token in head] + [chosen] + rest.tokens,
        request=branch_request,
        branches=[],
        branched_at=(step, token_text),
    )
    original.branches.append(branch)
    if outcome.interrupted:
        # Kept, but a stopped branch is not shown as a finished what-if.
        raise GenerationInterrupted(
            f"branch stopped after {rest.stats.generation_tokens} tokens; the partial branch "
            "is the answer's .branches[-1]"
        )
    return branch
