"""The ``%%mlx`` cell magic and the ``%mlx`` line magic.

Engine first, IPython glue last: this module only parses, validates, and
hands requests to the runtime; generation lives in the runtime, display in
the views.
"""

from __future__ import annotations

import os

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import (
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    Int,
    List,
    TraitError,
    Unicode,
    default,
    observe,
    validate,
)

from mlx_magic.display.streaming import GenerationFailed, stream_job
from mlx_magic.display.views import view_for
from mlx_magic.errors import GenerationInterrupted, ModelLoadError
from mlx_magic.magics.background import run_in_background
from mlx_magic.magics.side_by_side import run_side_by_side, variants_of
from mlx_magic.models.embedded import EMBEDDED_MODEL_NAME
from mlx_magic.runtime.values import GenerationRequest, PrefixCacheSettings, SamplingParams
from mlx_magic.units import gib_to_bytes


def generation_arguments(magic):
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
            default="text",
            help="markdown: render the answer; code: put its first code "
            "block into the next cell; json: parse it into --out (and _mlx.data).",
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
    ]
    # magic_arguments applies decorators bottom-up; keep the listed order in --help.
    for flag in reversed(flags):
        magic = flag(magic)
    return magic


# What each numeric setting accepts, and how to say so when it does not.
_SETTING_RULES = {
    "max_tokens": (lambda v: v > 0, "a positive integer"),
    "max_images": (lambda v: v > 0, "a positive integer"),
    "prefix_cache_entries": (lambda v: v >= 1, "1 or more"),
    "prefix_cache_gb": (lambda v: v > 0, "more than 0"),
    "temperature": (lambda v: v >= 0, "0 or more"),
    "top_p": (lambda v: 0.0 <= v <= 1.0, "between 0 and 1"),
    "memory_budget_gb": (lambda v: v > 0, "more than 0"),
    "stream_interval_ms": (lambda v: 10 <= v <= 10_000, "between 10 and 10000"),
}


