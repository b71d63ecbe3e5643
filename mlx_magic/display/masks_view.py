"""Masks drawn on the previews, counted, and kept: what ``%%mlx_vision --segment`` shows.

supervision's annotators draw them (the field's drawing library, as mlx-vlm's
own SAM 3 command line uses): each instance a translucent colour
(``MaskAnnotator``), its outline (``PolygonAnnotator``) and a label with its
score (``LabelAnnotator``), on a thumbnail at the thumbnail's own resolution,
so a 12-megapixel photo costs a 256-pixel drawing. The bundle has the same
three forms as the previews (HTML, a PNG sheet for saved notebooks, text), and
its output metadata carries every mask run-length encoded.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

from mlx_magic.display.previews import PREVIEW_MAX_SIDE, contact_sheet
from mlx_magic.display.result import footer_html
from mlx_magic.grounding.drawing import palettes
from mlx_magic.images import png_bytes, thumbnail
from mlx_magic.vocabulary.masks import BoxPrompt, Mask

if TYPE_CHECKING:
    from IPython.lib.pretty import PrettyPrinter
    from PIL import Image

    from mlx_magic.grounding import Box

#: How much of each mask's colour covers the image.
OPACITY = 0.45
#: The side of a video frame's picture in the strip.
STRIP_SIDE = 160


@dataclass
class Segmented:
    """What one ``--segment`` cell found (``_mlx``): ``masks``, their count, the JSON.

    Attributes:
        masks: every instance, image by image, best first.
        prompts: the text prompts (each a label).
        model: the segmenter's name.
        took_s: how long the runtime took (loading included on first use).
        images: the images as given (the masks' pixels are theirs), or a video's frames.
        unmatched: box prompts no mask covered (``--segment @boxes``).
        timestamps: the frames' times in the video (s), when tracked through one.
        stopped: why the masks end early ("stopped after image 2 of 5": an
            interrupt), else empty.
    """

    masks: list[Mask]
    prompts: tuple[str, ...]
    model: str
    took_s: float
    images: tuple[Image.Image, ...] = ()
    unmatched: tuple[BoxPrompt, ...] = ()
    timestamps: tuple[float, ...] = ()
    stopped: str = ""
    footer: str = field(init=False, default="")

    def __post_init__(self) -> None:
        counted = count_line(self.masks)
        if self.timestamps:
            counted += f" tracked through {len(self.timestamps)} frames"
        self.footer = f"{counted} · {self.model} · {self.took_s:.2f} s"
        if self.unmatched:
            self.footer += (
                f" · {len(self.unmatched)} box{'es' * (len(self.unmatched) > 1)} unmatched"
            )
        if self.stopped:
            self.footer += f" · {self.stopped}"

    @property
    def boxes(self) -> list[Box]:
        """The masks' boxes as grounding boxes: ``_mlx.boxes[0].crop()``, or the
        next ``--segment @boxes``."""
        from mlx_magic.grounding import Box

        return [
            Box(
                mask.label,
                *mask.box,
                image=mask.image,
                format="pixels",
                source_image=self.images[mask.image] if mask.image < len(self.images) else None,
            )
            for mask in self.masks
        ]

    @property
    def data(self) -> dict[str, Any]:
        """The JSON of ``-f json`` and of the saved output's metadata: every mask
        with its RLE (COCO's ``{"size", "counts"}``)."""
        return {
            "prompts": list(self.prompts),
            "model": self.model,
            "masks": [mask.as_dict() for mask in self.masks],
        }

    def _repr_pretty_(self, printer: PrettyPrinter, cycle: bool) -> None:
        printer.text(f"[{self.footer}]")


def count_line(masks: Sequence[Mask]) -> str:
    """``"7 cars · 2 cups"``: the masks counted by label, in order of first
    appearance; through a video, the objects (track ids), not their masks."""
    counts: dict[str, set] = {}
    for index, mask in enumerate(masks):
        counts.setdefault(mask.label, set()).add(index if mask.track is None else mask.track)
    if not counts:
        return "no masks"
    return " · ".join(
        f"{len(ones)} {_plural(label) if len(ones) > 1 else label}"
        for label, ones in counts.items()
    )


def _plural(label: str) -> str:
    # A prompt is often plural already ("cups"): kept, but "glass" and "bus" take "es".
    if label.endswith("s") and not label.endswith(("ss", "us", "is")):
        return label
    if label.endswith(("s", "x", "z", "ch", "sh")):
        return f"{label}es"
    if label.endswith("y") and label[-2:-1] not in tuple("aeiou"):
        return f"{label[:-1]}ies"
    return f"{label}s"


def draw_masks(image: Image.Image, masks: Sequence[Mask], max_side: int) -> Image.Image:
    """A thumbnail of ``image`` with ``masks`` (all of this image) drawn on it:
    colour, outline and label each, an instance a colour."""
    import numpy as np

    thumb = thumbnail(image, max_side).convert("RGB")
    if not masks:
        return thumb
    import supervision

    scale_x, scale_y = thumb.width / image.width, thumb.height / image.height
    # Nearest pixels picked by index: a 12-megapixel mask costs ~1 ms, not PIL's ~60.
    rows = (np.arange(thumb.height) * image.height // thumb.height)[:, None]
    columns = (np.arange(thumb.width) * image.width // thumb.width)[None, :]
    small = [mask.mask[rows, columns] for mask in masks]
    detections = supervision.Detections(
        xyxy=np.array(
            [
                [m.box[0] * scale_x, m.box[1] * scale_y, m.box[2] * scale_x, m.box[3] * scale_y]
                for m in masks
            ],
            dtype=np.float32,
        ),
        mask=np.stack(small).astype(bool),
        confidence=np.array([m.score for m in masks], dtype=np.float32),
        # Through a video an object keeps its colour: coloured by track id.
        class_id=np.array([i if m.track is None else m.track for i, m in enumerate(masks)]),
    )
    tracked = any(m.track is not None for m in masks)
    lookup = supervision.ColorLookup.CLASS if tracked else supervision.ColorLookup.INDEX
    labels = [
        f"{m.label} #{m.track}" if m.track is not None else f"{m.label} {m.score:.2f}"
        for m in masks
    ]
    # The boxes' and marks' colours (grounding.drawing): one style for all that is drawn.
    fills, inks = palettes(dimmed=False)
    drawn = supervision.MaskAnnotator(color=fills, opacity=OPACITY, color_lookup=lookup).annotate(
        thumb, detections
    )
    drawn = supervision.PolygonAnnotator(color=fills, thickness=2, color_lookup=lookup).annotate(
        drawn, detections
    )
    return supervision.LabelAnnotator(
        color=fills,
        text_color=inks,
        color_lookup=lookup,
        text_scale=0.35,
        text_padding=2,
        smart_position=True,
    ).annotate(drawn, detections, labels=labels)


def masks_bundle(
    pictures: Sequence[tuple[Image.Image, str]],
    masks: Sequence[Mask],
    footer: str,
    max_side: int = PREVIEW_MAX_SIDE,
    kind: str = "image",
    drawn: Optional[dict[int, Image.Image]] = None,
) -> dict:
    """The previews (each picture with its caption) with their masks drawn,
    and the footer (``kind``: what a picture is called in the text form).
    ``drawn`` keeps each picture's drawing by index: one drawn before is reused."""
    drawn = {} if drawn is None else drawn
    tiles = []
    for index, (picture, caption) in enumerate(pictures):
        if index not in drawn:
            mine = [mask for mask in masks if mask.image == index]
            drawn[index] = draw_masks(picture, mine, max_side)
        tiles.append((drawn[index], caption))
    figures = []
    for thumb, caption in tiles:
        data = base64.b64encode(png_bytes(thumb)).decode("ascii")
        figures.append(
            '<figure style="margin: 0; text-align: center">'
            f'<img class="mlx-magic-masks" src="data:image/png;base64,{data}" '
            f'width="{thumb.width}" height="{thumb.height}" alt="{html.escape(caption)}"/>'
            '<figcaption style="font-size: 0.8em; opacity: 0.75">'
            f"{html.escape(caption)}</figcaption></figure>"
        )
    lines = text_lines(pictures, masks, kind, range(len(pictures)))
    bundle = {
        "text/html": '<div class="mlx-magic-previews" style="display: flex; gap: 8px; '
        f'flex-wrap: wrap; align-items: flex-end">{"".join(figures)}</div>'
        f"{footer_html(footer)}",
        "text/plain": "\n".join([*lines, f"[{footer}]"]),
    }
    if tiles:
        sheet = contact_sheet([thumb for thumb, _ in tiles], 8)
        bundle["image/png"] = base64.b64encode(png_bytes(sheet)).decode("ascii")
    return bundle


def text_lines(
    pictures: Sequence[tuple[Image.Image, str]], masks: Sequence[Mask], kind: str, which: range
) -> list[str]:
    """The pictures ``which`` (by index) as text: each its caption line, then its masks'."""
    lines = []
    for index in which:
        lines.append(f"[{kind} {index + 1}: {pictures[index][1]}]")
        lines += [mask_line(mask) for mask in masks if mask.image == index]
    return lines


def mask_line(mask: Mask) -> str:
    """``"car 0.91 · (12, 40)–(220, 180) · 21,304 px · image 1"``: a mask as a
    terminal shows it (``car #2 …`` through a video)."""
    x1, y1, x2, y2 = (round(value) for value in mask.box)
    name, where = mask.label, "image"
    if mask.track is not None:
        name, where = f"{mask.label} #{mask.track}", "frame"
    return (
        f"{name} {mask.score:.2f} · ({x1}, {y1})–({x2}, {y2}) · {mask.area:,} px · "
        f"{where} {mask.image + 1}"
    )


class MasksDisplay:
    """The pictures, shown at once with a note while the segmenter runs (and
    loads), each redrawn with its masks as soon as they are found
    (:meth:`show`), then the footer that counts them all (:meth:`finish`).

    In a notebook one display output, updated in place; the finished one
    carries every mask, run-length encoded, in its metadata. In a terminal,
    text lines: each picture's as it is done, then the footer.
    """

    def __init__(
        self,
        shell: object,
        pictures: Sequence[tuple[Image.Image, str]],
        note: str,
        video: bool = False,
    ) -> None:
        self._pictures = list(pictures)
        self._side = STRIP_SIDE if video else PREVIEW_MAX_SIDE
        self._kind = "frame" if video else "image"
        self._handle: Any = None
        # Each picture's drawing, kept once its masks are in; and the pictures printed.
        self._drawn: dict[int, Image.Image] = {}
        self._plain: dict[int, Image.Image] = {}
        self._printed = 0
        if getattr(shell, "kernel", None) is None:
            print(f"[{note}]", flush=True)
            return
        from IPython.display import display

        bundle = masks_bundle(self._pictures, [], note, self._side, self._kind, self._plain)
        self._handle = display(bundle, raw=True, display_id=True)

    def show(
        self,
        masks: Sequence[Mask],
        done: int,
        note: str,
        pictures: Optional[Sequence[tuple[Image.Image, str]]] = None,
    ) -> None:
        """The first ``done`` pictures are segmented (``masks``, theirs): draw
        them now, the others still plain, with ``note`` (how many are done);
        ``pictures``: a video's frames, once read (the same ones each time)."""
        if pictures is not None:
            self._pictures = list(pictures)
        if self._handle is None:
            lines = text_lines(self._pictures, masks, self._kind, range(self._printed, done))
            self._printed = done
            print("\n".join(lines), flush=True)
            return
        tiles = {}
        for index, (picture, _) in enumerate(self._pictures):
            # Each drawn once: with its masks once done, else plain (drawn again when done).
            kept = self._drawn if index < done else self._plain
            if index not in kept:
                mine = [mask for mask in masks if mask.image == index] if index < done else []
                kept[index] = draw_masks(picture, mine, self._side)
            tiles[index] = kept[index]
        bundle = masks_bundle(self._pictures, masks, note, self._side, self._kind, tiles)
        self._handle.update(bundle, raw=True)

    def finish(
        self,
        result: Segmented,
        pictures: Optional[Sequence[tuple[Image.Image, str]]] = None,
        as_json: bool = False,
    ) -> dict:
        """Draw ``result``'s masks (on ``pictures``: a video's frames, once read),
        print the JSON for ``-f json``; returns the output's metadata."""
        if pictures is not None:
            self._pictures = list(pictures)
        metadata = {"mlx_magic": {"masks": result.data["masks"]}}
        if self._handle is None:
            left = range(self._printed, len(self._pictures))
            lines = text_lines(self._pictures, result.masks, self._kind, left)
            print("\n".join([*lines, f"[{result.footer}]"]))
        else:
            bundle = masks_bundle(
                self._pictures, result.masks, result.footer, self._side, self._kind, self._drawn
            )
            self._handle.update(bundle, raw=True, metadata=metadata)
        if as_json:
            import json

            print(json.dumps(result.data, indent=1))
        return metadata

    def withdraw(self) -> None:
        """The segmenter failed or was interrupted: the note goes (the error says why)."""
        if self._handle is not None:
            self._handle.update({"text/plain": ""}, raw=True)
