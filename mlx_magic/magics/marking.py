"""Marks in a vision cell: ``--region @N`` and ``--marks`` (the marks drawn on
a preview, or ``@boxes``, the latest answer's boxes), and the marks the answer
names (``_mlx.refs``).

The latest marks are those drawn last, on any cell's preview
(:class:`~mlx_magic.display.preview_output.LatestMarks`, on the session).
They are read when a cell is prepared, so drawing may go on while other
cells run.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, Any, Optional, Sequence

from mlx_magic.errors import UserError
from mlx_magic.grounding.marks import Mark, Marks, find_refs, marks_from_boxes
from mlx_magic.images import LoadedImage
from mlx_magic.images.regions import cut_region

if TYPE_CHECKING:
    from mlx_magic.display.result import MLXResult
    from mlx_magic.display.views import StreamView
    from mlx_magic.magics.options import CellOptions, PreparedCell
    from mlx_magic.magics.session import MagicsHost, Session


def uses_marks(options: CellOptions) -> bool:
    """Whether the cell takes its images from marks (so ``-i`` may be left out)."""
    return options.region_mark is not None or options.marks is not None


def marked_images(
    session: Session, options: CellOptions, load: Any
) -> tuple[list[LoadedImage], list[LoadedImage], tuple[Mark, ...]]:
    """The images to send, the images to preview, and the marks sent.

    ``load(sources, region)`` loads ``-i`` (the cell's usual path). Without
    marks the two lists are the same; ``--marks`` sends the images with the
    marks numbered on them and previews the plain ones (the preview draws the
    marks itself, so that the ones the answer names can stand out).
    """
    if not uses_marks(options):
        images = load(options.images, options.region)
        return images, images, ()
    if options.marks is not None and (options.region or options.region_mark is not None):
        raise UserError("--marks numbers marks on whole images: leave out --region")
    if options.marks == "@boxes":
        marks, own = _answer_boxes(session)
    else:
        marks, own = _drawn_marks(session, options)
    if options.region_mark is not None:
        mark = _numbered(marks, options.region_mark)
        if mark.kind != "box":
            raise UserError(
                f"--region @{mark.number}: mark {mark.number} is a point; a region needs a box "
                "mark (drag one on the preview)"
            )
        # Of each -i image, or else of the image the mark was drawn on.
        images = (
            load(options.images, mark.box)
            if options.images
            else [cut_region(own[mark.image], mark.box)]
        )
        return images, images, ()
    images = load(options.images, None) if options.images else list(own)
    for mark in marks:
        if mark.image >= len(images):
            raise UserError(
                f"--marks: mark {mark.number} is on image {mark.image + 1}, but the cell sends "
                f"{len(images)} image{'' if len(images) == 1 else 's'}: send that image too (-i)"
            )
    return [_with_marks_drawn(loaded, marks, i) for i, loaded in enumerate(images)], images, marks


def command_marks(magics: MagicsHost, names: list[str]) -> Optional[Marks]:
    """``%mlx marks``: the marks drawn last, on any preview (those ``@N`` and
    ``--marks`` use), one line each; returns them (``marks = %mlx marks``),
    or says in one line how to draw some."""
    if names:
        raise UserError(f"%mlx marks takes no argument, not {' '.join(names)!r}")
    session = magics.session
    marks = Marks(session.latest_marks.marks)
    if not marks:
        print(f"No marks drawn yet; {_how_to_draw(session)}")
        return None
    return marks


def show_previews(session: Session, view: StreamView, cell: PreparedCell) -> None:
    """The cell's previews (with the marks it sends), their drawing followed."""
    view.show_images(cell.images, marks=cell.marks)
    session.latest_marks.watch(view.previews_output())


def name_marks(view: StreamView, cell: PreparedCell, result: MLXResult) -> None:
    """After the answer: where it names the cell's marks (``_mlx.refs``), which
    stand out on the previews."""
    result.sent_marks = tuple(cell.marks)
    result.previews = view.previews_output()
    if not cell.marks:
        return
    result.refs = list(find_refs(result.text, cell.marks))
    view.name_marks(sorted({ref.number for ref in result.refs}))


def _drawn_marks(
    session: Session, options: CellOptions
) -> tuple[tuple[Mark, ...], tuple[LoadedImage, ...]]:
    latest = session.latest_marks.previews
    marks = latest.shown_marks if latest is not None else ()
    if not marks:
        flag = "--marks" if options.marks else f"--region @{options.region_mark}"
        raise UserError(f"{flag}: no marks drawn yet; {_how_to_draw(session)}")
    assert latest is not None  # it has marks (and keeps its images: LatestMarks)
    return marks, latest.images


def _how_to_draw(session: Session) -> str:
    from mlx_magic.display.preview_output import drawing_usable

    if drawing_usable(session.shell):
        return "drag a box or click a point on a %%mlx_vision preview first"
    if getattr(session.shell, "kernel", None) is not None:
        return (
            "drawing on previews needs anywidget (pip install 'mlx_magic[marks]'); "
            "or use --region X1,Y1,X2,Y2 or --marks @boxes"
        )
    return (
        "drawing marks needs a notebook frontend (JupyterLab, Notebook 7, VS Code) with "
        "anywidget; here use --region X1,Y1,X2,Y2 or --marks @boxes"
    )


def _answer_boxes(session: Session) -> tuple[tuple[Mark, ...], tuple[LoadedImage, ...]]:
    from mlx_magic.images.decoding import finish

    boxes = list(getattr(session.shell.user_ns.get("_mlx"), "boxes", None) or ())
    if not boxes:
        raise UserError(
            "--marks @boxes: the latest answer has no boxes (_mlx.boxes is empty): ask a "
            "vision model to find things first"
        )
    marks = marks_from_boxes(boxes)
    # The images the boxes lie on, as the cell gave them (each box keeps its own).
    own: dict[int, LoadedImage] = {}
    for box in boxes:
        if box.source_image is not None and box.image not in own:
            own[box.image] = finish(f"image {box.image + 1} of _mlx", box.source_image, 10**9)
    # The first images, as far as boxes lie on each (a later one alone cannot be sent as
    # the answer's image N: the check in marked_images then asks for -i).
    images: list[LoadedImage] = []
    while len(images) in own:
        images.append(own[len(images)])
    return marks, tuple(images)


def _numbered(marks: Sequence[Mark], number: int) -> Mark:
    if not 1 <= number <= len(marks):
        count = f"{len(marks)} mark{'' if len(marks) == 1 else 's'}"
        raise UserError(f"@{number}: there are {count} (1–{len(marks)}); _mlx.marks lists them")
    return marks[number - 1]


def _with_marks_drawn(loaded: LoadedImage, marks: Sequence[Mark], index: int) -> LoadedImage:
    from mlx_magic.grounding.mark_drawing import draw_marks

    drawn = [mark for mark in marks if mark.image == index]
    if not drawn:
        return loaded
    key = hashlib.sha256(
        f"{loaded.cache_key}:marks{[mark.as_dict() for mark in drawn]}".encode()
    ).hexdigest()
    return dataclasses.replace(
        loaded, image=draw_marks(loaded.image, drawn, image_index=index), cache_key=key
    )
