"""The flags of ``%%mlx`` and ``%%mlx_vision`` (IPython's ``magic_arguments``),
and how a magic's line is split into them."""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

from IPython.core.magic_arguments import argument
from IPython.utils.process import arg_split

from mlx_magic.errors import UserError
from mlx_magic.magics.lens import DEFAULT_TOKENS
from mlx_magic.models.embedded import EMBEDDED_MODEL_NAME
from mlx_magic.vocabulary import defaults

F = TypeVar("F", bound=Callable[..., Any])


def generation_arguments(magic: F) -> F:
    """The flags shared by ``%%mlx`` and ``%%mlx_vision``."""
    flags = [
        argument(
            "-m",
            "--model",
            action="append",
            help="Model: a folder, a .gguf file, a Hub id, an alias, "
            f"or '{EMBEDDED_MODEL_NAME}' (the default for text). Repeat it to compare "
            "models side by side.",
        ),
        argument("-n", "--max-tokens", type=int, help="Most tokens to generate."),
        argument(
            "--temp",
            type=float,
            action="append",
            help="Sampling temperature (0 = greedy); repeat it for a sweep, side by side.",
        ),
        argument("--top-p", type=float, help="Nucleus sampling threshold in [0, 1]."),
        argument("--top-k", type=int, help="Sample from the k most likely tokens (0 = all)."),
        argument(
            "--min-p",
            type=float,
            help="Drop tokens below this fraction of the top probability, in [0, 1].",
        ),
        argument("--repetition-penalty", type=float, help="Penalty above 1 for repeated tokens."),
        argument(
            "--seed",
            type=int,
            action="append",
            help="Random seed, for repeatable sampling; repeat it for a sweep.",
        ),
        argument("-s", "--system", help="System prompt (quote it if it has spaces)."),
        argument(
            "--raw", action="store_true", help="Send the cell as is, without the chat template."
        ),
        argument("-o", "--out", help="Also store the result in this variable."),
        argument(
            "-c",
            "--chat",
            nargs="?",
            const="default",
            metavar="NAME",
            help="Continue the named conversation (default: 'default'); its earlier "
            "turns are sent as history.",
        ),
        argument(
            "-f",
            "--format",
            choices=["text", "markdown", "code", "json"],
            help="markdown: render the answer as it streams (the default in notebooks, "
            "see the default_format setting); text: stream it as plain text; code: render "
            "it, then put its first code block into the next cell; json: stream it as text "
            "and parse it into --out (and _mlx.data).",
        ),
        argument(
            "--think",
            action="store_true",
            help="Ask a reasoning model to think first: sets the chat template's "
            "enable_thinking (Qwen3, SmolLM3, ...). The thinking streams into a folding "
            "'Thinking' block, apart from the answer (_mlx.thinking, _mlx.text).",
        ),
        argument(
            "--no-think",
            action="store_true",
            help="Ask a reasoning model to answer without thinking (enable_thinking false).",
        ),
        argument(
            "--think-budget",
            type=int,
            metavar="N",
            help="End the thinking after N tokens by writing its closing </think> for the "
            "model, which then answers (local text models).",
        ),
        argument(
            "--draft",
            metavar="MODEL",
            help="Decode with a draft model of the same tokenizer (speculative decoding, "
            "mlx-lm's own; 'none' turns the draft_model setting off): the footer shows how "
            "many tokens came from it and the speed against the same prompt (or else the "
            "model's latest answer) without a draft; --probs underlines them (text models).",
        ),
        argument(
            "--trust-remote-code",
            action="store_true",
            help="Let loading run the Python code the model's folder names (auto_map or "
            "model_file in its JSON files), as transformers' trust_remote_code does. Off by "
            "default: a downloaded folder's code runs only for folders you trust "
            "(%%config MLXMagics.trust_remote_code = True for every cell).",
        ),
        argument(
            "--num-draft",
            type=int,
            metavar="N",
            help="With --draft: tokens proposed at a time (default: the num_draft_tokens "
            "setting, 3).",
        ),
        argument(
            "--no-interpolate",
            action="store_true",
            help="Send {braces} as they are instead of filling in {variables}.",
        ),
        argument(
            "--error",
            action="store_true",
            help="Append the traceback of the last error to the prompt.",
        ),
        argument(
            "--probs",
            nargs="?",
            const=5,
            type=int,
            metavar="K",
            help="After the answer, show each token shaded by its probability, with the "
            "K most likely alternatives (default 5); also in _mlx.tokens.",
        ),
        argument(
            "-b",
            "--background",
            action="store_true",
            help="Return at once and stream in the background (%%mlx jobs lists them); "
            "--out is set when the job finishes.",
        ),
        argument(
            "--schema",
            metavar="NAME",
            help="Constrain the answer to a schema: NAME is a Pydantic model class or a "
            "JSON-schema dict. The answer always parses; the parsed value (the Pydantic "
            "instance or dict) goes to _mlx.data and --out (with --map: the table's columns).",
        ),
        argument(
            "--map",
            metavar="ITEMS",
            help="Run the cell once per item of ITEMS (a list, dict, pandas Series or "
            "DataFrame, a generator; for %%mlx_vision also a glob of images). The prompt "
            "names the item as {item}, a row's columns as {row.column}; the answers come back "
            "as a table in _mlx.table (and --out). With several -m (or a --temp/--seed sweep): "
            "every item through every model, one table with a column per model.",
        ),
        argument(
            "--batch-size",
            type=int,
            metavar="N",
            help="With --map: decode N items together (default: as many as fit half of the "
            "memory budget left beside the model, at most 16).",
        ),
        argument(
            "--resume",
            action="store_true",
            help="With --map: continue the table in --out (or _mlx), running only the items "
            "that did not finish.",
        ),
        argument(
            "--score",
            metavar="COLUMN[=FIELD]",
            help="With --map: score each answer against the items' label COLUMN (a "
            "DataFrame column, a dict key); with --schema, COLUMN=FIELD scores the parsed "
            "answer's FIELD. The table gains a score column; _mlx.scores is the mean, its 95%% "
            "bootstrap interval and the count, shown at the end.",
        ),
        argument(
            "--score-by",
            metavar="HOW",
            help="With --score: exact (the default) or contains (casefolded, whitespace and "
            "surrounding punctuation ignored), number[:TOL] (the answer's first number within "
            "TOL of the label), or the name of a notebook function (answer, label) -> float.",
        ),
        argument(
            "--judge",
            metavar="MODEL",
            help="With --score: a model grades each answer against the label (the judge_prompt "
            'setting; its reply is held to {"score": 0..1}), batched after the answers; the '
            "judge's own table is _mlx.judged.",
        ),
        argument(
            "--embed",
            action="store_true",
            help="Vectors instead of an answer, from an embedding model (-m, or the "
            "default_embedding_model setting): each line of the cell is a text, or with --map "
            "the cell filled in for each item (%%mlx_vision: -i {item}, each item's image). "
            "_mlx.vectors (N × D) and _mlx.table (a vector column); %%mlx nearest, %%mlx plot.",
        ),
        argument(
            "--attention",
            nargs="?",
            const="",
            metavar="LAYER[:HEAD]",
            help="After the answer, where a layer (default: the last) looked when it wrote the "
            "last token: its attention over the prompt (images: a heatmap) and the answer, the "
            "mean over heads or one HEAD (_mlx.attention; %%mlx attention STEP for another "
            "token); its cost is said under it. Local models.",
        ),
    ]
    return _applied(flags, magic)


