"""The drawing board on a vision cell's previews: boxes and points the user
draws, synced to the kernel (an anywidget).

Why anywidget with its own small ESM (``marking.js``, beside this module) and
not jupyter-bbox-widget: that widget (itself an anywidget) installs and runs
here, but draws boxes only, no points, and its 50 KB Svelte bundle brings an
annotation workflow (a class list, Skip and Submit buttons) a preview does not
need. This board is ~120 lines of JavaScript on the same layer: thumbnails,
a canvas over each, a synced list of marks, Undo and Clear.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

from mlx_magic.display.previews import Tile
from mlx_magic.grounding.marks import Mark, marks_from_value


class MarkingBoard(anywidget.AnyWidget):
    """Thumbnails to draw on. ``marks`` is the synced list (dicts:
    ``kind``, ``coordinates``, ``label``, ``image``), in pixels of the images as
    the cell gave them; :attr:`value` reads it as numbered :class:`Mark` values.
    Setting ``marks`` from Python draws them, as the frontend's drawing does."""

    _esm = Path(__file__).with_name("marking.js")
    tiles: traitlets.List[dict] = traitlets.List().tag(sync=True)
    marks: traitlets.List[dict] = traitlets.List().tag(sync=True)
    #: The label the next marks get (the board's text field).
    label = traitlets.Unicode("").tag(sync=True)
    #: The numbers an answer named: drawn thicker, the others grey.
    named = traitlets.List(traitlets.Int()).tag(sync=True)

    @property
    def value(self) -> tuple[Mark, ...]:
        return marks_from_value(self.marks)

    def show_tiles(self, tiles: list[Tile]) -> None:
        """The thumbnails to draw on (grounding drawn, marks not: the board draws them)."""
        self.tiles = [
            {
                "src": tile.url,
                "width": tile.thumb.width,
                "height": tile.thumb.height,
                "image": tile.image,
                "scale": tile.scale,
                "caption": tile.caption,
            }
            for tile in tiles
        ]
