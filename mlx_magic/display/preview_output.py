"""A vision cell's previews as one display output, updated in place: the
costs once known, the boxes of the answer as they complete, the marks.

Where widgets show (a Jupyter kernel with ipywidgets and anywidget), the
output is also a drawing board (:class:`~mlx_magic.display.marking.MarkingBoard`):
the bundle holds the widget's view and, beside it, the same previews as HTML
and a PNG with the marks drawn, which a saved notebook, nbconvert and
frontends without the widget show. Each drawn mark updates that static copy.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from mlx_magic.display.previews import Tile, preview_bundle, preview_tiles

if TYPE_CHECKING:
    from mlx_magic.display.marking import MarkingBoard
    from mlx_magic.grounding import Grounding
    from mlx_magic.grounding.marks import Mark
    from mlx_magic.images import LoadedImage

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def drawing_usable(shell: object) -> bool:
    """Whether previews can be drawn on: a Jupyter kernel with ipywidgets and anywidget."""
    if getattr(shell, "kernel", None) is None:
        return False
    try:
        import anywidget  # noqa: F401  (it brings ipywidgets)
    except ImportError:
        return False
    return True


#: How many of the latest previews keep their whole images (for ``--region @N``
#: without ``-i``); older ones keep their thumbnails only. A board lives as long
#: as the kernel (the widget registry holds it), so a full image each would grow
#: without bound: 36 MB per 12-megapixel photo.
KEEP_IMAGES = 8


class LatestMarks:
    """The previews on which marks were drawn last (one session's): a later
    cell whose own previews have none drawn does not hide them."""

    def __init__(self) -> None:
        self.previews: Optional[PreviewOutput] = None
        self._recent: deque[PreviewOutput] = deque()

    def watch(self, previews: Optional[PreviewOutput]) -> None:
        """Follow the drawing on ``previews`` (where they can be drawn on)."""
        if previews is None:
            return
        self._recent.append(previews)
        while len(self._recent) > KEEP_IMAGES:
            self._release(self._recent.popleft())
        previews.on_drawn(self._drawn)

    def _drawn(self, previews: PreviewOutput) -> None:
        earlier, self.previews = self.previews, previews
        if earlier is not None and earlier is not previews:
            self._release(earlier)

    def _release(self, previews: PreviewOutput) -> None:
        if previews is not self.previews and previews not in self._recent:
            previews.images = ()

    @property
    def marks(self) -> tuple[Mark, ...]:
        return self.previews.shown_marks if self.previews is not None else ()


class PreviewOutput:
    """The previews of one cell's images; ``marks`` are those the cell sent
    (``--marks``): shown numbered, and on the board to draw more.

    The thumbnails are made once; each redraw draws on copies of them.
    ``images`` (the whole images) may be let go of later (:data:`KEEP_IMAGES`).
    """

    def __init__(
        self, images: Sequence[LoadedImage], *, drawable: bool, marks: Sequence[Mark] = ()
    ) -> None:
        self.images = tuple(images)
        self.captions = [loaded.caption for loaded in self.images]
        self._plain = preview_tiles(self.images)
        self.grounding: Optional[Grounding] = None
        self.marks = tuple(marks)
        self.named: tuple[int, ...] = ()
        self.metadata: dict = {}
        self.board: Optional[MarkingBoard] = None
        self._handle: Any = None
        self._callbacks: list[Callable[[PreviewOutput], None]] = []
        if drawable:
            from mlx_magic.display.marking import MarkingBoard

            self.board = MarkingBoard(marks=[mark.as_dict() for mark in marks])
            self.board.observe(self._drawn, names="marks")

    def show(self) -> None:
        from IPython.display import display

        self._handle = display(self.bundle(), raw=True, display_id=True)
        # Once per kernel, now rather than at the first box of a streaming answer.
        from mlx_magic.grounding.drawing import load_annotators

        load_annotators()

    def update(self, metadata: Optional[dict] = None) -> None:
        """Send the previews again (after a change to what they show);
        ``metadata``: more of the output's ``mlx_magic`` metadata (the items as data)."""
        if metadata:
            self.metadata.update(metadata)
        if self._handle is not None:
            bundle = self.bundle()
            saved = {"mlx_magic": self.metadata} if self.metadata else None
            self._handle.update(bundle, raw=True, metadata=saved)

    def name(self, numbers: Sequence[int]) -> None:
        """The marks an answer named stand out, the others turn grey."""
        self.named = tuple(numbers)
        self.metadata["named"] = list(self.named)  # in the saved output, beside the marks
        if self.board is not None:
            self.board.named = list(self.named)
        self.update()

    def on_drawn(self, callback: Callable[[PreviewOutput], None]) -> None:
        """Call ``callback(self)`` whenever marks are drawn (and now, if there are some)."""
        if self.board is not None:
            self._callbacks.append(callback)
        if self.shown_marks:
            callback(self)

    @property
    def shown_marks(self) -> tuple[Mark, ...]:
        return self.board.value if self.board is not None else self.marks

    def bundle(self) -> dict:
        tiles = [self._drawn_tile(tile) for tile in self._plain]
        marks = self.shown_marks
        bundle = preview_bundle(
            (),
            captions=self.captions,
            grounding=self.grounding,
            marks=marks,
            named=self.named,
            tiles=tiles,
        )
        if self.board is not None:
            self.board.show_tiles(tiles)
            bundle[WIDGET_MIME] = {
                "version_major": 2,
                "version_minor": 1,
                "model_id": self.board.model_id,
            }
        if marks:
            self.metadata["marks"] = [mark.as_dict() for mark in marks]
        return bundle

    def _drawn_tile(self, tile: Tile) -> Tile:
        if tile.image is None:
            return tile
        thumb = tile.thumb
        if self.grounding:
            from mlx_magic.grounding import draw_grounding

            thumb = draw_grounding(
                thumb, self.grounding, image_index=tile.image, scale=1 / tile.scale
            )
        return Tile(thumb, self.captions[tile.image], tile.image, tile.scale)

    def _drawn(self, change: Any) -> None:
        # The user drew (or code set ``board.marks``): the static copy follows.
        self.update()
        for callback in self._callbacks:
            callback(self)