def vision_arguments(magic: F) -> F:
    """The flags only ``%%mlx_vision`` takes: images, video and their sizes."""
    flags = [
        argument(
            "-i",
            "--image",
            action="append",
            default=[],
            metavar="SRC",
            help="An image to send; repeat for several. A file (globs allowed), an "
            "http(s) URL, a data: URI, or a variable holding a PIL image, a numpy array, "
            "bytes, a matplotlib figure or an IPython Image; also _, _N and Out[N].",
        ),
        argument(
            "-v",
            "--video",
            metavar="SRC",
            help="A video to send (models that take video: Qwen2-VL and its successors): a "
            "file (.mp4...), or a variable holding frames (a list of PIL images or arrays, or "
            "a T×H×W×3 array). The preview is a strip of the frames sent, with their times.",
        ),
        argument(
            "--fps",
            type=float,
            help="Frames per second to take from the video (default 2; for frames in a "
            "variable: the rate they were taken at).",
        ),
        argument(
            "--max-frames",
            type=int,
            metavar="N",
            help="Most frames to send from the video (default 16), spread evenly over it.",
        ),
        argument(
            "--region",
            metavar="X1,Y1,X2,Y2|@N",
            help="Send only this part of each image (pixels: left,top,right,bottom); the "
            "preview shows it inside the whole image. @N: the box drawn as mark N on a preview "
            "(without -i, of the image it was drawn on). A box from _mlx.boxes is also an "
            "image: -i box_crop with crop = _mlx.boxes[0].crop().",
        ),
        argument(
            "--marks",
            nargs="?",
            const="@drawn",
            metavar="@boxes",
            help="Send the images with the marks drawn on the latest preview numbered on them "
            "(Set-of-Marks), so the prompt can say 'mark 2' (without -i: the images they were "
            "drawn on); @boxes: the boxes of the latest answer (_mlx.boxes) as the marks. "
            "Numbers the answer names ('mark 3', '[3]') are in _mlx.refs and stand out on "
            "the preview.",
        ),
        argument(
            "--segment",
            nargs="?",
            const="",
            metavar="TEXT|@boxes",
            help="Segment the images with SAM 3 or SAM 3.1 instead of asking a model (-m or "
            "the default_segment_model setting): a mask for every instance of what the cell's "
            "text (or TEXT) names, commas separating prompts, drawn on the previews and kept "
            "in _mlx.masks; @boxes outlines the boxes of the latest answer (_mlx.boxes); "
            "with -v, what the first frame shows is tracked through the frames (SAM 3's "
            "video predictor or SAM 3.1's multiplex tracker; a track id).",
        ),
        argument(
            "--max-pixels",
            type=int,
            metavar="N",
            help="Shrink images larger than N pixels (width × height) before sending them "
            "(default: the max_image_pixels setting, 1 megapixel).",
        ),
    ]
    return _applied(flags, magic)


