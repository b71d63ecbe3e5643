"""The logit lens of an answer already given: its prompt made again, then every layer read.

An answer keeps its request and its token ids, not its prompt's ids. They are
made again here, on the runtime thread, exactly as the generation made them
(the chat template over the request and its history, then a branch's tokens:
:func:`~mlx_magic.engine.text_generation.start_text`; a vision model's text-only
prompt: :func:`~mlx_magic.engine.vision_generation.vision_prompt`), and checked
against the hash the answer's provenance kept: a template, tokenizer or
conversation that changed since is said in one line, never read as if it were
the prompt the model saw. :func:`~mlx_magic.engine.lens.logit_lens` then reads
the prompt and the answer in one forward pass.
"""

from __future__ import annotations

from typing import Optional, Sequence

from mlx_magic.engine.lens import logit_lens
from mlx_magic.engine.model_cache import WarmModel, text_tokenizer
from mlx_magic.engine.text_generation import context_length, fit_history
from mlx_magic.engine.vision_generation import vision_prompt
from mlx_magic.errors import UserError
from mlx_magic.locking import gpu_lock
from mlx_magic.vocabulary.lens import LensGrid, LensRequest, unreadable_answer
from mlx_magic.vocabulary.provenance import token_ids_sha256
from mlx_magic.vocabulary.values import GenerationRequest


def read_lens(warm: WarmModel, asked: LensRequest) -> LensGrid:
    """:func:`answer_lens` of what a runtime was asked (``Runtime.lens``)."""
    return answer_lens(
        warm,
        asked.request,
        asked.answer_ids,
        top_k=asked.top_k,
        expected_sha256=asked.expected_sha256,
    )


def answer_lens(
    warm: WarmModel,
    request: GenerationRequest,
    answer_ids: Sequence[int],
    *,
    top_k: int = 5,
    expected_sha256: Optional[str] = None,
) -> LensGrid:
    """What every layer of ``warm`` predicts at each of ``answer_ids``, the
    answer ``request`` was given (or its first tokens: any prefix of it).

    ``expected_sha256`` is the answer's ``prompt_token_ids_sha256`` (its
    provenance); ``None`` skips the check. Runs on the runtime thread.

    Raises:
        UserError: an answer the lens cannot read (a server's, one with images),
            no answer tokens, a prompt that is no longer the one the model read,
            or a model family the lens cannot read (one line each).
    """
    problem = unreadable_answer(request)
    if problem is not None:
        raise UserError(problem)
    answer = [int(token) for token in answer_ids]
    if not answer:
        raise UserError("The logit lens needs an answer with at least one token")
    with gpu_lock:
        prompt = as_the_model_read_it(
            prompt_ids(warm, request), request, answer, expected_sha256, "The logit lens"
        )
        return logit_lens(
            warm.model, warm.tokenizer, prompt + answer, first=len(prompt), top_k=top_k
        )


def prompt_ids(warm: WarmModel, request: GenerationRequest) -> list[int]:
    """The prompt's token ids as the generation read them (and hashed them)."""
    if warm.kind == "vision":
        text = vision_prompt(warm, request)
        return [int(token) for token in text_tokenizer(warm.tokenizer).encode(text)]
    prompt, _ = fit_history(warm.tokenizer, request, context_length(warm.config))
    return prompt + list(request.continue_ids)


def as_the_model_read_it(
    prompt: list[int],
    request: GenerationRequest,
    answer: list[int],
    expected_sha256: Optional[str],
    reader: str,
) -> list[int]:
    """``prompt``, made again, checked against the hash the answer's provenance
    kept (``None``: not checked), without a branch's tokens (read as the answer's).

    Raises:
        UserError: the prompt is not the one the model read.
    """
    if expected_sha256 is not None and token_ids_sha256(prompt) != expected_sha256:
        raise UserError(
            f"{reader}: this answer's prompt, made again, is not the one the model read (its "
            "chat template, tokenizer or conversation changed since): run the cell again, "
            "then read the new answer"
        )
    # A branch's answer begins with the tokens it continued from, which the
    # prompt (as hashed) ends with: they are read as the answer's.
    continued = list(request.continue_ids)
    if continued and answer[: len(continued)] == continued[: len(answer)]:
        return prompt[: len(prompt) - len(continued)]
    return prompt
