"""The settings of the magics: traitlets with help text, validated.

``%config MLXMagics.<name> = value`` (or ``c.MLXMagics.<name>`` in a config
file) sets them; a refused value keeps the old one. :class:`MLXSettings` holds
only the traits; :class:`~mlx_magic.magics.mlx_magics.MLXMagics` inherits them,
so every trait is configured under the name ``MLXMagics``.
"""

from __future__ import annotations

import math
import os
import re
from typing import TYPE_CHECKING, Any, Optional

from IPython.core.magic import Magics
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
    validate,
)

from mlx_magic.images.regions import DEFAULT_MAX_IMAGE_PIXELS
from mlx_magic.models.embedded import EMBEDDED_MODEL_NAME, cache_root
from mlx_magic.vocabulary import defaults
from mlx_magic.vocabulary.machine import default_memory_budget_gb

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets import HasTraits, TraitType
    from traitlets.utils.bunch import Bunch

# What each numeric setting accepts, and how to say so when it does not.
_SETTING_RULES = {
    "max_tokens": (lambda v: v > 0, "a positive integer"),
    "max_images": (lambda v: v > 0, "a positive integer"),
    "num_draft_tokens": (lambda v: 1 <= v <= 64, "between 1 and 64"),
    "max_image_pixels": (lambda v: v >= 32 * 32, "at least 1024 (32×32 pixels)"),
    "prefix_cache_entries": (lambda v: v >= 1, "1 or more"),
    "prefix_cache_gb": (lambda v: 0 < v < math.inf, "a finite number of GiB above 0"),
    "disk_cache_gb": (lambda v: 0 <= v < math.inf, "0 (off) or a finite number of GiB"),
    "disk_cache_min_tokens": (lambda v: v >= 1, "1 or more"),
    "max_kv_size": (lambda v: v is None or v >= 16, "None or at least 16 tokens"),
    "kv_bits": (lambda v: v in (None, 4, 8), "None, 4 or 8"),
    "temperature": (lambda v: 0 <= v < math.inf, "0 or more (and finite)"),
    "top_p": (lambda v: 0.0 <= v <= 1.0, "between 0 and 1"),
    "segment_threshold": (lambda v: 0.0 <= v <= 1.0, "between 0 and 1"),
    "memory_budget_gb": (lambda v: 0 < v < math.inf, "a finite number of GiB above 0"),
    "stream_interval_ms": (lambda v: 10 <= v <= 10_000, "between 10 and 10000"),
    "connect_timeout_s": (lambda v: 0 < v < math.inf, "a finite number of seconds above 0"),
    "first_token_timeout_s": (lambda v: 0 < v < math.inf, "a finite number of seconds above 0"),
    "tool_timeout_s": (lambda v: 0 < v < math.inf, "a finite number of seconds above 0"),
}


