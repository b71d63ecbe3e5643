"""A cell's flags as one typed value, built the same way by every caller.

``%%mlx``, ``%%mlx_vision`` and the chat panel all describe a generation as a
:class:`CellOptions`; several ``-m``, ``--temp`` or ``--seed`` values become
one :class:`CellOptions` per column (:func:`variants_of`).
"""

from __future__ import annotations

import itertools
import json
import keyword
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from mlx_magic.errors import UserError
from mlx_magic.images import LoadedImage
from mlx_magic.magics.conversations import PendingTurn
from mlx_magic.magics.schemas import AnswerSchema
from mlx_magic.vocabulary import defaults
from mlx_magic.vocabulary.sampling import sampling_problem
from mlx_magic.vocabulary.values import (
    GenerationRequest,
    ModelSpec,
    SamplingParams,
)


@dataclass(frozen=True)
class CellOptions:
    """What one generation was asked for; ``None`` leaves a value to the settings."""

    model: Optional[str] = None
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    repetition_penalty: Optional[float] = None
    seed: Optional[int] = None
    system: Optional[str] = None
    raw: bool = False
    out: Optional[str] = None
    chat: Optional[str] = None
    #: ``--format``; ``None`` leaves it to the ``default_format`` setting.
    answer_format: Optional[str] = None
    interpolate: bool = True
    append_last_error: bool = False
    probs: Optional[int] = None
    background: bool = False
    images: tuple[str, ...] = ()
    #: ``--region``: the part of each image to send (x1, y1, x2, y2 pixels).
    region: Optional[tuple[float, float, float, float]] = None
    #: ``--region @N``: the box drawn as mark N instead.
    region_mark: Optional[int] = None
    #: ``--marks``: "@drawn" (the marks drawn on the latest preview) or "@boxes".
    marks: Optional[str] = None
    #: ``--max-pixels``: shrink larger images to this many pixels.
    max_pixels: Optional[int] = None
    #: ``-v``: a video file or a variable holding frames; ``--fps``, ``--max-frames``.
    video: Optional[str] = None
    video_fps: float = defaults.VIDEO_FPS
    video_max_frames: int = defaults.VIDEO_MAX_FRAMES
    #: ``--map ITEMS``, ``--batch-size N``, ``--resume``.
    map_items: Optional[str] = None
    batch_size: Optional[int] = None
    resume: bool = False
    #: ``--score COLUMN[=FIELD]`` and ``--score-by HOW`` (``None``: exact).
    score: Optional[str] = None
    score_by: Optional[str] = None
    #: ``--judge MODEL``: a model grades the answers (``--score``'s scorer).
    judge: Optional[str] = None
    #: ``--schema NAME``: the notebook value the answer must follow.
    schema: Optional[str] = None
    #: ``--think`` (True), ``--no-think`` (False), neither (None); ``--think-budget``.
    think: Optional[bool] = None
    think_budget: Optional[int] = None
    #: ``--draft MODEL`` (``"none"``: no draft, whatever the setting) and ``--num-draft N``.
    draft: Optional[str] = None
    num_draft: Optional[int] = None
    #: ``--trust-remote-code``: loading may run the Python code the model's folder names.
    trust_remote_code: bool = False
    #: ``--lens [N]``: after the answer, the logit lens of its first N tokens (``None``: off).
    lens: Optional[int] = None
    #: ``--attention [LAYER[:HEAD]]``: after the answer, its last token's attention (``None``: off).
    attention: Optional[str] = None
    #: ``--max-kv-size N``, ``--kv-bits B``: the KV cache's form (``None``: the settings').
    max_kv_size: Optional[int] = None
    kv_bits: Optional[int] = None
    #: ``--tools NAMES``: the notebook functions offered (``None``: none), ``--max-steps``,
    #: ``--auto`` (run calls without asking), ``--show-prompt``.
    tools: Optional[str] = None
    max_steps: int = defaults.MAX_TOOL_STEPS
    auto: bool = False
    show_prompt: bool = False