@magics_class
class MLXMagics(Magics):
    """Stream local MLX models in IPython. Settings: ``%config MLXMagics``."""

    default_model = Unicode(
        None,
        allow_none=True,
        help=f"Model used when %%mlx has no --model. None means the embedded "
        f"'{EMBEDDED_MODEL_NAME}' model.",
    ).tag(config=True)
    default_vision_model = Unicode(
        None, allow_none=True, help="Model used by %%mlx_vision when it has no --model."
    ).tag(config=True)
    max_images = Int(
        8, help="Most images one %%mlx_vision cell may send (a model may allow fewer)."
    ).tag(config=True)
    max_tokens = Int(256, help="Most tokens to generate when a cell has no --max-tokens.").tag(
        config=True
    )
    temperature = Float(0.0, help="Sampling temperature; 0 is greedy decoding.").tag(config=True)
    top_p = Float(
        1.0,
        help="Nucleus sampling: keep the smallest token set with this much "
        "probability (1 keeps all).",
    ).tag(config=True)
    system_prompt = Unicode(
        None, allow_none=True, help="System prompt for chat models; None keeps the template's own."
    ).tag(config=True)
    aliases = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="Short names for models, e.g. {'tiny': '~/models/SmolLM2'}.",
    ).tag(config=True)
    memory_budget_gb = Float(
        8.0,
        help="Warm models are evicted, least recently used first, above this many GiB (1024³ bytes).",
    ).tag(config=True)
    stream_interval_ms = Int(
        200, help="Longest time streamed text is held back before it is shown (ms)."
    ).tag(config=True)
    prefix_cache = Bool(
        True,
        help="Reuse the KV state of earlier prompts that share a beginning with a new one "
        "(same system prompt, same pasted text, a conversation), so only the new part is read.",
    ).tag(config=True)
    prefix_cache_entries = Int(
        16, help="Most prompt states kept per model by the prefix cache."
    ).tag(config=True)
    prefix_cache_gb = Float(
        1.0, help="Most memory (GiB) the prefix cache of one model may hold."
    ).tag(config=True)
    runtime = CaselessStrEnum(
        ["thread", "process", "remote"],
        "thread",
        help="Where models run: 'thread' (in the kernel), 'process' (a worker process: a "
        "crash cannot take the kernel down, and unloading returns memory to the system), or "
        "'remote' (OpenAI-compatible servers, see endpoints).",
    ).tag(config=True)
    endpoints = List(
        Unicode(),
        [],
        help="OpenAI-compatible server URLs for runtime 'remote' (mlx_lm.server, "
        "mlx_vlm.server, vLLM, llama.cpp); the first healthy one answers.",
    ).tag(config=True)
    api_key_env = Unicode(
        None,
        allow_none=True,
        help="The NAME of the environment variable that holds the servers' API key (the key "
        "itself never goes in a notebook).",
    ).tag(config=True)
    short_errors = Bool(
        True,
        help="Show errors raised while loading or running a model as one line. "
        "False shows the full traceback.",
    ).tag(config=True)

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        from mlx_magic.images import DecodedImageCache
        from mlx_magic.magics.background import BackgroundJobs
        from mlx_magic.magics.conversations import Conversations

        self._backend = None
        self.jobs = BackgroundJobs()
        #: Chat panels opened with %mlx panel, newest last.
        self.panels = []
        #: The local runtime to return to after %mlx disconnect.
        self.local_runtime = "thread"
        self.image_cache = DecodedImageCache()
        self.conversations = Conversations()
        #: One row per finished generation of this session (``%mlx stats``).
        self.session_rows: list[dict] = []
        self._cell_id = None
        if shell is not None:
            shell.events.register("pre_run_cell", self._remember_cell_id)

    def _remember_cell_id(self, info) -> None:
        # Frontends send the id of the cell being run; a conversation uses it
        # to recognise a turn that is run again.
        self._cell_id = getattr(info, "cell_id", None)

    @default("default_model")
    def _default_model_from_environment(self):
        return os.environ.get("MLX_MAGIC_DEFAULT_MODEL") or None

    @default("default_vision_model")
    def _default_vision_model_from_environment(self):
        # Lets CI run the vision notebook against a tiny test model.
        return os.environ.get("MLX_MAGIC_DEFAULT_VISION_MODEL") or None

    # ---- settings ---------------------------------------------------------

    @validate(*_SETTING_RULES)
    def _check_setting(self, proposal):
        accepts, expected = _SETTING_RULES[proposal.trait.name]
        if not accepts(proposal.value):
            raise TraitError(f"{proposal.trait.name} must be {expected}, not {proposal.value}")
        return proposal.value

    @validate("api_key_env")
    def _check_api_key_env(self, proposal):
        import re

        if proposal.value is not None and not re.fullmatch(r"[A-Za-z_]\w*", proposal.value):
            # Never echo the value: it may be a key pasted by mistake.
            raise TraitError(
                "api_key_env must be the NAME of an environment variable "
                "(letters, digits, _), not its value"
            )
        return proposal.value

    @observe("memory_budget_gb")
    def _budget_changed(self, change):
        if self._backend is not None:
            self._backend.set_memory_budget(gib_to_bytes(change["new"]))

    # ---- runtime ------------------------------------------------------------

    @property
    def backend(self):
        """The runtime that runs the models (as the ``runtime`` setting says),
        created on first use; a thread or worker starts with the first request."""
        if self._backend is None:
            budget = gib_to_bytes(self.memory_budget_gb)
            if self.runtime == "process":
                from mlx_magic.runtime.process import ProcessRuntime

                self._backend = ProcessRuntime(budget)
            elif self.runtime == "remote":
                from mlx_magic.runtime.remote import RemoteRuntime

                if not self.endpoints:
                    raise UsageError("No server to talk to: %mlx connect URL [URL ...]")
                self._backend = RemoteRuntime(list(self.endpoints), api_key_env=self.api_key_env)
            else:
                from mlx_magic.runtime.thread import ThreadRuntime

                self._backend = ThreadRuntime(budget)
        return self._backend

    @observe("runtime", "endpoints", "api_key_env")
    def _backend_changed(self, change):
        # The next request starts the runtime the settings now describe.
        if self._backend is not None and change["old"] != change["new"]:
            self._backend.stop()
            self._backend = None

    @property
    def current_cell_id(self):
        """The id of the cell being run, as the frontend sent it (or ``None``)."""
        return self._cell_id

    @property
    def backend_started(self) -> bool:
        return self._backend is not None

    def close(self) -> None:
        """Stop the runtime and free every warm model."""
        if self.shell is not None:
            try:
                self.shell.events.unregister("pre_run_cell", self._remember_cell_id)
            except ValueError:
                pass
        if self._backend is not None:
            self._backend.stop()
            self._backend = None

    def resolve(self, name, default=None):
        """The model spec for ``name`` (or the default), as the runtime needs it."""
        from mlx_magic.models.resolve import resolve_model, served_model_spec

        if self.runtime == "remote":
            return served_model_spec(name or default or self.default_model, self.aliases)

        try:
            return resolve_model(name, default=default or self.default_model, aliases=self.aliases)
        except ModelLoadError as error:
            raise UsageError(str(error)) from error

    # ---- %%mlx --------------------------------------------------------------

    @magic_arguments("%mlx")  # shown as %%mlx in the usage line
    @generation_arguments
    @cell_magic("mlx")
    def mlx_cell(self, line, cell):
        """Answer the cell's text with a local MLX model, streaming the tokens.

        The answer streams into the cell's output, followed by a footer with
        the token count, speeds, time to first token, peak memory, the model
        and whether it was already loaded (warm). The result is stored in
        ``_mlx`` (and in the ``--out`` variable): ``_mlx.text``,
        ``_mlx.stats``, ``_mlx.tokens``, ``_mlx.finish_reason``.

        Models stay loaded between cells, so only the first cell with a model
        pays for loading it. Interrupting the kernel (the stop button) stops
        the generation within one token and keeps what was generated.

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
        memory_budget_gb, stream_interval_ms, short_errors. Flags override
        settings.
        """
        args = parse_argstring(self.mlx_cell, line)
        variants = variants_of(args)
        if len(variants) > 1:
            return run_side_by_side(self, variants, cell, lambda name: self.resolve(name))
        args = variants[0]
        request, out_name, turn = self.build_request(args, cell, lambda: self.resolve(args.model))
        if args.background:
            return run_in_background(self, request, out_name, turn, answer_format=args.format)
        self._run(request, out_name, turn, answer_format=args.format)

    # ---- %%mlx_vision ---------------------------------------------------------

    @magic_arguments("%mlx_vision")  # shown as %%mlx_vision in the usage line
    @generation_arguments
    @argument(
        "-i",
        "--image",
        action="append",
        default=[],
        metavar="SRC",
        help="An image to send; repeat for several. A file (globs allowed), an "
        "http(s) URL, a data: URI, or a variable holding a PIL image, a numpy array, "
        "bytes, a matplotlib figure or an IPython Image; also _, _N and Out[N].",
    )
    @cell_magic("mlx_vision")
    def mlx_vision_cell(self, line, cell):
        """Ask a vision-language model about images, streaming the answer.

        Thumbnails of the images appear first, then the answer streams below
        them, then the stats footer. Everything ``%%mlx`` accepts works here
        too. The model comes from ``--model``, else the
        ``default_vision_model`` setting (or the environment variable
        ``MLX_MAGIC_DEFAULT_VISION_MODEL``).

        Decoded images are cached by file and content, so asking again about
        the same image does not decode it again.

        Examples::

            In [1]: %config MLXMagics.default_vision_model = "mlx-community/Qwen2-VL-2B-Instruct-4bit"

            In [2]: %%mlx_vision -i photo.jpg
               ...: What is in this picture?

            In [3]: %%mlx_vision -i fig -i "shots/*.png"
               ...: What is different between these pictures?

            In [4]: import numpy as np; noise = np.random.rand(64, 64, 3)

            In [5]: %%mlx_vision -i noise -n 40
               ...: Describe this image.

        A conversation (``--chat NAME``) keeps its images: a follow-up may
        leave out ``-i``, and only its new text is read (the images, earlier
        questions and answers come from the model's KV cache)::

            In [6]: %%mlx_vision --chat look -i photo.jpg
               ...: What is in this picture?

            In [7]: %%mlx_vision --chat look
               ...: And what colour is the car?
        """
        args = parse_argstring(self.mlx_vision_cell, line)
        variants = variants_of(args)
        args = variants[0]
        if not args.image and args.chat is None:
            raise UsageError(
                "%%mlx_vision needs an image: add -i SRC (a file, URL or variable); "
                "%%mlx answers text alone"
            )
        if args.model is None and self.default_vision_model is None and self.runtime != "remote":
            raise UsageError(
                "No vision model: pass --model, or set %config "
                "MLXMagics.default_vision_model = '<folder or Hub id>'"
            )
        images = self._load_images(args.image)
        if len(variants) > 1:
            return run_side_by_side(self, variants, cell, self.resolve_vision, images)
        request, out_name, turn = self.build_request(
            args, cell, lambda: self.resolve_vision(args.model), images=images
        )
        if not request.images:
            raise UsageError(
                f"%%mlx_vision needs an image: conversation '{args.chat}' has none yet; "
                "add -i SRC (later turns may leave it out)"
            )
        if args.background:
            return run_in_background(
                self, request, out_name, turn, images=images, answer_format=args.format
            )
        self._run(request, out_name, turn, images=images, answer_format=args.format)

    def resolve_vision(self, name):
        if self.runtime == "remote":
            from mlx_magic.models.resolve import served_model_spec

            return served_model_spec(name or self.default_vision_model, self.aliases, "vision")
        spec = self.resolve(name, default=self.default_vision_model)
        if spec.kind != "vision":
            raise UsageError(
                f"'{spec.name}' is a text model and cannot see images: %%mlx_vision needs a "
                "vision-language model (its config.json has a vision_config)"
            )
        return spec

    def _load_images(self, sources):
        from mlx_magic.images import ImageSourceError, load_images

        try:
            images = load_images(sources, self.shell.user_ns, cache=self.image_cache)
        except ImageSourceError as error:
            raise UsageError(str(error)) from error
        if len(images) > self.max_images:
            raise UsageError(
                f"{len(images)} images is more than the {self.max_images} allowed "
                "(MLXMagics.max_images): send fewer"
            )
        return images

    # ---- shared by the cell magics ------------------------------------------

    def build_request(self, args, cell, resolve_model, images=()):
        """Validate the cell's text and flags, then resolve the model (slowest, last).

        ``images`` are the cell's own (:class:`~mlx_magic.images.sources.LoadedImage`);
        in a conversation the images of the earlier turns are sent too, each
        with its turn. Returns the request, the ``--out`` name, and for a
        conversation a :class:`~mlx_magic.magics.conversations.PendingTurn` (else
        ``None``).
        """
        from mlx_magic.magics.conversations import PendingTurn
        from mlx_magic.magics.templating import TemplateError, fill_template, last_error_text

        prompt = (cell or "").strip("\n")
        if not prompt.strip():
            raise UsageError("The cell is empty: write the prompt on the lines below the magic")
        if not args.no_interpolate:
            try:
                prompt = fill_template(prompt, self.shell.user_ns)
            except TemplateError as error:
                raise UsageError(str(error)) from error
        if args.error:
            error_text = last_error_text(self.shell)
            if error_text is None:
                raise UsageError("--error: no error has happened in this session yet")
            prompt = f"{prompt}\n\nThe last error:\n```\n{error_text}\n```"
        sampling = self._sampling(args)
        out_name = self._check_out_name(args.out)
        if args.probs is not None and not 1 <= args.probs <= 20:
            raise UsageError(f"--probs takes 1 to 20 alternatives, not {args.probs}")
        spec = resolve_model()
        system = args.system if args.system is not None else self.system_prompt
        history = history_images = earlier_images = earlier_keys = ()
        turn = conversation_name = None
        if args.chat is not None:
            try:
                conversation = self.conversations.start_or_continue(
                    args.chat, spec.key, spec.name, system
                )
            except ValueError as error:
                raise UsageError(str(error)) from error
            turns, index = conversation.history_before(self._cell_id, prompt)
            history = tuple((turn.user, turn.assistant) for turn in turns)
            if any(turn.images for turn in turns):
                history_images = tuple(len(turn.images) for turn in turns)
                earlier_images = tuple(image for turn in turns for image in turn.images)
                earlier_keys = tuple(key for turn in turns for key in turn.image_keys)
            system = conversation.system
            conversation_name = conversation.name
            turn = PendingTurn(conversation, index, tuple(image.caption for image in images))
        request = GenerationRequest(
            model=spec,
            prompt=prompt,
            history=history,
            history_images=history_images,
            conversation=conversation_name,
            images=earlier_images + tuple(loaded.image for loaded in images),
            image_keys=earlier_keys + tuple(loaded.cache_key for loaded in images),
            top_logprobs=args.probs or 0,
            system=system,
            raw=args.raw,
            sampling=sampling,
            prefix_cache=PrefixCacheSettings(
                enabled=self.prefix_cache,
                max_entries=self.prefix_cache_entries,
                max_bytes=gib_to_bytes(self.prefix_cache_gb),
            ),
        )
        return request, out_name, turn

    def _run(
        self, request: GenerationRequest, out_name, turn=None, images=(), answer_format="text"
    ) -> None:
        view = view_for(self.shell)
        view.markdown = answer_format == "markdown"
        if images:
            # Before the job: previews must not wait for the model.
            view.show_images(images)
        job = self.backend.generate(request)
        try:
            outcome = stream_job(job, view, interval_s=self.stream_interval_ms / 1000)
        except GenerationFailed as failed:
            failure = failed.failure
            if failure.user_error:
                raise UsageError(failure.message) from failure.error
            if self.short_errors:
                raise UsageError(
                    f"Generation failed: {failure.message} "
                    "(%config MLXMagics.short_errors = False shows the traceback)"
                ) from failure.error
            raise failure.error  # noqa: B904  (a bug: shown with its own traceback and cause)
        result = outcome.result
        self.shell.user_ns["_mlx"] = result
        self.record_finished(request, result, turn, self._cell_id)
        if request.top_logprobs and result.tokens:
            from mlx_magic.display.probability_view import probability_bundle

            view.show_bundle(probability_bundle(result, request.sampling))
        if outcome.interrupted:
            if out_name:
                self.shell.user_ns[out_name] = result
            raise GenerationInterrupted(
                f"generation stopped after {result.stats.generation_tokens} tokens; "
                "the partial answer is in _mlx"
            )
        self.apply_format(result, answer_format, out_name)

    def record_finished(self, request, result, turn, cell_id) -> None:
        """Bookkeeping after any generation: session stats, the conversation."""
        self.record_stats(result)
        if turn is not None and result.finish_reason not in ("cancelled", "cut"):
            from mlx_magic.magics.conversations import Turn

            own_images = request.images_by_turn()[1]
            own_keys = request.image_keys[len(request.image_keys) - len(own_images) :]
            turn.conversation.record(
                turn.index,
                Turn(
                    request.prompt,
                    result.text,
                    cell_id,
                    image_names=turn.image_names,
                    images=own_images,
                    image_keys=own_keys,
                ),
                dropped_oldest=result.stats.dropped_turns,
            )

    def apply_format(self, result, answer_format, out_name, set_next_input=True) -> None:
        from mlx_magic.magics.answer_formats import first_code_block, parse_json_answer

        if answer_format == "code" and set_next_input:
            self.shell.set_next_input(first_code_block(result.text), replace=False)
        if answer_format == "json":
            try:
                result.data = parse_json_answer(result.text)
            except ValueError as error:
                if out_name:
                    self.shell.user_ns[out_name] = result
                raise UsageError(f"--format json: {error}; the raw text is in _mlx.text") from error
            if out_name:
                self.shell.user_ns[out_name] = result.data
            return
        if out_name:
            self.shell.user_ns[out_name] = result

    def record_stats(self, result) -> None:
        stats = result.stats
        self.session_rows.append(
            {
                "model": result.model,
                "tokens": stats.generation_tokens,
                "tok/s": round(stats.generation_tps, 1),
                "ttft_s": None if stats.ttft_s is None else round(stats.ttft_s, 3),
                "warm": stats.warm,
                "prompt": stats.prompt_tokens,
                "cached": stats.cached_prompt_tokens,
                "finish": result.finish_reason,
            }
        )

    def _sampling(self, args) -> SamplingParams:
        max_tokens = self.max_tokens if args.max_tokens is None else args.max_tokens
        temperature = self.temperature if args.temp is None else args.temp
        top_p = self.top_p if args.top_p is None else args.top_p
        checks = [
            (max_tokens > 0, f"--max-tokens must be a positive integer, not {max_tokens}"),
            (temperature >= 0, f"--temp must be 0 or more, not {temperature}"),
            (0 <= top_p <= 1, f"--top-p must be between 0 and 1, not {top_p}"),
            (args.top_k is None or args.top_k >= 0, f"--top-k must be 0 or more, not {args.top_k}"),
            (
                args.min_p is None or 0 <= args.min_p <= 1,
                f"--min-p must be between 0 and 1, not {args.min_p}",
            ),
            (
                args.repetition_penalty is None or args.repetition_penalty > 0,
                f"--repetition-penalty must be more than 0, not {args.repetition_penalty}",
            ),
            (
                args.seed is None or 0 <= args.seed < 2**63,
                f"--seed must be a non-negative integer, not {args.seed}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=args.top_k or 0,
            min_p=args.min_p or 0.0,
            repetition_penalty=args.repetition_penalty,
            seed=args.seed,
        )

    @staticmethod
    def _check_out_name(name):
        if name is not None and not name.isidentifier():
            raise UsageError(f"--out needs a Python variable name, not {name!r}")
        return name

    # ---- %mlx -----------------------------------------------------------------

    @magic_arguments("mlx")
    @argument(
        "command",
        choices=[
            "load",
            "unload",
            "models",
            "status",
            "cache",
            "chat",
            "stats",
            "jobs",
            "cancel",
            "wait",
            "panel",
            "runtime",
            "restart",
            "connect",
            "disconnect",
            "bench",
        ],
        help="What to do.",
    )
    @argument(
        "names",
        nargs="*",
        help="Models for load/unload ('all' unloads every model); "
        "for chat: a conversation name, or reset/save/load with their arguments.",
    )
    @line_magic("mlx")
    def mlx_line(self, line):
        """Manage the models and the runtime behind ``%%mlx``.

        Commands::

            %mlx load MODEL          load a model now, so the first cell is fast
            %mlx unload MODEL        free one warm model
            %mlx unload all          free every warm model (also: no name)
            %mlx models              list warm models with their kind and memory
            %mlx status              runtime thread, GPU lock, queue, memory, caches
            %mlx cache clear         empty the prompt prefix and image caches
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
            %mlx bench [quick] [SCENARIO ...]   the benchmark against raw mlx-lm/mlx-vlm

        MODEL is anything ``%%mlx --model`` takes.
        """
        from mlx_magic.magics import commands

        args = parse_argstring(self.mlx_line, line)
        return getattr(commands, f"command_{args.command}")(self, args.names)
