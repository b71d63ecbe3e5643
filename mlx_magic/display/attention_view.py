"""Attention drawn: a strip over the prompt and the answer, and heatmaps on the images.

Each token of the strip is shaded by the weight the position that wrote the
chosen token gave it (the mean over heads, or one head), relative to the
largest; hovering shows its weight and every head's. An image's tokens are one
chip (their summed weight) in the strip, and a heatmap on the picture: each
token is one merged patch of the processor's resized image, mapped back onto
the image sent by scaling (:func:`token_box`), tinted by its weight. Plain HTML
with inline styles and PNGs drawn with Pillow: no script, no plotting library.
"""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

from mlx_magic.display.lens_view import shown
from mlx_magic.images import png_bytes, thumbnail
from mlx_magic.vocabulary.attention import AttentionMap, ImagePatches

if TYPE_CHECKING:
    from IPython.lib.pretty import PrettyPrinter
    from PIL import Image

#: The heatmaps' longest side, in pixels.
HEATMAP_SIDE = 320
#: How opaque the tint of the hottest patch is (others in proportion).
_TINT = 0.7
_TINT_COLOUR = (230, 40, 20)
#: Tokens the text fallback marks with their weight: at least this much.
_MARKED = 0.05


class AttentionView:
    """An :class:`AttentionMap` as a notebook shows it (HTML) and a terminal prints it."""

    def __init__(self, attention: AttentionMap, images: Sequence[Image.Image] = ()):
        self.attention = attention
        self.images = list(images)

    def _repr_html_(self) -> str:
        return attention_html(self.attention, self.images)

    def _repr_pretty_(self, printer: PrettyPrinter, cycle: bool) -> None:
        printer.text(attention_text(self.attention))

    def __repr__(self) -> str:
        return attention_text(self.attention)


def describe(attention: AttentionMap) -> str:
    """``layer 29 of 30 · mean of 9 heads · token 3 ' capital'``: what the map is of."""
    heads = (
        f"mean of {attention.heads} heads" if attention.head is None else f"head {attention.head}"
    )
    return (
        f"layer {attention.layer} of {attention.layers} · {heads} · token {attention.step} "
        f"{attention.written!r}"
    )


