"""The vision prompt made into model inputs once, measured, and checked (runtime thread).

mlx-vlm's ``stream_generate`` runs the processor itself, but it also takes
inputs a caller prepared (``input_ids``, ``pixel_values``, ``mask`` and the
processor's other outputs). Preparing them here, once, tells the cell what
each image cost (the size the processor resized it to, the tokens it became)
and lets a prompt that cannot fit the context be refused before any prefill,
without running the processor twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from mlx_magic.engine.model_cache import config_dict
from mlx_magic.engine.text_generation import context_length
from mlx_magic.errors import UserError
from mlx_magic.vocabulary.attention import ImagePatches
from mlx_magic.vocabulary.values import ImagesPrepared

if TYPE_CHECKING:
    from mlx_magic.engine.model_cache import WarmModel
    from mlx_magic.engine.video_inputs import Clip

# What the processor returns that is not passed on as a keyword argument.
_MAIN_INPUTS = ("input_ids", "pixel_values", "attention_mask")


@dataclass
class VisionInputs:
    """A prompt with its images, as the model reads it.

    Attributes:
        input_ids, pixel_values, mask: the processor's tensors.
        extra: its other outputs (``image_grid_thw``...), keyword arguments
            of ``stream_generate``.
        prepared: what the cell is told about the images.
    """

    input_ids: Any
    pixel_values: Any
    mask: Any
    extra: dict = field(default_factory=dict)
    prepared: Optional[ImagesPrepared] = None

    def generate_kwargs(self) -> dict:
        """Keyword arguments that hand these inputs to mlx-vlm's ``stream_generate``."""
        return dict(
            input_ids=self.input_ids, pixel_values=self.pixel_values, mask=self.mask, **self.extra
        )


def prepare_vision_inputs(
    warm: WarmModel, prompt: str, images: list, model_name: str, clip: Optional[Clip] = None
) -> VisionInputs:
    """Run the model's processor on the prompt, its images and its video, once.

    ``clip`` is a :class:`~mlx_magic.engine.video_inputs.Clip` (or ``None``).

    Raises:
        UserError: the prompt (its images included) does not fit the model's context.
    """
    from mlx_vlm.utils import prepare_inputs

    config = config_dict(warm.config)
    video_options = dict(videos=[clip.frames], fps=clip.fps) if clip is not None else {}
    inputs = prepare_inputs(
        warm.tokenizer,
        images=images or None,
        prompts=prompt,
        image_token_index=_image_token_id(config),
        add_special_tokens=_adds_special_tokens(warm),
        **video_options,
    )
    input_ids = inputs["input_ids"]
    prompt_tokens = int(input_ids.shape[-1])
    image_tokens = _count(input_ids, _image_token_id(config))
    video_tokens = _count(input_ids, config.get("video_token_id")) if clip is not None else 0
    sizes, per_image = image_costs(warm.tokenizer, inputs, len(images), image_tokens)
    prepared = ImagesPrepared(
        model_type=str(config.get("model_type", "")),
        processed_sizes=sizes,
        vision_tokens=per_image,
        image_tokens=image_tokens,
        prompt_tokens=prompt_tokens,
        video_tokens=video_tokens,
    )
    limit = context_length(config) or context_length(config_dict(config.get("text_config", {})))
    if limit and prompt_tokens >= limit:
        what = f"{image_tokens:,} of them for {len(images)} image(s)"
        if clip is not None:
            what += f", {video_tokens:,} for the video"
        raise UserError(
            f"The prompt is {prompt_tokens:,} tokens ({what}); {model_name} reads at most "
            f"{limit:,}: send smaller images (--max-pixels N, or MLXMagics.max_image_pixels), "
            "fewer images or frames (--max-frames), or a shorter prompt"
        )
    return VisionInputs(
        input_ids=input_ids,
        pixel_values=inputs.get("pixel_values"),
        mask=inputs.get("attention_mask"),
        extra={key: value for key, value in inputs.items() if key not in _MAIN_INPUTS},
        prepared=prepared,
    )


