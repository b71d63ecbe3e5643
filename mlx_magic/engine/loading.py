"""Load a resolved model into memory (on the runtime thread).

Text models load through ``mlx_lm.load``; vision-language models through
``mlx_vlm.load``, which brings the processor along. A GGUF file is converted
into an mlx-lm folder first, once.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from pathlib import Path
from typing import Any

from mlx_magic.engine.fit import check_fits
from mlx_magic.engine.model_cache import WarmModel
from mlx_magic.errors import ModelLoadError
from mlx_magic.vocabulary.values import ModelSpec


def load_warm_model(spec: ModelSpec) -> WarmModel:
    """Load ``spec`` and measure it.

    Must run on the thread that will generate with the model: MLX streams
    are thread-local.

    Raises:
        ModelTooLarge: its weights exceed what the machine can give (nothing loaded).
        ModelLoadError: the files are not a model this MLX stack can load.
    """
    started = time.perf_counter()
    check_fits(spec)  # before converting or loading anything
    if spec.gguf:
        _convert_gguf(spec, spec.gguf)
    folder = Path(spec.path)
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        # Checked here: mlx-vlm logs an "ERROR:root:" line before it raises.
        # Each kind has its own converter; SAM's hub folders hold PyTorch checkpoints.
        convert = {
            "segmenter": "use an MLX conversion, e.g. mlx-community/sam3.1-bf16",
            "vision": "convert it with mlx_vlm.convert",
        }.get(spec.kind, "convert it with mlx_lm.convert")
        raise ModelLoadError(
            f"'{spec.name}' has no weights: {spec.path} holds no *.safetensors files "
            f"(an unfinished download? fetch it again, or {convert})"
        )
    trust = spec.trust_remote_code
    try:
        if spec.kind == "segmenter":
            from mlx_magic.engine.segmentation import load_segmenter

            model, tokenizer, config = load_segmenter(spec.path)
        elif spec.kind == "embedding":
            from mlx_magic.engine.embedding import load_embedder

            model, tokenizer, config = load_embedder(spec.path, trust)
        elif spec.kind == "vision":
            model, tokenizer, config = _load_vision(spec.path, trust)
        else:
            model, tokenizer, config = _load_text(spec.path, trust)
    except (FileNotFoundError, ValueError, KeyError, OSError) as error:
        named = [] if trust else code_named_by(folder)
        if named:
            raise ModelLoadError(
                f"'{spec.name}' needs Python code of its own to load ({'; '.join(named)}), "
                f"which runs only if you trust {spec.path}: then pass --trust-remote-code "
                "(or %config MLXMagics.trust_remote_code = True)"
            ) from error
        raise ModelLoadError(
            f"Could not load '{spec.name}' from {spec.path}: {_first_line(error)}"
        ) from error
    except RuntimeError as error:
        # MLX reports unreadable weight files (truncated, corrupt) this way;
        # other runtime errors are bugs and keep their traceback.
        if "[load_safetensors]" not in str(error) and "[load]" not in str(error):
            raise
        raise ModelLoadError(
            f"The weights of '{spec.name}' in {spec.path} are damaged ({_first_line(error)}): "
            "download or convert the model again"
        ) from error
    _quiet_about_long_prompts(tokenizer)
    return WarmModel(
        name=spec.name,
        key=spec.key,
        kind=spec.kind,
        model=model,
        tokenizer=tokenizer,
        config=config,
        memory_bytes=parameter_bytes(model),
        load_s=time.perf_counter() - started,
        path=spec.path,
        source=spec.source,
    )


def release_warm_model(entry: WarmModel) -> None:
    """Free a model's memory now rather than at the next garbage collection."""
    import mlx.core as mx

    if entry.kind == "segmenter":  # a video it tracks between calls holds its weights
        from mlx_magic.engine.segmentation import drop_tracking

        drop_tracking(entry.key)
    entry.model = None
    entry.tokenizer = None
    entry.caches.drop()
    gc.collect()
    mx.clear_cache()


def parameter_bytes(model: Any) -> int:
    """Bytes held by a model's parameters (quantized weights count as stored)."""
    from mlx.utils import tree_flatten

    return sum(array.nbytes for _, array in tree_flatten(model.parameters()))  # type: ignore[str-unpack,union-attr]  # mlx types leaves as Any | str


def _convert_gguf(spec: ModelSpec, gguf: str) -> None:
    from mlx_magic.engine.gguf_conversion import convert_gguf
    from mlx_magic.models.gguf import UnsupportedGGUF

    try:
        convert_gguf(gguf, spec.path)
    except UnsupportedGGUF as error:
        raise ModelLoadError(f"{spec.name}: {error}") from error


# The JSON files through which a model folder names Python code to run:
# transformers' ``auto_map`` (config, tokenizer, processors) and mlx-lm's
# ``model_file``.
_CODE_NAMING_FILES = (
    "config.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
)


def code_named_by(folder: Path) -> list[str]:
    """What Python code ``folder``'s JSON files name, as ``"file.json names code.py"``."""
    named = []
    for name in _CODE_NAMING_FILES:
        try:
            config = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(config, dict):
            continue
        modules: set[str] = set()
        if isinstance(config.get("model_file"), str):
            modules.add(config["model_file"])
        auto_map = config.get("auto_map")
        if isinstance(auto_map, dict):
            for reference in auto_map.values():
                for one in reference if isinstance(reference, list) else [reference]:
                    if isinstance(one, str) and "." in one:
                        # "module.Class", or "repo--module.Class" for another repo's code
                        modules.add(one.rsplit(".", 1)[0].split("--")[-1] + ".py")
        if modules:
            named.append(f"{name} names {', '.join(sorted(modules))}")
    return named


def _load_text(path: str, trust_remote_code: bool) -> tuple[Any, Any, dict]:
    from mlx_lm import load

    model, tokenizer, config = load(path, return_config=True, trust_remote_code=trust_remote_code)
    return model, tokenizer, config


class _ProcessorKwargsNotice(logging.Filter):
    """Drops transformers' "Kwargs passed to `processor.__call__` have to be in
    `processor_kwargs`" warning: mlx-vlm passes its processor options that way,
    and the warning reached every vision cell (seen with some processors; not
    with the tiny Qwen2-VL of the tests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "have to be in `processor_kwargs`" not in record.getMessage()


_PROCESSOR_NOTICE = _ProcessorKwargsNotice()


def _load_vision(path: str, trust_remote_code: bool) -> tuple[Any, Any, dict]:
    from mlx_vlm import load
    from mlx_vlm.utils import load_config

    logging.getLogger("transformers.processing_utils").addFilter(_PROCESSOR_NOTICE)

    # Said every time: mlx-vlm's loaders turn transformers' trust_remote_code
    # on when not told otherwise, which runs the code a folder's auto_map names.
    model, processor = load(path, trust_remote_code=trust_remote_code)
    return model, processor, load_config(path)


def _quiet_about_long_prompts(tokenizer: Any) -> None:
    """Silence transformers' "Token indices sequence length is longer than the
    specified maximum" warning: the engine measures every prompt against the
    model's context and refuses one that does not fit in one line, and the
    warning added a second line on stderr (a processor holds its tokenizer;
    mlx-lm's wrapper holds the transformers one)."""
    for holder in (tokenizer, getattr(tokenizer, "tokenizer", None)):
        for candidate in (holder, getattr(holder, "_tokenizer", None)):
            warned = getattr(candidate, "deprecation_warnings", None)
            if isinstance(warned, dict):
                warned["sequence-length-is-longer-than-the-specified-maximum"] = True


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