class MLXSettings(Magics):
    """The traits of :class:`~mlx_magic.magics.mlx_magics.MLXMagics`."""

    @classmethod
    def class_get_trait_help(
        cls,
        trait: TraitType[Any, Any],
        inst: Optional[HasTraits] = None,
        helptext: Optional[str] = None,
    ) -> str:
        # ``%config MLXMagics`` shows current values: never a URL's password.
        text = super().class_get_trait_help(trait, inst, helptext)
        return re.sub(r"(://[^/:@\s'\"]+):[^@\s'\"]*@", r"\1:***@", text)

    default_model = Unicode(
        None,
        allow_none=True,
        help=f"Model used when %%mlx has no --model. None means the embedded "
        f"'{EMBEDDED_MODEL_NAME}' model.",
    ).tag(config=True)
    draft_model = Unicode(
        None,
        allow_none=True,
        help="A small model with the same tokenizer that drafts tokens for every %%mlx text "
        "answer (speculative decoding, mlx-lm's own): greedy answers stay the model's, token "
        "for token, and come faster when the draft guesses well. --draft sets it for one cell; "
        "--draft none turns it off.",
    ).tag(config=True)
    num_draft_tokens = Int(
        3, help="How many tokens the draft model proposes at a time (--num-draft)."
    ).tag(config=True)
    default_vision_model = Unicode(
        None, allow_none=True, help="Model used by %%mlx_vision when it has no --model."
    ).tag(config=True)
    default_segment_model = Unicode(
        None,
        allow_none=True,
        help="The segmenter (a SAM 3 or SAM 3.1 folder or Hub id, e.g. facebook/sam3 or "
        "mlx-community/sam3.1-bf16) that "
        "%%mlx_vision --segment uses when it has no --model.",
    ).tag(config=True)
    default_embedding_model = Unicode(
        None,
        allow_none=True,
        help="Embedding model used by %mlx embed, %%mlx --embed and %mlx nearest when they "
        "have no -m (an EmbeddingGemma, Qwen3-Embedding, BERT or ModernBERT folder or Hub id).",
    ).tag(config=True)
    segment_threshold = Float(
        0.5, help="The lowest score a mask of --segment keeps (0 to 1; SAM 3's own default)."
    ).tag(config=True)
    max_images = Int(
        8, help="Most images one %%mlx_vision cell may send (a model may allow fewer)."
    ).tag(config=True)
    max_image_pixels = Int(
        DEFAULT_MAX_IMAGE_PIXELS,
        help="Images larger than this many pixels (width × height) are shrunk, aspect kept, "
        "before the vision model's processor sees them: at 1 megapixel a 12-megapixel "
        "photo costs ~1,300 tokens instead of ~15,000 (Qwen2-VL). --max-pixels sets it "
        "for one cell.",
    ).tag(config=True)
    grounding = Bool(
        True,
        help="Find the boxes and points in %%mlx_vision answers (Qwen2-VL, Qwen2.5-VL, "
        "Qwen3-VL, PaliGemma, Molmo formats), draw them on the previews and keep them in "
        "_mlx.boxes / _mlx.points.",
    ).tag(config=True)
    max_tokens = Int(
        defaults.MAX_TOKENS, help="Most tokens to generate when a cell has no --max-tokens."
    ).tag(config=True)
    temperature = Float(0.0, help="Sampling temperature; 0 is greedy decoding.").tag(config=True)
    top_p = Float(
        1.0,
        help="Nucleus sampling: keep the smallest token set with this much "
        "probability (1 keeps all).",
    ).tag(config=True)
    system_prompt = Unicode(
        None, allow_none=True, help="System prompt for chat models; None keeps the template's own."
    ).tag(config=True)
    judge_prompt = Unicode(
        defaults.JUDGE_PROMPT,
        help="What --judge MODEL is asked for each answer: a template naming {question} "
        "(the item's filled-in prompt), {answer} and {label}; the judge replies with "
        '{"score": 0..1} (its decoding is held to that JSON).',
    ).tag(config=True)
    aliases = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="Short names for models, e.g. {'tiny': '~/models/SmolLM2'}.",
    ).tag(config=True)
    memory_budget_gb = Float(
        help="Warm models are evicted, least recently used first, above this many GiB "
        "(1024³ bytes). The default is half of the machine's memory (its RAM, as the "
        "operating system says; on Apple silicon the GPU's too), at least 1 GiB.",
    ).tag(config=True)
    stream_interval_ms = Int(
        200, help="Longest time streamed text is held back before it is shown (ms)."
    ).tag(config=True)
    default_format = CaselessStrEnum(
        ["markdown", "text"],
        "markdown",
        help="How answers show when a cell gives no --format: 'markdown' renders them "
        "(headings, lists, tables, code, math) while they stream, in notebook frontends; "
        "'text' streams plain text, as a terminal always does.",
    ).tag(config=True)
    prefix_cache = Bool(
        True,
        help="Reuse the KV state of earlier prompts that share a beginning with a new one "
        "(same system prompt, same pasted text, a conversation), so only the new part is read.",
    ).tag(config=True)
    prefix_cache_entries = Int(
        defaults.PREFIX_CACHE_ENTRIES,
        help="Most prompt states kept per model by the prefix cache.",
    ).tag(config=True)
    prefix_cache_gb = Float(
        defaults.PREFIX_CACHE_GB,
        help="Most memory (GiB) the prefix cache of one model may hold.",
    ).tag(config=True)
    disk_cache_gb = Float(
        defaults.DISK_CACHE_GB,
        help="The prefix cache's tier on disk, which survives a kernel restart: a prompt "
        "that read at least disk_cache_min_tokens new tokens (a pasted document) has its KV "
        "state written to disk_cache_dir after the answer, so Restart & Run All reads it "
        "back instead of reading the document again. At most this many GiB, least recently "
        "used out; 0 turns it off.",
    ).tag(config=True)
    disk_cache_min_tokens = Int(
        defaults.DISK_CACHE_MIN_TOKENS,
        help="The fewest new prompt tokens for which a prompt's state is written to disk.",
    ).tag(config=True)
    disk_cache_dir = Unicode(
        help="Where the disk cache keeps prompt states (mlx-lm prompt-cache files, one "
        "folder per model); the default is prompts/ in mlx_magic's cache folder "
        "($MLX_MAGIC_CACHE, else ~/.cache/mlx_magic).",
    ).tag(config=True)
    max_kv_size = Int(
        None,
        allow_none=True,
        help="Keep only the newest this many tokens in the KV cache of text models (mlx-lm's "
        "rotating cache); --max-kv-size sets it for one cell. None keeps every token.",
    ).tag(config=True)
    kv_bits = Int(
        None,
        allow_none=True,
        help="Quantize the KV cache of text models to 4 or 8 bits (mlx-lm's quantized "
        "cache); --kv-bits sets it for one cell. None keeps the model's precision.",
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
    connect_timeout_s = Float(
        5.0, help="Seconds to wait for a remote server to accept a connection."
    ).tag(config=True)
    first_token_timeout_s = Float(
        300.0,
        help="Seconds a remote server may take to send the first token (it may be loading "
        "the model or reading a long prompt) before the cell gives up on it.",
    ).tag(config=True)
    tool_timeout_s = Float(
        defaults.TOOL_TIMEOUT_S,
        help="Seconds a function offered with --tools may run before the cell stops waiting "
        "for it: it is stopped as far as Python allows and the model is told it timed out.",
    ).tag(config=True)
    trust_remote_code = Bool(
        False,
        help="Let loading a model run the Python code its folder names (auto_map or "
        "model_file in its JSON files). Off: a downloaded folder's code never runs unless "
        "you trust it; --trust-remote-code allows it for one cell.",
    ).tag(config=True)
    short_errors = Bool(
        True,
        help="Show errors raised while loading or running a model as one line. "
        "False shows the full traceback.",
    ).tag(config=True)

    @default("default_model")
    def _default_model_from_environment(self) -> Optional[str]:
        return os.environ.get("MLX_MAGIC_DEFAULT_MODEL") or None

    @default("disk_cache_dir")
    def _disk_cache_under_the_cache_folder(self) -> str:
        return str(cache_root() / "prompts")

    @default("memory_budget_gb")
    def _memory_budget_from_the_machine(self) -> float:
        return default_memory_budget_gb()

    @default("default_vision_model")
    def _default_vision_model_from_environment(self) -> Optional[str]:
        # Lets CI run the vision notebook against a tiny test model.
        return os.environ.get("MLX_MAGIC_DEFAULT_VISION_MODEL") or None

    @default("default_segment_model")
    def _default_segment_model_from_environment(self) -> Optional[str]:
        return os.environ.get("MLX_MAGIC_DEFAULT_SEGMENT_MODEL") or None

    @validate(*_SETTING_RULES)
    def _check_setting(self, proposal: Bunch) -> float:
        accepts, expected = _SETTING_RULES[proposal.trait.name]
        if not accepts(proposal.value):
            raise TraitError(f"{proposal.trait.name} must be {expected}, not {proposal.value}")
        return proposal.value

    @validate("api_key_env")
    def _check_api_key_env(self, proposal: Bunch) -> Optional[str]:
        if proposal.value is not None and not re.fullmatch(r"[A-Za-z_]\w*", proposal.value):
            # Never echo the value: it may be a key pasted by mistake.
            raise TraitError(
                "api_key_env must be the NAME of an environment variable "
                "(letters, digits, _), not its value"
            )
        return proposal.value


def forget_refused_settings(
    shell: Optional[InteractiveShell], magics_class: type[MLXSettings]
) -> list[str]:
    """Drop the ``MLXMagics`` values in ``shell.config`` that a trait refuses.

    ``%config MLXMagics.max_tokens = -3`` is refused, but IPython has already
    merged it into the shell's config, where every later ``%load_ext`` would
    meet it and fail. Run after each cell and before the magics are built.

    Returns:
        One line per dropped value, naming the setting and the rule (never
        the value of ``api_key_env``, which may be a pasted key).
    """
    from traitlets.config import LazyConfigValue

    section = shell.config.get(magics_class.__name__) if shell is not None else None
    if not section:
        return []
    probe = magics_class.__new__(magics_class)  # validators without a shell or a runtime
    traits = magics_class.class_traits(config=True)
    dropped = []
    for name, value in list(section.items()):
        trait = traits.get(name)
        if trait is None or isinstance(value, LazyConfigValue):
            continue
        try:
            trait._validate(probe, value)
        except TraitError as error:
            del section[name]
            dropped.append(f"{magics_class.__name__}.{name} was refused and is forgotten: {error}")
    return dropped