def lens_argument(magic: F) -> F:
    """``--lens``, a flag of ``%%mlx`` (local text models)."""
    flags = [
        argument(
            "--lens",
            nargs="?",
            const=DEFAULT_TOKENS,
            type=int,
            metavar="N",
            help="After the answer, the logit lens: what each layer would have predicted at "
            "each of its first N tokens (default 64), a layers × tokens grid (_mlx.lens); "
            "its cost is said under it. Local text models.",
        ),
    ]
    return _applied(flags, magic)


def kv_cache_arguments(magic: F) -> F:
    """``--max-kv-size`` and ``--kv-bits``, flags of ``%%mlx``: mlx-lm's rotating
    and quantized KV caches, for prompts whose cache would not fit."""
    flags = [
        argument(
            "--max-kv-size",
            type=int,
            metavar="N",
            help="Keep only the newest N tokens (and the first 4) in the KV cache (mlx-lm's "
            "rotating cache): a long prompt fits in bounded memory, the model forgets what "
            "is older; such a prompt is neither taken from nor kept in the prefix cache.",
        ),
        argument(
            "--kv-bits",
            type=int,
            choices=[4, 8],
            help="Quantize the KV cache to 4 or 8 bits from the first token (mlx-lm's "
            "quantized cache): about a half (8) or a quarter (4) of its memory.",
        ),
    ]
    return _applied(flags, magic)


def tools_arguments(magic: F) -> F:
    """``--tools`` and its flags, of ``%%mlx`` (local text models and servers)."""
    flags = [
        argument(
            "--tools",
            metavar="NAMES",
            help="Offer notebook functions to the model: comma-separated names of functions, "
            "of lists of them, of modules or of MCP servers (%%mlx tools add). Schemas come from the signatures, type hints and "
            "docstrings; the model's calls run in the kernel (each asks first: Run / Skip), "
            "their results go back to it, until it answers (_mlx.steps: every call). After "
            "%%mlx connect, the server's model gets them as OpenAI tools.",
        ),
        argument(
            "--max-steps",
            type=int,
            metavar="N",
            help=f"With --tools: most rounds of calls (default {defaults.MAX_TOOL_STEPS}).",
        ),
        argument(
            "--auto",
            action="store_true",
            help="With --tools: run the model's calls without asking (needed in a terminal).",
        ),
        argument(
            "--show-prompt",
            action="store_true",
            help="With --tools: show each prompt as the chat template rendered it, tools and all "
            "(local models).",
        ),
    ]
    return _applied(flags, magic)


def _applied(flags: list[argument], magic: F) -> F:
    # magic_arguments applies decorators bottom-up; keep the listed order in --help.
    for flag in reversed(flags):
        magic = flag(magic)
    return magic


def parse_flags(
    magic: Callable, line: str, usage: str, *, intermixed: bool = False, short_help: bool = True
) -> Any:
    """The parsed flags of ``line`` for ``magic``, split as a shell would.

    IPython's ``parse_argstring`` keeps quote characters (``-s "Hi."`` would
    send the quotes to the model, and a path with spaces could not be given);
    here quotes group and are removed, as in a terminal. ``usage`` is the
    magic's name as the user types it (``%%mlx``), for the help hint.
    ``intermixed``: options may come between positional words (``%mlx lens -k 3 NAME``).
    ``short_help``: ``-h`` asks for the manual (else it is an option: ``%mlx attention -h 3``).

    Raises:
        UserError: an unclosed quote, ``--help`` (the manual is ``%%mlx?``),
            or a flag the magic does not take.
    """
    argv = split_line(line)
    if (short_help and "-h" in argv) or "--help" in argv:
        raise UserError(f"{usage}? shows the manual: every flag, the settings, examples")
    if usage == "%%mlx" and any(arg.split("=")[0] in ("--marks", "--region") for arg in argv):
        raise UserError(
            "--marks and --region point into images: they are flags of %%mlx_vision -i SRC"
        )
    parser = magic.parser  # type: ignore[attr-defined]
    return parser.parse_intermixed_args(argv) if intermixed else parser.parse_args(argv)


def split_line(line: str) -> list[str]:
    """``line`` split into words as a shell would: quotes group and are removed.

    Raises:
        UserError: an unclosed quote.
    """
    try:
        # Windows paths keep their backslashes: split without escapes there.
        argv = arg_split(line, posix=os.name != "nt", strict=True)
    except ValueError as error:
        raise UserError(f"The flags do not parse ({error}): close the quote") from error
    if os.name == "nt":
        argv = [_unquoted(arg) for arg in argv]
    return list(argv)


def _unquoted(arg: str) -> str:
    if len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "\"'":
        return arg[1:-1]
    return arg
