"""What embeddings leave behind and how they are shown.

:class:`MLXEmbedResult` is ``_mlx`` after ``%mlx embed`` / ``%%mlx --embed``:
the items' columns and their vectors (``.vectors``, ``.table``);
:class:`NearestResult` is what ``%mlx nearest`` returns: the closest items,
scored, with thumbnails where they are images; :func:`points_figure` draws
``%mlx plot``'s 2-D map (matplotlib where installed, else an SVG of its own).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

from mlx_magic.display.map_result import rows_html
from mlx_magic.images.encoding import png_bytes, thumbnail

if TYPE_CHECKING:
    from IPython.lib.pretty import PrettyPrinter
    from PIL import Image

    from mlx_magic.vocabulary.embedding import Embeddings

#: The column of a table that holds each row's vector (a numpy array).
VECTOR_COLUMN = "vector"
#: The DataFrame attribute that names the model a table's vectors came from.
MODEL_ATTRIBUTE = "mlx_embedding_model"
#: Longest side of a thumbnail in a table and on the map (pixels).
THUMBNAIL_SIDE = 64


@dataclass
class MLXEmbedResult:
    """The vectors of ``%mlx embed`` / ``%%mlx --embed``, stored in ``_mlx`` (and ``-o NAME``).

    Attributes:
        rows: one dict per item: its columns (a DataFrame's, or ``item``).
        vectors: an N × D float32 numpy array, row i for item i.
        index: the items' labels (a DataFrame's or Series' index, positions).
        items_name: what the items were (a variable, a glob, the cell's lines).
        model: the embedding model's name; ``model_key`` what loads it again.
        embeddings: how they were made (pooling, tokens, batches, time).
        images: each item's image (a small copy) when the items are images.
        seconds: the whole command's wall time.
        points: the 2-D coordinates ``%mlx plot`` drew last (N × 2), if any.
        errors: per row, why it has no vector (its row of ``vectors`` is NaN)
            or ``None``; empty when every item was embedded.
    """

    rows: list
    vectors: Any
    index: list
    items_name: str
    model: str
    model_key: str
    embeddings: Embeddings
    images: tuple = ()
    seconds: float = 0.0
    points: Optional[Any] = field(default=None, repr=False)
    errors: list = field(default_factory=list)

    @property
    def _shown_rows(self) -> list:
        """The rows with an ``error`` column where some item failed (as ``--map``'s table)."""
        if not self.errors:
            return self.rows
        return [{**row, "error": error} for row, error in zip(self.rows, self.errors)]

    @property
    def table(self) -> Any:
        """The items' columns and a ``vector`` column (a numpy array per row), as a
        pandas DataFrame indexed like the items (a list of dicts without pandas)."""
        rows = [
            {**row, VECTOR_COLUMN: vector} for row, vector in zip(self._shown_rows, self.vectors)
        ]
        if self.images:
            for row, image in zip(rows, self.images):
                row["image"] = image
        try:
            import pandas
        except ImportError:
            return rows
        frame = pandas.DataFrame(rows, index=list(self.index))
        frame.attrs[MODEL_ATTRIBUTE] = self.model_key
        return frame

    @property
    def summary(self) -> str:
        """``"4 texts → 4 × 64 vectors · qwen3_embedding (lasttoken, normalised) · …"``."""
        made = self.embeddings
        what = "images" if self.images else "texts"
        parts = [
            f"{len(self.rows)} {what} → {len(self.rows)} × {made.dims} vectors",
            f"{self.model} ({made.model_type}, {made.pooling} pooling"
            + (", normalised)" if made.normalized else ")"),
            f"{made.tokens:,} tokens in {made.batches} forward pass"
            + ("" if made.batches == 1 else "es"),
        ]
        failed = sum(error is not None for error in self.errors)
        if failed:
            parts.append(f"{failed} failed (see error)")
        if made.seconds > 0:
            parts.append(f"{(len(self.rows) - failed) / made.seconds:,.1f} items/s")
        parts.append(f"{self.seconds:.2f} s")
        return " · ".join(parts)

    def __len__(self) -> int:
        return len(self.rows)

    def _repr_pretty_(self, printer: PrettyPrinter, cycle: bool) -> None:
        printer.text(f"{_text_rows(self._shown_rows, self.index)}\n[{self.summary}]")

    def _repr_html_(self) -> str:
        rows = [_with_thumbnail(row, self.images, i) for i, row in enumerate(self._shown_rows)]
        return _table_html(rows, self.index) + footer(self.summary)


@dataclass
class NearestResult:
    """The items most like a query (``%mlx nearest``), most alike first.

    Attributes:
        query: the query as typed (a text, or ``image: SRC``).
        positions: the items' positions in the embedded table.
        scores: their cosine similarity with the query (1: the same direction).
        rows: their columns, with ``rank`` and ``score`` first.
        index: their labels in the table.
        images: their images (for thumbnails) when the items are images.
        note: what was compared with what, and how long it took.
    """

    query: str
    positions: list
    scores: list
    rows: list
    index: list
    images: tuple = ()
    note: str = ""

    @property
    def table(self) -> Any:
        """The rows as a pandas DataFrame (a list of dicts without pandas)."""
        try:
            import pandas
        except ImportError:
            return self.rows
        return pandas.DataFrame(self.rows, index=list(self.index))

    def __len__(self) -> int:
        return len(self.rows)

    def _repr_pretty_(self, printer: PrettyPrinter, cycle: bool) -> None:
        printer.text(f"{_text_rows(self.rows, self.index)}\n[{self.note}]")

    def _repr_html_(self) -> str:
        rows = [_with_thumbnail(row, self.images, i) for i, row in enumerate(self.rows)]
        return _table_html(rows, self.index) + footer(self.note)


def embedding_progress(total: int, model: str) -> Any:
    """tqdm's bar for a long embedding run (its widget in a notebook, text in a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"embedding with {model}", unit="item", leave=False)


def footer(text: str) -> str:
    return (
        '<div class="mlx-magic-footer" style="font-size: 0.85em; opacity: 0.7">'
        f"{html.escape(text)}</div>"
    )


def small_copy(image: Image.Image) -> Image.Image:
    """The thumbnail a table keeps of an item's image."""
    return thumbnail(image, THUMBNAIL_SIDE)


def image_data_uri(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


_THUMBNAIL = "\x00thumbnail"


def _with_thumbnail(row: dict, images: Sequence, position: int) -> dict:
    if not images:
        return row
    return {_THUMBNAIL: images[position], **row}


def _table_html(rows: list, index: list) -> str:
    """rows_html, with a picture column first where the rows have one."""
    if not rows or _THUMBNAIL not in rows[0]:
        return rows_html(rows, index)
    pictures = [row[_THUMBNAIL] for row in rows]
    plain = [{k: v for k, v in row.items() if k != _THUMBNAIL} for row in rows]
    table = rows_html(plain, index)
    # One picture cell after each row's label cell, in order.
    head, _, body = table.partition("<tbody>")
    head = head.replace("<th></th>", "<th></th><th>image</th>", 1)
    out = []
    for picture, part in zip(pictures, body.split("<tr>")[1:]):
        label_end = part.index("</td>") + len("</td>")
        cell = (
            "<td></td>"  # an item whose image failed
            if picture is None
            else f'<td><img src="{image_data_uri(small_copy(picture))}" alt=""></td>'
        )
        out.append(part[:label_end] + cell + part[label_end:])
    return head + "<tbody><tr>" + "<tr>".join(out)


def _text_rows(rows: list, index: list) -> str:
    try:
        import pandas

        return str(pandas.DataFrame(rows, index=list(index)))
    except ImportError:
        return "\n".join(str(row) for row in rows)


def points_figure(
    points: Any,
    *,
    title: str,
    colours: Optional[list] = None,
    colour_name: str = "",
    labels: Optional[list] = None,
    images: Sequence = (),
) -> Any:
    """The 2-D map as a matplotlib Figure (``None`` without matplotlib): one dot
    per item, coloured by ``colours`` (a legend for categories, a colour bar for
    numbers), each item's thumbnail in place of its dot where ``images`` are
    given, and short labels beside the dots of a small text map."""
    try:
        # A Figure of its own, not pyplot's: the user's backend and figures stay as they are.
        from matplotlib.figure import Figure
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    except ImportError:
        return None
    import numpy as np

    figure = Figure(figsize=(7, 5.5), layout="constrained")
    axes = figure.subplots()
    x, y = points[:, 0], points[:, 1]
    if colours is not None and all(_is_number(c) for c in colours):
        dots = axes.scatter(x, y, c=[float(c) for c in colours], cmap="viridis", s=28)
        figure.colorbar(dots, ax=axes, label=colour_name)
    elif colours is not None:
        for value in dict.fromkeys(str(c) for c in colours):
            chosen = np.array([str(c) == value for c in colours])
            axes.scatter(x[chosen], y[chosen], s=28, label=value)
        axes.legend(title=colour_name, fontsize="small", loc="best")
    else:
        axes.scatter(x, y, s=28)
    for position, image in enumerate(images[:MAX_THUMBNAILS_ON_MAP]):
        picture = OffsetImage(np.asarray(thumbnail(image, 40)), zoom=1.0)
        axes.add_artist(AnnotationBbox(picture, (x[position], y[position]), frameon=False))
    if labels is not None and len(labels) <= MAX_LABELS_ON_MAP:
        for position, label in enumerate(labels):
            axes.annotate(_short(str(label)), (x[position], y[position]), fontsize=8)
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    return figure


#: Thumbnails drawn on a map (more would hide each other), and text labels.
MAX_THUMBNAILS_ON_MAP = 300
MAX_LABELS_ON_MAP = 40


def figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    return buffer.getvalue()


def points_svg(points: Any, *, title: str, labels: Optional[list] = None) -> str:
    """The 2-D map as an SVG of its own (no matplotlib): a dot per item, its
    label on hover."""
    width, height, pad = 480, 360, 16
    x, y = points[:, 0], points[:, 1]
    spread_x = float(x.max() - x.min()) or 1.0
    spread_y = float(y.max() - y.min()) or 1.0
    dots = []
    for position in range(len(points)):
        cx = pad + (float(x[position] - x.min()) / spread_x) * (width - 2 * pad)
        cy = height - pad - (float(y[position] - y.min()) / spread_y) * (height - 2 * pad)
        tip = html.escape(str(labels[position])) if labels is not None else str(position)
        dots.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="#1f77b4"><title>{tip}</title>'
            "</circle>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20}">'
        f'<text x="{pad}" y="14" font-size="13">{html.escape(title)}</text>'
        f'<g transform="translate(0,20)">{"".join(dots)}</g></svg>'
    )


def _is_number(value: object) -> bool:
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
