"""What one kernel's magics keep between cells: the runtime, background jobs,
conversations, the decoded-image cache, open panels and the stats of every
generation; and what every finished generation updates.

The runtime is created on first use, as the settings describe it (``runtime``,
``memory_budget_gb``, ``endpoints``, ``api_key_env``).
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional, Protocol

from mlx_magic.display.preview_output import LatestMarks
from mlx_magic.display.result import MLXResult
from mlx_magic.errors import UserError
from mlx_magic.images import DecodedImageCache
from mlx_magic.magics.background import BackgroundJobs
from mlx_magic.magics.conversations import Conversations, Turn
from mlx_magic.magics.mcp_servers import MCPServers
from mlx_magic.units import gib_to_bytes
from mlx_magic.vocabulary.embedding import embedder_not_chat
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.masks import segmenter_not_chat
from mlx_magic.vocabulary.values import GenerationRequest, ModelSpec

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from mlx_magic.magics.options import PreparedCell
    from mlx_magic.magics.settings import MLXSettings
    from mlx_magic.runtime.interface import Runtime


#: The longest an unload waits for a background job to end after cancelling it.
STOP_WAIT_S = 30.0

# Conversations are the user's work, not the runtime's state: they outlive the
# extension (%reload_ext re-imports the package, so they are kept here, by shell).
_kept_conversations: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class MagicsHost(Protocol):
    """What the ``%mlx`` commands use of the magics: ``MLXMagics`` is one (named
    here, as the modules of the commands cannot import it: it imports them)."""

    session: Session
    runtime: str
    endpoints: list[str]
    api_key_env: Optional[str]
    connect_timeout_s: float

    @property
    def shell(self) -> Optional[InteractiveShell]: ...


class Session:
    """The state behind the magics of one shell.

    Args:
        settings: the ``MLXMagics`` instance, whose traits are the settings.
        shell: the IPython shell (its namespace receives ``_mlx`` and ``--out``).
    """

    def __init__(self, settings: MLXSettings, shell: Any):
        self.settings = settings
        self.shell = shell
        self.jobs = BackgroundJobs()
        kept = _kept_conversations.pop(shell, None) if shell is not None else None
        self.conversations = kept or Conversations()
        self.image_cache = DecodedImageCache()
        #: MCP servers started with %mlx tools add (--tools offers their tools).
        self.mcp_servers = MCPServers()
        #: Chat panels opened with %mlx panel, newest last.
        self.panels: list = []
        #: The local runtime to return to after %mlx disconnect.
        self.local_runtime = "thread"
        #: One row per finished generation of this session (``%mlx stats``).
        self.rows: list[dict] = []
        #: The id of the cell being run, as the frontend sent it (or ``None``).
        self.cell_id: Optional[str] = None
        #: The marks drawn last on a preview (``--region @N``, ``--marks``).
        self.latest_marks = LatestMarks()
        self._runtime: Optional[Runtime] = None
        self._closed = False

    # ---- the runtime ---------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        """The runtime that runs the models, created on first use; a thread or
        worker starts with the first request."""
        if self._closed:
            # A background run outliving its extension must not start a
            # second runtime (and load its models again) no one can stop.
            raise UserError("mlx_magic was unloaded: %load_ext mlx_magic loads it again")
        if self._runtime is None:
            settings = self.settings
            budget = gib_to_bytes(settings.memory_budget_gb)
            if settings.runtime == "process":
                from mlx_magic.runtime.process import ProcessRuntime

                self._runtime = ProcessRuntime(budget)
            elif settings.runtime == "remote":
                from mlx_magic.runtime.remote import RemoteRuntime

                if not settings.endpoints:
                    raise UserError("No server to talk to: %mlx connect URL [URL ...]")
                self._runtime = RemoteRuntime(
                    list(settings.endpoints),
                    api_key_env=settings.api_key_env,
                    connect_timeout_s=settings.connect_timeout_s,
                    first_token_timeout_s=settings.first_token_timeout_s,
                )
            else:
                from mlx_magic.runtime.thread import ThreadRuntime

                self._runtime = ThreadRuntime(budget)
        return self._runtime

    @property
    def runtime_started(self) -> bool:
        return self._runtime is not None

    def setting_changed(self, name: str) -> None:
        """React to a changed setting: the runtime kind restarts the runtime;
        the servers and their key matter only to a remote runtime."""
        if self._runtime is None:
            return
        if name == "memory_budget_gb":
            self._runtime.set_memory_budget(gib_to_bytes(self.settings.memory_budget_gb))
        elif name == "runtime" or self.settings.runtime == "remote":
            self.stop_runtime()

    def stop_runtime(self) -> None:
        if self._runtime is not None:
            self._runtime.stop()
            self._runtime = None

    def start(self, *requests: GenerationRequest) -> list[Job]:
        """The one place generations start (a cell, ``-b``, columns, the
        panel, ``--map``, a branch, a replay): one request alone, several
        advancing together (the runtime may batch them). Their events are read
        by :func:`~mlx_magic.display.following.follow`."""
        if len(requests) == 1:
            return [self.runtime.generate(requests[0])]
        return self.runtime.generate_together(list(requests))

    # ---- models --------------------------------------------------------------

    @property
    def stream_interval_s(self) -> float:
        """The longest streamed text is held back (the ``stream_interval_ms`` setting), in s."""
        return self.settings.stream_interval_ms / 1000

    def resolve(self, name: Optional[str], default: Optional[str] = None) -> ModelSpec:
        """The model spec for ``name`` (or the default), as the runtime needs it."""
        from mlx_magic.models.resolve import resolve_model, served_model_spec

        settings = self.settings
        if settings.runtime == "remote":
            return served_model_spec(name or default or settings.default_model, settings.aliases)
        from mlx_magic.magics.hub_fetch import fetch_in_cell

        spec = resolve_model(
            name,
            default=default or settings.default_model,
            aliases=settings.aliases,
            fetch_hub=lambda repo_id: fetch_in_cell(
                repo_id, notebook=getattr(self.shell, "kernel", None) is not None
            ),
        )
        if settings.trust_remote_code:
            spec = replace(spec, trust_remote_code=True)
        return spec

    def resolve_vision(self, name: Optional[str]) -> ModelSpec:
        """Like :meth:`resolve`, for a model that must see images."""
        settings = self.settings
        if settings.runtime == "remote":
            from mlx_magic.models.resolve import served_model_spec

            return served_model_spec(
                name or settings.default_vision_model, settings.aliases, "vision"
            )
        spec = self.resolve(name, default=settings.default_vision_model)
        answering_model(spec)
        if spec.kind != "vision":
            raise UserError(
                f"'{spec.name}' is a text model and cannot see images: %%mlx_vision needs a "
                "vision-language model (its config.json has a vision_config)"
            )
        return spec

    # ---- after a generation ----------------------------------------------------

    def record_finished(self, cell: PreparedCell, result: MLXResult) -> None:
        """Bookkeeping after any generation: session stats, the conversation,
        the answer's provenance (``_mlx.provenance``; ``%mlx replay``)."""
        from mlx_magic.vocabulary.provenance import provenance_record

        if getattr(result, "provenance", None) is None:
            result.provenance = provenance_record(result, cell.request)
        result.request = cell.request
        self.record_stats(result)
        turn, request = cell.turn, cell.request
        if turn is not None and result.finish_reason not in ("cancelled", "cut"):
            own_images = request.images_by_turn()[1]
            own_keys = request.image_keys[len(request.image_keys) - len(own_images) :]
            turn.conversation.record(
                turn.index,
                Turn(
                    request.prompt,
                    result.text,
                    cell.cell_id,
                    image_names=turn.image_names,
                    images=own_images,
                    image_keys=own_keys,
                    tool_turns=request.tools.turns if request.tools is not None else (),
                ),
                dropped_oldest=result.stats.dropped_turns,
            )

    def record_stats(self, result: MLXResult) -> None:
        stats = result.stats
        self.rows.append(
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

    def apply_format(
        self, result: MLXResult, cell: PreparedCell, *, set_next_input: bool = True
    ) -> None:
        """``--format`` and ``--out``: the answer as Markdown, code or JSON data."""
        from mlx_magic.magics.answer_formats import (
            first_code_block,
            parse_json_answer,
            with_pixel_coordinates,
        )

        answer_format, out_name = cell.options.answer_format, cell.out_name
        namespace = self.shell.user_ns
        if cell.schema is not None:
            # Decoding kept to the schema, so this fails only for a cut answer.
            try:
                result.data = cell.schema.parse(result.text)
            except ValueError as error:
                if out_name:
                    namespace[out_name] = result
                why = (
                    "it stopped at max tokens before the JSON closed: raise -n"
                    if result.finish_reason == "length"
                    else str(error)
                )
                raise UserError(
                    f"--schema {cell.schema.name}: {why}; the raw text is in _mlx.text"
                ) from error
            if out_name:
                namespace[out_name] = result.data
            return
        if answer_format == "code" and set_next_input:
            self.shell.set_next_input(first_code_block(result.text), replace=False)
        if answer_format == "json":
            grounded = bool(result.boxes or result.points)
            try:
                result.data = parse_json_answer(result.text)
            except ValueError as error:
                if not grounded:
                    if out_name:
                        namespace[out_name] = result
                    raise UserError(
                        f"--format json: {error}; the raw text is in _mlx.text"
                    ) from error
                result.data = None
            if grounded:
                result.data = with_pixel_coordinates(result.data, result.boxes, result.points)
            if out_name:
                namespace[out_name] = result.data
            return
        if out_name:
            namespace[out_name] = result

    def close(self) -> None:
        """Stop the background jobs and the runtime, and free every warm model;
        keep the conversations."""
        self._closed = True
        self.mcp_servers.close()
        running = self.jobs.running()
        for entry in running:
            entry.job.cancel()
        self.stop_runtime()
        for entry in running:
            # They end at once now (their generations are cancelled or refused):
            # none may go on, or write into the notebook, after the unload.
            entry.done.wait(STOP_WAIT_S)
        if self.shell is not None:
            _kept_conversations[self.shell] = self.conversations


def answering_model(spec: ModelSpec) -> ModelSpec:
    """``spec``, for a cell that asks for an answer.

    Raises:
        UserError: a segmenter or an embedding model, which answer nothing (one line).
    """
    if spec.kind == "segmenter":
        raise UserError(segmenter_not_chat(spec.name))
    if spec.kind == "embedding":
        raise UserError(embedder_not_chat(spec.name))
    return spec


def say_if_busy(session: Session, what: str) -> None:
    """A command the runtime runs after the generation in progress says so,
    instead of waiting in silence (an interrupt stops the waiting)."""
    if session.runtime_started and session.runtime.status().busy:
        print(
            f"Waiting for the generation in progress to end before {what} (interrupt to stop "
            "waiting; %mlx cancel stops background jobs)…",
            flush=True,
        )