def image_costs(processor: Any, inputs: dict, count: int, image_tokens: int) -> tuple[tuple, tuple]:
    """Per image: the (width, height) the processor resized it to, and its tokens.

    Qwen-style processors say it in ``image_grid_thw`` (patches of
    ``patch_size`` pixels, ``merge_size``² patches per token); fixed-size
    processors in the shape of ``pixel_values`` (one image per row, tokens
    shared equally). Anything else: unknown (``None``).
    """
    if count == 0:
        return (), ()
    image_processor = getattr(processor, "image_processor", None)
    grid = inputs.get("image_grid_thw")
    patch = getattr(image_processor, "patch_size", None)
    merge = getattr(image_processor, "merge_size", None)
    if grid is not None and isinstance(patch, int) and isinstance(merge, int):
        rows = [tuple(int(value) for value in row) for row in _as_list(grid)]
        if len(rows) == count:
            sizes = tuple((w * patch, h * patch) for _, h, w in rows)
            tokens = tuple(t * h * w // (merge * merge) for t, h, w in rows)
            return sizes, tokens
    pixels = inputs.get("pixel_values")
    shape = tuple(getattr(pixels, "shape", ()))
    if len(shape) == 4 and shape[0] == count:
        each = image_tokens // count if image_tokens else None
        return ((int(shape[3]), int(shape[2])),) * count, (each,) * count
    return (None,) * count, (None,) * count


def image_token_grids(
    processor: Any, config: dict, prompt_ids: list[int], extra: dict, count: int
) -> tuple[ImagePatches, ...]:
    """Where each image's tokens are in ``prompt_ids`` and the grid they form.

    Qwen-style processors say it in ``image_grid_thw``: an image of ``h × w``
    patches of ``patch_size`` pixels (resized to ``w·patch × h·patch``) becomes
    ``(h/merge) × (w/merge)`` tokens, one per ``merge × merge`` patches, row by
    row, in one run of the image token. Anything else (or a mismatch): ``()``.
    """
    image_processor = getattr(processor, "image_processor", None)
    patch = getattr(image_processor, "patch_size", None)
    merge = getattr(image_processor, "merge_size", None)
    grid = extra.get("image_grid_thw")
    token = _image_token_id(config)
    if grid is None or not (isinstance(patch, int) and isinstance(merge, int)) or token is None:
        return ()
    runs: list[list[int]] = []  # [start, length] of each run of image tokens
    for position, value in enumerate(prompt_ids):
        if value != token:
            continue
        if runs and runs[-1][0] + runs[-1][1] == position:
            runs[-1][1] += 1
        else:
            runs.append([position, 1])
    rows = [tuple(int(value) for value in row) for row in _as_list(grid)]
    if count == 0 or len(runs) != count or len(rows) != count:
        return ()
    found = []
    for index, ((start, length), (t, h, w)) in enumerate(zip(runs, rows)):
        if t != 1 or h % merge or w % merge or length != h * w // (merge * merge):
            return ()
        found.append(ImagePatches(index, start, h // merge, w // merge, (w * patch, h * patch)))
    return tuple(found)


def image_patch_ranges(inputs_extra: dict, count: int) -> Optional[list[tuple[int, int, Any]]]:
    """For Qwen-style inputs: each image's rows of ``pixel_values`` and its grid row.

    ``pixel_values`` holds every image's patches one after the other
    (``t × h × w`` rows each), so one image's share can be sent alone.
    """
    grid = inputs_extra.get("image_grid_thw")
    if grid is None:
        return None
    rows = _as_list(grid)
    if len(rows) != count:
        return None
    ranges, start = [], 0
    for index, row in enumerate(rows):
        t, h, w = (int(value) for value in row)
        ranges.append((start, start + t * h * w, grid[index : index + 1]))
        start += t * h * w
    return ranges


def _count(input_ids: Any, token_id: object) -> int:
    if not isinstance(token_id, int):
        return 0
    return int((input_ids == token_id).sum().item())


def _as_list(array: Any) -> list:
    return array.tolist() if hasattr(array, "tolist") else list(array)


def _image_token_id(config: dict) -> Optional[int]:
    for key in ("image_token_id", "image_token_index"):
        value = config.get(key)
        if isinstance(value, int):
            return value
    return None


def _adds_special_tokens(warm: WarmModel) -> bool:
    from mlx_vlm.utils import should_add_special_tokens

    return bool(should_add_special_tokens(config_dict(warm.config)["model_type"], warm.tokenizer))
