"""The values that pass between the magics and a runtime.

Everything a magic sends (a :class:`GenerationRequest`) and everything a runtime sends back (the
events below, through a :class:`~mlx_magic.vocabulary.job.Job`) is a plain dataclass of strings and
numbers, so the thread runtime, a worker process speaking JSON-RPC or a remote OpenAI-compatible
server can serve the same interface without the magics knowing which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Optional, Sequence, Union

from mlx_magic.vocabulary import defaults
from mlx_magic.vocabulary.caching import KVCacheSettings, PrefixCacheSettings
from mlx_magic.vocabulary.tools import PromptRendered, ToolCallsFound, ToolUse

#: What a model is: mlx-lm's (``"text"``), mlx-vlm's (``"vision"``, ``"segmenter"``: SAM 3), or a vector maker.
ModelKind = Literal["text", "vision", "segmenter", "embedding"]
#: Where a model's files come from (``"remote"``: a server holds them).
ModelSource = Literal["embedded", "folder", "hub", "gguf", "remote"]
#: How a generation ended (``"cut"``: a remote stream broke after some text, which is kept).
FinishReason = Literal["stop", "length", "cancelled", "cut"]
#: Where models run (the ``runtime`` setting).
RuntimeKind = Literal["thread", "process", "remote"]


def finish_reason_of(reason: object) -> FinishReason:
    """A library's or a server's finish reason as one of mlx_magic's: those it knows
    stay; anything else that ended the answer (a stop token, a tool call...) is ``"stop"``."""
    for known in ("length", "cancelled", "cut"):
        if reason == known:
            return known
    return "stop"


@dataclass(frozen=True)
class ModelSpec:
    """A model resolved from what the user typed, before it is loaded.

    Attributes:
        name: what to show the user (an alias, a hub id, a folder name).
        key: the resolved location; the warm-model cache is keyed by it.
        path: the folder the loader reads (for a GGUF file: the folder it is
            converted into on first load).
        kind: ``"text"`` (mlx-lm) or ``"vision"`` (mlx-vlm).
        source: ``"embedded"``, ``"folder"``, ``"hub"`` or ``"gguf"``.
        gguf: the GGUF file to convert into ``path`` before loading, if any.
        trust_remote_code: whether loading may run Python code the folder
            names (``auto_map`` or ``model_file`` in its JSON files); off
            unless the user opts in (``--trust-remote-code``).
    """

    name: str
    key: str
    path: str
    kind: ModelKind = "text"
    source: ModelSource = "folder"
    gguf: Optional[str] = None
    trust_remote_code: bool = False

    def same_model(self, other: ModelSpec) -> bool:
        """Whether ``other`` names the same model, perhaps by another name (an
        alias, a path to the embedded model's converted folder)."""
        return self.key == other.key or bool(self.path and self.path == other.path)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens; ``None`` leaves a setting to mlx-lm's default."""

    max_tokens: int = defaults.MAX_TOKENS
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: Optional[float] = None
    seed: Optional[int] = None


@dataclass(frozen=True)
class GenerationRequest:
    """One answer to generate.

    Attributes:
        model: the model to answer with.
        prompt: the user's text.
        system: a system prompt; ``None`` keeps the chat template's default.
        raw: send ``prompt`` as is, without the chat template.
        sampling: token selection settings.
        images: RGB ``PIL.Image`` objects for a vision model (a process
            runtime sends them as PNG).
        image_keys: a content key per image, for the runtime's caches.
        prefix_cache: the prompt prefix cache settings.
        history: earlier turns of a conversation, as (user, assistant) pairs, or
            (user, assistant, tool turns): the calls and results (chat messages) between.
        history_images: how many images each earlier turn sent (empty: none).
            ``images`` holds those first, in turn order, then this cell's;
            each stays in the turn that sent it, so the prompt of a follow-up
            begins with the previous prompt and its KV cache can be reused.
        conversation: the conversation's name (``None`` outside ``--chat``),
            so a runtime can keep one KV cache per conversation.
        top_logprobs: report each token's log-probability and this many
            alternatives (0: none, and no cost).
        video: a video file to send (``-v clip.mp4``), decoded and sampled
            by the runtime with mlx-vlm's own video reader.
        video_frames: or the frames of a video, already sampled (RGB
            ``PIL.Image`` objects, in order).
        video_fps: frames per second to sample ``video`` at (for
            ``video_frames``: the rate they were taken at).
        video_max_frames: most frames to sample from ``video``.
        think: ``--think`` (True) or ``--no-think`` (False): the chat
            template's ``enable_thinking``; ``None`` leaves it to the template.
        think_budget: end a thinking block (``<think> … </think>``) after
            this many tokens by forcing its closing tag (``None``: no limit).
    """

    model: ModelSpec
    prompt: str
    system: Optional[str] = None
    raw: bool = False
    sampling: SamplingParams = field(default_factory=SamplingParams)
    images: tuple = ()
    image_keys: tuple = ()
    prefix_cache: PrefixCacheSettings = field(default_factory=PrefixCacheSettings)
    history: tuple = ()
    history_images: tuple = ()
    conversation: Optional[str] = None
    top_logprobs: int = 0
    video: Optional[str] = None
    video_frames: tuple = ()
    video_fps: float = defaults.VIDEO_FPS
    video_max_frames: int = defaults.VIDEO_MAX_FRAMES
    #: Generated together with others (``--map``, columns of one model): most
    #: sequences decoded at once (0: chosen from the model and the memory budget;
    #: 1: one after the other).
    batch_size: int = 0
    #: ``--schema``: a JSON schema (as JSON text) the answer must follow;
    #: decoding is constrained to it.
    schema_json: Optional[str] = None
    think: Optional[bool] = None
    think_budget: Optional[int] = None
    #: ``--draft``: a small model of the same tokenizer that proposes
    #: ``num_draft_tokens`` tokens at a time for the model to check
    #: (mlx-lm's speculative decoding); ``None``: no draft.
    draft: Optional[ModelSpec] = None
    num_draft_tokens: int = 3
    #: A branch (``%mlx branch``): the tokens the answer already begins with, read after the
    #: prompt (from the prefix cache, which trims the original answer's KV cache to them).
    continue_ids: tuple = ()
    #: ``--max-kv-size`` / ``--kv-bits``: the KV cache's form (text models).
    kv_cache: KVCacheSettings = field(default_factory=KVCacheSettings)
    #: ``--tools``: the functions offered (as schemas) and the tool turns so far.
    tools: Optional[ToolUse] = None

    @property
    def has_video(self) -> bool:
        return self.video is not None or bool(self.video_frames)

    def images_by_turn(self) -> tuple[list[tuple], tuple]:
        """The images each history turn sent, and this cell's own."""
        earlier, start = [], 0
        for index in range(len(self.history)):
            count = self.history_images[index] if index < len(self.history_images) else 0
            earlier.append(tuple(self.images[start : start + count]))
            start += count
        return earlier, tuple(self.images[start:])

    def plain_prompt(self, history: Optional[Sequence[tuple]] = None) -> str:
        """The system prompt, the earlier turns and this cell as one text, in
        blank-line-separated paragraphs (no chat template: ``--raw``)."""
        parts = [self.system] if self.system else []
        for user, assistant, *_ in self.history if history is None else history:
            parts += [user, assistant]
        return "\n\n".join(parts + [self.prompt])

    def chat_messages(
        self,
        user_message: Optional[Callable[[str, tuple], dict]] = None,
        history: Optional[Sequence[tuple]] = None,
    ) -> list[dict]:
        """The system prompt, the earlier turns and this cell as chat messages.

        Args:
            user_message: ``user_message(text, images)`` makes a user message
                with the images its turn sent; by default, the text alone.
            history: the turns to send, if not all of ``self.history``: its
                newest ones (when the oldest no longer fit the context).
        """
        if user_message is None:

            def user_message(text: str, images: tuple) -> dict:
                return {"role": "user", "content": text}

        turns = self.history if history is None else history
        earlier_images, own_images = self.images_by_turn()
        messages = [{"role": "system", "content": self.system}] if self.system else []
        for (user, assistant, *between), images in zip(
            turns, earlier_images[len(earlier_images) - len(turns) :]
        ):
            messages.append(user_message(user, images))
            messages += [dict(turn) for calls in between for turn in calls]  # --tools' turns
            messages.append({"role": "assistant", "content": assistant})
        messages.append(user_message(self.prompt, own_images))
        return messages


@dataclass(frozen=True)
class ModelInfo:
    """A warm model as the runtime reports it."""

    name: str
    key: str
    #: A :data:`ModelKind`, or ``"remote"`` for a model a server holds.
    kind: str
    memory_bytes: int
    load_s: float
    uses: int = 0
    vision_features: Optional[dict] = None
    prefix_cache: Optional[dict] = None


@dataclass(frozen=True)
class MemorySample:
    """MLX's memory right after one generation (bytes), as ``%mlx memory`` plots it.

    ``kv_cache_bytes`` is what the answer's context (prompt and answer) held in its KV cache
    at the end; 0 where the engine does not say (vision, batched ``--map`` items, servers).
    """

    generation: int
    model: str
    active_bytes: int
    cache_bytes: int
    peak_bytes: int
    context_tokens: int = 0
    kv_cache_bytes: int = 0


@dataclass(frozen=True)
class RuntimeStatus:
    """A snapshot of the runtime, safe to read while it generates."""

    #: Where it runs, in words (``"thread in the kernel"``, a worker's pid, the servers).
    kind: str
    running: bool
    busy: bool
    queued: int
    current: Optional[str]
    lock_held: bool
    models: tuple = ()
    memory_budget_bytes: int = 0
    active_memory_bytes: int = 0
    cache_memory_bytes: int = 0
    peak_memory_bytes: int = 0
    generations: int = 0
    #: MLX's memory after each of the latest generations (oldest first).
    memory_log: tuple = ()


# ---- events a runtime sends back for one generation -----------------------


@dataclass(frozen=True)
class ModelLoading:
    """The model is not warm: loading (and maybe converting) has started."""

    model: str


@dataclass(frozen=True)
class ModelReady:
    """The model is in memory; ``warm`` says whether it already was."""

    model: str
    warm: bool
    load_s: float


@dataclass(frozen=True)
class Notice:
    """Something the user should know about this generation (one line)."""

    message: str


@dataclass(frozen=True)
class Progress:
    """Where a generation is before its first token (the status line shows it):
    waiting behind another cell, or how much of a long prompt has been read."""

    message: str


@dataclass(frozen=True)
class ImagesPrepared:
    """How the vision model's processor saw the images, before the prompt is read.

    One entry per image of the request (earlier turns' first, then the
    cell's own), ``None`` where the processor does not say.

    Attributes:
        model_type: the model's family as mlx-vlm names it (``qwen2_vl``...),
            which fixes how its answers write coordinates.
        processed_sizes: (width, height) each image was resized to.
        vision_tokens: how many prompt tokens each image became.
        image_tokens: all image tokens of the prompt.
        prompt_tokens: the whole prompt, image and text tokens.
    """

    model_type: str
    processed_sizes: tuple = ()
    vision_tokens: tuple = ()
    image_tokens: int = 0
    prompt_tokens: int = 0
    video_tokens: int = 0


@dataclass(frozen=True)
class VideoPrepared:
    """The frames sampled from a video, before the prompt is read.

    ``frames`` are small RGB thumbnails (for the preview strip), one per
    sampled frame; ``timestamps`` their times in the clip, in seconds.
    """

    source: str
    frames: tuple = ()
    timestamps: tuple = ()


@dataclass(frozen=True)
class TokenChunk:
    """Text the model produced, with the token ids that produced it.

    ``details`` has one dict per token id when probabilities were asked for:
    ``{"logprob": float, "top": [(id, text, logprob), ...]}``.

    ``thinking`` marks text a server sent as reasoning (a ``reasoning_content``
    or ``reasoning`` delta). Thinking written inline (``<think> … </think>``)
    arrives as ordinary text and is told apart by whoever shows it.
    """

    text: str
    token_ids: tuple = ()
    details: tuple = ()
    thinking: bool = False
    #: One flag per token id: proposed by the draft model and accepted (``--draft``).
    from_draft: tuple = ()


@dataclass(frozen=True)
class ThinkingOpened:
    """The prompt ends inside a thinking block: the chat template itself wrote ``<think>``
    (DeepSeek-R1 distills, Qwen3 thinking models): what follows is thinking until ``</think>``."""


@dataclass(frozen=True)
class ThinkingCanEnd:
    """The generation can close its thinking block when asked ("Answer now")."""


@dataclass
class GenerationStats:
    """Numbers about one generation, measured on the runtime side: the engine
    fills them, the runtime adds where it ran, ``_mlx.stats`` shows them.

    ``peak_memory_gb`` is in GiB (1024³ bytes); ``warm`` and ``load_s`` say
    whether the model was already loaded, and how long loading took.
    """

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    #: Of ``prompt_tokens``, how many stand for images and for video (vision models).
    image_tokens: int = 0
    video_tokens: int = 0
    prompt_tps: float = 0.0
    generation_tokens: int = 0
    generation_tps: float = 0.0
    ttft_s: Optional[float] = None
    peak_memory_gb: float = 0.0
    load_s: float = 0.0
    warm: bool = True
    dropped_turns: int = 0
    #: Of ``generation_tokens``, how many were thinking (``<think> … </think>``,
    #: or a server's reasoning), and how long the thinking took (s).
    thinking_tokens: int = 0
    thinking_s: float = 0.0
    #: How many sequences were decoded together (1: alone).
    batch_size: int = 1
    #: The KV cache's size at the end (bytes): what this context costs;
    #: its form when not the plain one (``--kv-bits``, ``--max-kv-size``).
    kv_cache_bytes: int = 0
    kv_cache: Optional[str] = None
    #: Of ``cached_prompt_tokens``, how many were read from the disk cache.
    disk_prompt_tokens: int = 0
    #: ``--draft``: the draft model, how many generated tokens came from it,
    #: and the model's speed without a draft (tokens/s): the same prompt's
    #: latest answer, or else the model's latest answer.
    draft_model: Optional[str] = None
    drafted_tokens: int = 0
    undrafted_tps: Optional[float] = None
    #: Whether ``undrafted_tps`` is the same prompt's (else the model's latest answer).
    undrafted_same_prompt: bool = False
    #: How the answer was made, as the runtime knows it (model, weights,
    #: template, library versions, prompt token ids' hash): see ``_mlx.provenance``.
    provenance: Optional[dict] = None
    #: The server that answered (remote runtime; its URL without credentials).
    server: Optional[str] = None


@dataclass(frozen=True)
class Finished:
    """The generation ended; ``finish_reason`` is stop, length, cancelled, or
    cut (a remote stream broke after some text, which is kept)."""

    finish_reason: FinishReason
    stats: GenerationStats = field(default_factory=GenerationStats)


@dataclass(frozen=True)
class Failed:
    """The generation could not run.

    ``user_error`` is true when the user can fix it (a model that is not a
    model, an unsupported file): the magic shows ``message`` as one line.
    Otherwise it is a bug or a crash, and ``error`` holds the exception.
    """

    message: str
    user_error: bool
    error: Optional[BaseException] = None


Event = Union[
    ModelLoading,
    ModelReady,
    Notice,
    Progress,
    ImagesPrepared,
    VideoPrepared,
    ThinkingOpened,
    ThinkingCanEnd,
    TokenChunk,
    ToolCallsFound,
    PromptRendered,
    Finished,
    Failed,
]