@dataclass(frozen=True)
class PreparedCell:
    """A generation ready to run.

    Attributes:
        options: what the cell (or panel) asked for.
        request: what the runtime runs.
        out_name: the checked ``--out`` name, if any.
        turn: for ``--chat``, the turn to record when the answer is complete.
        images: the cell's own images (previews show them).
        cell_id: the frontend's id of the cell that asked (conversations use it).
    """

    options: CellOptions
    request: GenerationRequest
    out_name: Optional[str] = None
    turn: Optional[PendingTurn] = None
    images: tuple[LoadedImage, ...] = ()
    cell_id: Optional[str] = None
    #: ``--schema``: what the answer is parsed and validated with.
    schema: Optional[AnswerSchema] = None
    #: ``--marks``: the marks drawn numbered on the images sent (``Mark`` values).
    marks: tuple = ()


def variants_of(args: Any) -> list[CellOptions]:
    """One :class:`CellOptions` per column, from the parsed flags: every model ×
    temperature × seed given (one of each is the usual, single column)."""
    base = CellOptions(
        max_tokens=args.max_tokens,
        top_p=args.top_p,
        top_k=args.top_k,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        system=args.system,
        raw=args.raw,
        out=args.out,
        chat=args.chat,
        answer_format=args.format,
        interpolate=not args.no_interpolate,
        append_last_error=args.error,
        probs=args.probs,
        background=args.background,
        images=tuple(getattr(args, "image", None) or ()),
        region=_region_of(getattr(args, "region", None)),
        region_mark=_region_mark_of(getattr(args, "region", None)),
        marks=_marks_of(getattr(args, "marks", None)),
        max_pixels=_max_pixels_of(getattr(args, "max_pixels", None)),
        video=getattr(args, "video", None),
        video_fps=getattr(args, "fps", None) or defaults.VIDEO_FPS,
        video_max_frames=getattr(args, "max_frames", None) or defaults.VIDEO_MAX_FRAMES,
        map_items=getattr(args, "map", None),
        batch_size=getattr(args, "batch_size", None),
        resume=bool(getattr(args, "resume", False)),
        score=getattr(args, "score", None),
        score_by=getattr(args, "score_by", None),
        judge=getattr(args, "judge", None),
        schema=getattr(args, "schema", None),
        think=_think_of(args),
        think_budget=getattr(args, "think_budget", None),
        draft=getattr(args, "draft", None),
        num_draft=getattr(args, "num_draft", None),
        trust_remote_code=bool(getattr(args, "trust_remote_code", False)),
        lens=getattr(args, "lens", None),
        attention=getattr(args, "attention", None),
        max_kv_size=getattr(args, "max_kv_size", None),
        kv_bits=getattr(args, "kv_bits", None),
        tools=getattr(args, "tools", None),
        max_steps=_given(getattr(args, "max_steps", None), defaults.MAX_TOOL_STEPS),
        auto=bool(getattr(args, "auto", False)),
        show_prompt=bool(getattr(args, "show_prompt", False)),
    )
    return [
        replace(base, model=model, temperature=temp, seed=seed)
        for model, temp, seed in itertools.product(
            args.model or [None], args.temp or [None], args.seed or [None]
        )
    ]


def _given(value: Optional[int], default: int) -> int:
    return default if value is None else value


def _think_of(args: Any) -> Optional[bool]:
    think, no_think = getattr(args, "think", False), getattr(args, "no_think", False)
    if think and no_think:
        raise UserError("--think and --no-think contradict each other: keep one")
    return True if think else False if no_think else None


