"""``%%mlx``, ``%%mlx_vision`` and ``%mlx``: the magics IPython registers.

This module only parses the flags (``magic_arguments``) and dispatches: a
cell's flags go to :mod:`.cells`, typed by :mod:`.options`, turned into
requests by :mod:`.prepare` and run by :mod:`.run`; the session (:mod:`.session`) keeps the runtime, jobs
and conversations; :mod:`.commands` holds the ``%mlx`` subcommands. The
settings (traits) are in :mod:`.settings`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from IPython.core.magic import cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import observe

from mlx_magic.errors import UserError
from mlx_magic.magics.arguments import (
    generation_arguments,
    kv_cache_arguments,
    lens_argument,
    parse_flags,
    split_line,
    tools_arguments,
    vision_arguments,
)
from mlx_magic.magics.attention import command_attention
from mlx_magic.magics.cache_commands import command_cache
from mlx_magic.magics.cells import run_text_cell, run_vision_cell
from mlx_magic.magics.commands import COMMANDS
from mlx_magic.magics.downloads import command_local_models, command_pull, command_rm
from mlx_magic.magics.edge import user_errors_as_usage
from mlx_magic.magics.embedding import OWN_FLAGS
from mlx_magic.magics.lens import command_lens
from mlx_magic.magics.mcp_servers import command_tools_line
from mlx_magic.magics.session import Session
from mlx_magic.magics.settings import MLXSettings, forget_refused_settings

if TYPE_CHECKING:
    from IPython.core.interactiveshell import ExecutionInfo, ExecutionResult, InteractiveShell
    from traitlets.utils.bunch import Bunch

    from mlx_magic.images import DecodedImageCache
    from mlx_magic.runtime.interface import Runtime
    from mlx_magic.vocabulary.values import ModelSpec


@magics_class
class MLXMagics(MLXSettings):
    """Stream local MLX models in IPython. Settings: ``%config MLXMagics``."""

    def __init__(self, shell: Optional[InteractiveShell] = None, **kwargs: Any) -> None:
        # Settings given before loading (an IPython profile, %config then
        # %load_ext) are applied inside super().__init__, and their observers
        # reach the session: it must exist first. It reads the settings only
        # when the runtime starts, so it may be built before they are applied.
        self.session = Session(self, shell)
        super().__init__(shell=shell, **kwargs)
        if shell is not None:
            shell.events.register("pre_run_cell", self._remember_cell_id)
            shell.events.register("post_run_cell", self._forget_refused_settings)

    def _remember_cell_id(self, info: ExecutionInfo) -> None:
        # Frontends send the id of the cell being run; a conversation uses it
        # to recognise a turn that is run again.
        self.session.cell_id = getattr(info, "cell_id", None)

    def _forget_refused_settings(self, result: Optional[ExecutionResult] = None) -> None:
        # A refused %config value would stay in the shell's config and break
        # the next %load_ext; the refusal itself was already shown.
        forget_refused_settings(self.shell, type(self))

    @observe(
        "memory_budget_gb",
        "runtime",
        "endpoints",
        "api_key_env",
        "connect_timeout_s",
        "first_token_timeout_s",
    )
    def _runtime_setting_changed(self, change: Bunch) -> None:
        if change["old"] != change["new"]:
            self.session.setting_changed(change["name"])

    @property
    def backend(self) -> Runtime:
        """The session's runtime (created on first use)."""
        return self.session.runtime

    @property
    def image_cache(self) -> DecodedImageCache:
        return self.session.image_cache

    def resolve(self, name: Optional[str], default: Optional[str] = None) -> ModelSpec:
        """The model spec for ``name`` (or the default), as the runtime needs it."""
        return self.session.resolve(name, default)

    def close(self) -> None:
        """Stop the runtime and free every warm model."""
        if self.shell is not None:
            for event, callback in (
                ("pre_run_cell", self._remember_cell_id),
                ("post_run_cell", self._forget_refused_settings),
            ):
                try:
                    self.shell.events.unregister(event, callback)
                except ValueError:
                    pass
        self.session.close()

    # ---- %%mlx --------------------------------------------------------------

    @magic_arguments("%mlx")  # shown as %%mlx in the usage line
    @generation_arguments
    @lens_argument
    @kv_cache_arguments
    @tools_arguments
    @cell_magic("mlx")  # type: ignore[arg-type]  # IPython: returns _F | Callable
    @user_errors_as_usage
    def mlx_cell(self, line: str, cell: str) -> None:
        """Answer the cell's text with a local MLX model, streaming the tokens.

        The answer streams into the cell's output, followed by a footer with
        the token count, speeds, time to first token, peak memory, the model
        and whether it was already loaded (warm). The result is stored in
        ``_mlx`` (and in the ``--out`` variable): ``_mlx.text``,
        ``_mlx.stats``, ``_mlx.tokens``, ``_mlx.finish_reason``.

        Models stay loaded between cells, so only the first cell with a model
        pays for loading it. A Hub model's first use downloads it: its files
        and sizes, then a progress bar; an interrupt stops it and the next run
        resumes (``%mlx pull`` downloads without loading). Interrupting the kernel (the stop button) stops
        the generation within one token and keeps what was generated.

        In a notebook the answer is rendered as Markdown while it streams
        (headings, lists, tables, code with highlighting, math), one output
        per block; the saved notebook keeps each as ``text/markdown`` with a
        ``text/plain`` copy. ``-f text`` streams plain text instead
        (``%config MLXMagics.default_format = 'text'`` for every cell); a
        terminal always prints plain text.

        Reasoning models (Qwen3, DeepSeek-R1 distills, SmolLM3) think between
        ``<think>`` and ``</think>`` first: the thinking streams into a
        folding "Thinking" block with its token count and time, and an
        "Answer now" button that ends it; the answer follows below.
        ``_mlx.thinking`` and ``_mlx.text`` hold them apart and the footer
        counts their tokens apart. ``--think`` / ``--no-think`` set the chat
        template's ``enable_thinking``; ``--think-budget N`` ends the
        thinking after N tokens by writing ``</think>`` for the model::

            In [5]: %%mlx -m Qwen/Qwen3-0.6B --think-budget 256
               ...: How many r are in "strawberry"?

        Over a dataset, ``--map ITEMS`` runs the cell once per item of a list,
        dict, pandas Series or DataFrame, or generator, naming the item
        ``{item}`` and a row's columns ``{row.column}``; the items decode
        together (mlx-lm's continuous batching, ``--batch-size N``) and the
        answers come back as a table in ``_mlx.table``. An interrupt keeps the
        finished rows; ``--resume`` runs the rest. With several ``-m`` every item
        runs through every model: one table, an answer (and ``--score``) column
        per model, the scores side by side. ``--schema NAME`` (a
        Pydantic class or a JSON-schema dict) constrains the answer so it
        always parses, into ``_mlx.data``. Every answer keeps a provenance
        record (``_mlx.provenance``: model, weights, versions, prompt hash,
        sampler and seed) and ``%mlx replay`` makes it again. ``--lens`` shows,
        under the answer, what each layer would have predicted at each token
        (``%mlx lens``); ``--attention`` where a layer looked when it wrote the
        last token (``%mlx attention STEP``)::

            In [6]: %%mlx --map cities --schema City -o facts
               ...: Describe {item} as JSON.

        A long pasted document is read once: its KV state stays in memory
        (the prefix cache) and, for prompts of ``disk_cache_min_tokens`` new
        tokens, on disk, so after a kernel restart the same cell reads it
        from there (the footer says "from disk"; ``%mlx cache clear --disk``
        empties it). A prompt whose KV cache cannot fit the machine is refused
        before it is read: ``--max-kv-size N`` keeps only the newest N tokens,
        ``--kv-bits 8`` (or 4) quantizes the cache.

        ``--embed`` gives vectors instead of an answer, from an embedding model
        (``-m`` or the ``default_embedding_model`` setting): one per line of the
        cell, or per ``--map`` item; ``_mlx.vectors`` and ``_mlx.table``, then
        ``%mlx nearest`` and ``%mlx plot`` (``%mlx embed`` does it for a list)::

            In [7]: %%mlx --embed --map reviews -o vecs
               ...: {row.text}

        Tools: ``--tools NAMES`` offers notebook functions (names of functions,
        of lists of them, of modules, or of MCP servers started with ``%mlx
        tools add``) to a model made for tool calling; each
        call it writes is shown, waits for **Run** / **Skip** (``--auto``: runs
        at once), runs in the kernel and its result goes back to the model,
        until it answers or ``--max-steps N`` rounds ran (``_mlx.steps``: every
        call, result, time; ``--show-prompt``: the prompt as rendered; ``-b``: in
        the background, shown in this cell; ``-c NAME``: the calls and results
        are turns of the conversation)::

            In [7]: %%mlx -m mlx-community/Qwen2.5-1.5B-Instruct-4bit --tools add,weather
               ...: What is 2 + 3, and is it raining in Paris?

        Examples::

            In [1]: %load_ext mlx_magic

            In [2]: %%mlx
               ...: What is the capital of France?

            In [3]: %%mlx -m ~/models/Qwen2.5-0.5B-Instruct-4bit -n 64 --temp 0.7 --seed 1
               ...: Write a haiku about notebooks.

            In [4]: %%mlx -s "Answer in French." -o answer
               ...: Name three rivers.

        Settings (``%config MLXMagics.<name> = value``): default_model,
        max_tokens, temperature, top_p, system_prompt, aliases,
        memory_budget_gb, stream_interval_ms, short_errors, trust_remote_code, disk_cache_gb,
        max_kv_size, kv_bits, tool_timeout_s. Flags override settings.
        """
        args = parse_flags(self.mlx_cell, line, "%%mlx")
        run_text_cell(self.session, args, cell)

    # ---- %%mlx_vision ---------------------------------------------------------

    @magic_arguments("%mlx_vision")  # shown as %%mlx_vision in the usage line
    @generation_arguments
    @vision_arguments
    @cell_magic("mlx_vision")  # type: ignore[arg-type]  # IPython: returns _F | Callable
    @user_errors_as_usage
    def mlx_vision_cell(self, line: str, cell: str) -> None:
        """Ask a vision-language model about images, streaming the answer.

        Thumbnails of the images appear first, then the answer streams below
        them, then the stats footer. Everything ``%%mlx`` accepts works here
        too. The model comes from ``--model``, else the
        ``default_vision_model`` setting (or the environment variable
        ``MLX_MAGIC_DEFAULT_VISION_MODEL``).

        Decoded images are cached by content (a file saved again under the
        same name is read again), so asking again about the same image does
        not decode it again, and its vision features are kept per image.

        What an image costs: once the model's processor has run, each caption
        says the size it resized the image to and the tokens it became
        (``photo.jpg · 4032×3024 → 1176×868 · 1,302 tokens``), and the
        footer splits the prompt into image and text tokens. Images larger
        than ``--max-pixels`` (the ``max_image_pixels`` setting: 1 megapixel)
        are shrunk first; a prompt that cannot fit the model's context is
        refused, in one line, before any of it is read.

        Grounded answers: coordinates in the answer (Qwen2-VL's box tags,
        Qwen2.5-VL and Qwen3-VL ``bbox_2d`` / ``point_2d`` JSON, PaliGemma's
        ``<loc>`` tokens, Molmo's ``<point>`` tags) are drawn on the previews,
        labelled, each as soon as it is complete, and kept in ``_mlx.boxes``
        and ``_mlx.points`` in pixels of the image as given (and in the saved
        notebook's output metadata). With ``-f json`` each ``bbox_2d`` object
        also gets ``bbox_pixels``. A box is an image to ask about::

            In [1]: %%mlx_vision -i photo.jpg
               ...: Outline every car as JSON with bbox_2d and label.

            In [2]: car = _mlx.boxes[0].crop()

            In [3]: %%mlx_vision -i car
               ...: What make is this car?

            In [4]: %%mlx_vision -i photo.jpg --region 100,80,420,300
               ...: What is written on this sign?

        Marks: in a notebook, drag a box or click a point on a preview; the
        marks are numbered, in ``_mlx.marks``. ``--region @N`` sends box N;
        ``--marks`` sends the images with the marks numbered on them
        (``--marks @boxes``: the latest answer's boxes), and the numbers the
        answer names are in ``_mlx.refs`` and stand out on the preview::

            In [5]: %%mlx_vision --marks
               ...: What is in mark 2?

        Examples::

            In [1]: %config MLXMagics.default_vision_model = "mlx-community/Qwen2-VL-2B-Instruct-4bit"

            In [2]: %%mlx_vision -i photo.jpg
               ...: What is in this picture?

            In [3]: %%mlx_vision -i fig -i "shots/*.png"
               ...: What is different between these pictures?

            In [4]: import numpy as np; noise = np.random.rand(64, 64, 3)

            In [5]: %%mlx_vision -i noise -n 40
               ...: Describe this image.

        Segmentation: ``--segment`` runs SAM 3 or SAM 3.1 (``-m`` or the
        ``default_segment_model`` setting) instead of a chat model: a mask for
        every instance of what the cell's text names (commas separate prompts;
        or ``--segment TEXT``), drawn on each preview as soon as its image is
        done, outlined, labelled with its score, counted in the footer; the text
        ``@boxes`` outlines the boxes of the latest answer (a vision model
        finds, SAM 3 outlines; ``%mlx segment @boxes`` too), and ``@marks``
        the boxes drawn last on a preview (you point, SAM 3 outlines). ``_mlx.masks``
        holds each instance (label, score, box, ``.mask`` a boolean array,
        area, centroid); ``-f json`` prints them with COCO run-length encoded
        masks, as the saved output's metadata keeps them::

            In [8]: %%mlx_vision -i photo.jpg --segment
               ...: car, person

            In [9]: _mlx.masks[0].area, _mlx.masks[0].mask.shape

            In [10]: %mlx segment @boxes

        With ``-v`` SAM 3's video predictor (SAM 3.1's multiplex tracker)
        tracks what the first frame shows, each object with a track id: a strip
        of the frames, each drawn with its masks and ids (``car #2``) once tracked.

        A conversation (``--chat NAME``) keeps its images: a follow-up may
        leave out ``-i``, and only its new text is read (the images, earlier
        questions and answers come from the model's KV cache)::

            In [6]: %%mlx_vision --chat look -i photo.jpg
               ...: What is in this picture?

            In [7]: %%mlx_vision --chat look
               ...: And what colour is the car?
        """
        args = parse_flags(self.mlx_vision_cell, line, "%%mlx_vision")
        run_vision_cell(self.session, args, cell)

    # ---- %mlx -----------------------------------------------------------------

    @magic_arguments("mlx")
    @argument(
        "command",
        choices=list(COMMANDS),
        help="What to do.",
    )
    @argument(
        "names",
        nargs="*",
        help="Models for load/unload ('all' unloads every model); "
        "for chat: a conversation name, or reset/save/load with their arguments.",
    )
    @argument("-k", type=int, metavar="K", help="lens: the top K tokens of each cell (5).")
    @argument("-t", type=int, metavar="N", help="lens: read the first N answer tokens (64).")
    @argument("-l", type=int, metavar="LAYER", help="attention: the layer (-1, the last).")
    @argument("-h", type=int, metavar="HEAD", dest="head", help="attention: one head (the mean).")
    @argument("--local", action="store_true", help="models: the models on disk.")
    @argument("-b", "--background", action="store_true", help="pull: as a background job.")
    @argument("-y", "--yes", action="store_true", help="rm: delete without asking.")
    @argument("--disk", action="store_true", help="cache clear: empty the disk cache too.")
    @line_magic("mlx")  # type: ignore[arg-type]  # IPython: returns _F | Callable
    @user_errors_as_usage
    def mlx_line(self, line: str) -> Any:
        """Manage the models and the runtime behind ``%%mlx``.

        Commands::

            %mlx load MODEL          load a model now, so the first cell is fast
            %mlx unload MODEL        free one warm model
            %mlx unload all          free every warm model (also: no name)
            %mlx models              list warm models with their kind and memory
            %mlx models --local      the models on disk (Hub cache, GGUF): size, kind,
                                     quantization, last used
            %mlx pull [-b] NAME      download a Hub model without loading it (a bar;
                                     -b: a background job; an interrupt stops, pull resumes)
            %mlx rm [-y] NAME        delete a Hub model from the cache (asks; -y: does not)
            %mlx status              runtime thread, GPU lock, queue, memory, caches
            %mlx branch STEP TOKEN [NAME]   go on from token STEP of a --probs answer
                                     with another of its alternatives (#K: the K-th),
                                     side by side with the original (_mlx.branches)
            %mlx memory              MLX memory across the generations, and each warm
                                     model's weights, KV cache and prefix cache (a plot)
            %mlx cache clear [--disk]   empty the prompt prefix and image caches (--disk:
                                     and the prompt states kept on disk across restarts)
            %mlx chat [NAME]         show a conversation (default: 'default') as Markdown
            %mlx chat reset [NAME|all]   forget a conversation (default: 'default')
            %mlx chat save FILE [NAME]   save a conversation as JSON
            %mlx chat load FILE      load a saved conversation (it keeps its name)
            %mlx stats               every generation of this session, with totals
            %mlx jobs                background jobs (-b): id, state, model, tokens, age
            %mlx cancel [ID|all]     stop background jobs (default: all)
            %mlx wait [ID|all]       wait for background jobs (interrupt stops waiting only)
            %mlx panel [vision]      a chat panel: prompt, Send/Stop, model, sliders, images
            %mlx runtime [thread|process]   where models run (no argument: show it)
            %mlx restart             restart the worker process (process runtime)
            %mlx connect URL [URL…]  send generations to OpenAI-compatible servers
            %mlx disconnect          back to local models
            %mlx bench [quick] [SCENARIO ...]   how to run the benchmark (python -m benchmarks)
            %mlx replay [NAME|nb.ipynb:CELL]    make an answer again from its provenance, compare
            %mlx lens [NAME] [-k K] [-t N]      what each layer would have predicted at each
                                     token of an answer (the logit lens; _mlx.lens)
            %mlx attention STEP [NAME] [-l LAYER] [-h HEAD]   where a layer looked when it
                                     wrote token STEP: a strip, heatmaps (_mlx.attention)
            %mlx marks               the marks drawn last on a preview (what --region @N
                                     and --marks use), one line each; returns them
            %mlx segment TEXT|@boxes|@marks  SAM 3/3.1 (default_segment_model) on the images of
                                     the latest answer: masks drawn and counted (_mlx.masks)
            %mlx embed ITEMS [-c COLUMN] [-i SRC] [-m MODEL] [-o NAME] [--batch-size N]
                                     texts (a list, Series, DataFrame column) or images
                                     (-i {item}, a glob) as vectors of an embedding model
                                     (default_embedding_model): _mlx.vectors, _mlx.table
            %mlx nearest QUERY TABLE [-k K]   the K items of an embedded TABLE most like a
                                     text (or an image: -i SRC TABLE), cosine scores
            %mlx plot TABLE [--by COLUMN] [--umap]   the items in 2-D (PCA; UMAP), coloured
                                     by a column, thumbnails (%mlx map: the same)
            %mlx tools               the MCP servers started and the tools they offer
            %mlx tools add COMMAND [ARG…]   start an MCP server over stdio; --tools NAME
                                     offers its tools (NAME: the server's, or a tool's)
            %mlx tools remove NAME|all      stop MCP servers

        MODEL is anything ``%%mlx --model`` takes. A Hub model's first use shows
        its files and a progress bar; an interrupt stops the download and the
        next run resumes it; one the disk cannot hold is refused first.
        """
        first = line.split(None, 1)[:1]
        if first == ["tools"]:  # a server's command keeps its own flags
            return command_tools_line(self, line.strip()[len("tools") :])
        if first and first[0] in OWN_FLAGS:  # embed, nearest, plot: flags of their own
            return COMMANDS[first[0]](self, split_line(line)[1:])
        attention = first == ["attention"]
        args = parse_flags(self.mlx_line, line, "%mlx", intermixed=True, short_help=not attention)
        if args.command == "attention":
            return command_attention(self, args.names, layer=args.l, head=args.head)
        if args.l is not None or args.head is not None:
            raise UserError(f"-l and -h are options of %mlx attention, not of %mlx {args.command}")
        if args.command == "lens":
            return command_lens(self, args.names, top_k=args.k, tokens=args.t)
        if args.k is not None or args.t is not None:
            raise UserError(f"-k and -t are options of %mlx lens, not of %mlx {args.command}")
        for flag, command, given in (
            ("--local", "models", args.local),
            ("-b", "pull", args.background),
            ("-y", "rm", args.yes),
            ("--disk", "cache clear", args.disk),
        ):
            if given and args.command != command.split()[0]:
                raise UserError(
                    f"{flag} is an option of %mlx {command}, not of %mlx {args.command}"
                )
        if args.disk:
            return command_cache(self, args.names, disk=True)
        if args.local:
            return command_local_models(self, args.names)
        if args.command == "pull":
            return command_pull(self, args.names, background=args.background)
        if args.command == "rm":
            return command_rm(self, args.names, yes=args.yes)
        return COMMANDS[args.command](self, args.names)