def token_box(
    patches: ImagePatches, token: int, size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """The pixels (x0, y0, x1, y1) that token ``token`` of an image stands for, on
    the image as ``size`` (width, height) shows it.

    The token is the merged patch at row ``token // cols``, column ``token %
    cols`` of the processor's resized image (``patches.size``); that image is
    the one sent, scaled on each axis, so the box scales back the same way.
    """
    row, col = divmod(token, patches.cols)
    cell_w, cell_h = patches.size[0] / patches.cols, patches.size[1] / patches.rows
    sx, sy = size[0] / patches.size[0], size[1] / patches.size[1]
    return (col * cell_w * sx, row * cell_h * sy, (col + 1) * cell_w * sx, (row + 1) * cell_h * sy)


def heatmap(
    image: Image.Image,
    attention: AttentionMap,
    index: int = 0,
    max_side: Optional[int] = HEATMAP_SIDE,
) -> Image.Image:
    """``image`` (the one the model saw as ``attention.images[index]``) with each
    of its tokens' pixels tinted red by its weight, the hottest at ``_TINT``.
    ``max_side``: the picture's longest side (``None``: the image's own size)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    patches = attention.images[index]
    picture = image.convert("RGB") if max_side is None else thumbnail(image, max_side)
    picture = picture.convert("RGB")
    weights = [w for line in attention.image_grid(index) for w in line]
    peak = max(weights, default=0.0) or 1.0
    alpha = PILImage.new("L", picture.size, 0)
    draw = ImageDraw.Draw(alpha)
    for token, weight in enumerate(weights):
        x0, y0, x1, y1 = token_box(patches, token, picture.size)
        shade = round(255 * _TINT * max(0.0, weight) / peak)
        # Boxes meet on whole pixels: each covers [x0, x1) × [y0, y1).
        draw.rectangle((round(x0), round(y0), round(x1) - 1, round(y1) - 1), fill=shade)
    tint = PILImage.new("RGB", picture.size, _TINT_COLOUR)
    return PILImage.composite(tint, picture, alpha)


def attention_html(attention: AttentionMap, images: Sequence[Image.Image] = ()) -> str:
    """The strip (every text escaped) and, with the images, their heatmaps."""
    row = attention.row()
    peak = max(row, default=0.0) or 1.0
    spans: list[str] = []
    for position, patches, weight in _pieces(attention):
        if position == attention.prompt_tokens:
            spans.append('<span style="opacity: 0.6"> │ answer: </span>')
        if patches is not None:
            label = f"[image {patches.image + 1} · {patches.tokens} tokens · {weight:.1%}]"
            title = f"image {patches.image + 1}: {weight:.2%} of the weight on its tokens"
            spans.append(_span(label, title, weight / peak, position))
            continue
        heads = ", ".join(f"{weights[position]:.1%}" for weights in attention.weights)
        title = f"{position}: {attention.tokens[position]!r} · {weight:.2%} (heads: {heads})"
        spans.append(_span(_visible(attention.tokens[position]), title, weight / peak, position))
    written = (
        '<span style="outline: 2px solid rgba(230, 40, 20, 0.8); padding: 0 2px">'
        f"{html.escape(_visible(attention.written))}</span>"
    )
    figures = [
        _figure(heatmap(image, attention, index), _image_caption(attention, index))
        for index, image in _seen_images(attention, images)
    ]
    note = (
        f"Attention ({html.escape(attention.model_type)}, {html.escape(describe(attention))}): "
        "where the position that wrote the outlined token looked, over the prompt and the "
        "answer before it; shade: weight, relative to the largest; hover a token for every head."
    )
    pictures = (
        f'<div style="display: flex; gap: 8px; flex-wrap: wrap">{"".join(figures)}</div>'
        if figures
        else ""
    )
    return (
        '<div class="mlx-magic-attention">'
        '<div style="font-family: monospace; font-size: 0.85em; line-height: 1.9; '
        f'white-space: pre-wrap">{"".join(spans)} → {written}</div>{pictures}'
        f'<div style="font-size: 0.8em; opacity: 0.7">{note}</div></div>'
    )


def attention_text(attention: AttentionMap) -> str:
    """The strip as text: tokens with at least 5% of the weight marked «token 12%»,
    each image as one [image N: weight]; then the top positions."""
    parts: list[str] = []
    for position, patches, weight in _pieces(attention):
        if position == attention.prompt_tokens:
            parts.append(" │ answer: ")
        if patches is not None:
            parts.append(f"[image {patches.image + 1}: {weight:.0%}]")
            continue
        token = attention.tokens[position]
        parts.append(f"«{token} {weight:.0%}»" if weight >= _MARKED else token)
    top = "; ".join(
        f"{position} {shown(token, 16)!r} {weight:.1%}"
        for position, token, weight in attention.top(5)
    )
    lines = [
        f"attention · {attention.model_type} · {describe(attention)}",
        "".join(parts) + f" → {attention.written!r}",
        f"most weight: {top}",
    ]
    lines += [_image_caption(attention, index) for index in range(len(attention.images))]
    return "\n".join(lines)


def _pieces(attention: AttentionMap) -> Iterator[tuple[int, Optional[ImagePatches], float]]:
    """The strip in order: each token's position and weight, or, where an
    image's tokens begin, that image and the weight on all of its tokens."""
    row = attention.row()
    runs = {patches.start: patches for patches in attention.images}
    position = 0
    while position < len(row):
        patches = runs.get(position)
        if patches is None:
            yield position, None, row[position]
            position += 1
        else:
            yield position, patches, sum(row[position : position + patches.tokens])
            position += patches.tokens


def _image_caption(attention: AttentionMap, index: int) -> str:
    patches = attention.images[index]
    cells = attention.image_grid(index)
    weight, row, col = max((w, r, c) for r, line in enumerate(cells) for c, w in enumerate(line))
    total = sum(w for line in cells for w in line)
    width, height = patches.size
    return (
        f"image {patches.image + 1}: {total:.1%} of the weight on its {patches.tokens} tokens "
        f"({patches.rows} × {patches.cols} patches of {width}×{height} px); the most on row "
        f"{row + 1}, column {col + 1} ({weight:.1%})"
    )


def _seen_images(
    attention: AttentionMap, images: Sequence[Image.Image]
) -> list[tuple[int, Image.Image]]:
    """(index in ``attention.images``, the picture) for each image a heatmap can be drawn on."""
    return [
        (index, images[patches.image])
        for index, patches in enumerate(attention.images)
        if patches.image < len(images)
    ]


def _span(text: str, title: str, share: float, position: int) -> str:
    alpha = 0.05 + 0.8 * max(0.0, min(1.0, share))
    colour = "color: white; " if alpha > 0.6 else ""
    return (
        f'<span data-position="{position}" title="{html.escape(title, quote=True)}" '
        f'style="background: rgba(230, 40, 20, {alpha:.2f}); {colour}border-radius: 2px">'
        f"{html.escape(text)}</span>"
    )


def _visible(text: str) -> str:
    """A token's text with its newlines shown (and kept) and tabs as signs."""
    return text.replace("\n", "⏎\n").replace("\t", "⇥") or "∅"


def _figure(picture: Image.Image, caption: str) -> str:
    data = base64.b64encode(png_bytes(picture)).decode("ascii")
    return (
        '<figure style="margin: 4px 0">'
        f'<img class="mlx-magic-attention-heatmap" src="data:image/png;base64,{data}" '
        f'width="{picture.width}" height="{picture.height}" alt="{html.escape(caption)}"/>'
        '<figcaption style="font-size: 0.8em; opacity: 0.75; max-width: 40em">'
        f"{html.escape(caption)}</figcaption></figure>"
    )