def check_thinking(options: CellOptions, spec: ModelSpec, runtime: str) -> None:
    """``--think``, ``--no-think`` and ``--think-budget`` make sense together,
    and for this model and runtime (one line if not).

    A local model's chat template is read from its folder, where it is there
    (``tokenizer_config.json``, ``chat_template.jinja``): ``--think`` on a
    template without ``enable_thinking`` is refused before the model loads
    (the runtime checks again once it has the tokenizer).

    Args:
        spec: the resolved model.
        runtime: the ``runtime`` setting.
    """
    budget = options.think_budget
    if budget is not None and budget < 1:
        raise UserError(f"--think-budget must be at least 1 token, not {budget}")
    if budget is not None and options.think is False:
        raise UserError("--think-budget limits a thinking that --no-think turns off: keep one")
    if options.think is not None and options.raw:
        flag = "--think" if options.think else "--no-think"
        raise UserError(f"{flag} sets the chat template's switch, which --raw leaves out: keep one")
    if spec.kind == "vision" and (options.think is not None or budget is not None):
        raise UserError(
            "--think, --no-think and --think-budget work with text models for now: leave "
            "them out for a vision model"
        )
    if budget is not None and runtime == "remote":
        raise UserError(
            "--think-budget works with local models; a server's thinking cannot be cut "
            "from here: leave it out, or set the server's own budget"
        )
    if options.think is not None and runtime != "remote":
        template = _chat_template_of(Path(spec.path))
        if template is not None and "enable_thinking" not in template:
            flag = "--think" if options.think else "--no-think"
            raise UserError(
                f"{flag}: the chat template of {spec.name} has no enable_thinking switch, so "
                "whether it thinks is up to the model: leave the flag out (or use a model "
                "such as Qwen3)"
            )


def _chat_template_of(folder: Path) -> Optional[str]:
    """A model folder's chat template, if the folder says (else ``None``)."""
    for name in ("chat_template.jinja", "chat_template.json"):
        if (folder / name).is_file():
            return (folder / name).read_text(errors="replace")
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return None
    template = config.get("chat_template") if isinstance(config, dict) else None
    return json.dumps(template) if template is not None else ""


def _region_of(text: Optional[str]) -> Optional[tuple[float, float, float, float]]:
    from mlx_magic.images.regions import parse_region

    if text is None or text.startswith("@"):
        return None
    try:
        return parse_region(text)
    except ValueError as error:
        raise UserError(str(error)) from error


def _region_mark_of(text: Optional[str]) -> Optional[int]:
    from mlx_magic.grounding.marks import mark_number

    if text is None or not text.startswith("@"):
        return None
    number = mark_number(text)
    if number is None or number < 1:
        raise UserError(f"--region {text}: @N names a drawn mark by its number, e.g. --region @1")
    return number


def _marks_of(text: Optional[str]) -> Optional[str]:
    if text is not None and text not in ("@drawn", "@boxes"):
        raise UserError(
            f"--marks {text}: leave it bare (the marks drawn on the latest preview) or write "
            "--marks @boxes (the boxes of the latest answer)"
        )
    return text


def _max_pixels_of(value: Optional[int]) -> Optional[int]:
    if value is not None and value < 32 * 32:
        raise UserError(f"--max-pixels must be at least 1024 (32×32 pixels), not {value}")
    return value


#: The flag that sets each sampler setting, for the messages.
_FLAG_OF = {
    "max_tokens": "--max-tokens",
    "temperature": "--temp",
    "top_p": "--top-p",
    "top_k": "--top-k",
    "min_p": "--min-p",
    "repetition_penalty": "--repetition-penalty",
    "seed": "--seed",
}


def sampling_params(options: CellOptions, settings: Any) -> SamplingParams:
    """The sampler settings: the cell's flags over the ``MLXMagics`` settings.

    Raises:
        UserError: a value out of range (the message names the flag).
    """
    max_tokens = settings.max_tokens if options.max_tokens is None else options.max_tokens
    temperature = settings.temperature if options.temperature is None else options.temperature
    top_p = settings.top_p if options.top_p is None else options.top_p
    if options.probs is not None and not 1 <= options.probs <= 20:
        raise UserError(f"--probs takes 1 to 20 alternatives, not {options.probs}")
    sampling = SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=0 if options.top_k is None else options.top_k,
        min_p=0.0 if options.min_p is None else options.min_p,
        repetition_penalty=options.repetition_penalty,
        seed=options.seed,
    )
    problem = sampling_problem(sampling)
    if problem is not None:
        name, value, expected = problem
        raise UserError(f"{_FLAG_OF[name]} must be {expected}, not {value}")
    return sampling


def checked_out_name(name: Optional[str]) -> Optional[str]:
    """``--out NAME``, if it is a name code can read back."""
    if name is not None and (not name.isidentifier() or keyword.iskeyword(name)):
        raise UserError(f"--out needs a Python variable name, not {name!r}")
    return name
