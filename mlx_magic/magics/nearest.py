"""``%mlx nearest QUERY TABLE [-k K]`` and ``%mlx plot TABLE [--by COLUMN]``.

Both read a table of vectors: what ``%mlx embed`` / ``%%mlx --embed`` left in
``_mlx`` (or ``-o NAME``), or a DataFrame with a ``vector`` column (its
``_mlx.table``). ``nearest`` embeds the query (a text, or an image with
``-i SRC``) with the table's model and ranks the rows by cosine similarity;
``plot`` draws the rows in two dimensions: PCA by default (numpy's SVD, no
new dependency), UMAP with ``--umap`` where ``umap-learn`` is installed.

Why ``plot`` and not ``map``: ``--map`` already means "run over these items";
``%mlx map`` would read as running something, when this draws a picture.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from IPython.core.magic_arguments import argument, magic_arguments

from mlx_magic.display.embedding_view import (
    MODEL_ATTRIBUTE,
    VECTOR_COLUMN,
    MLXEmbedResult,
    NearestResult,
    figure_png,
    points_figure,
    points_svg,
    small_copy,
)
from mlx_magic.display.views import view_for
from mlx_magic.errors import UserError
from mlx_magic.magics.embedding import embed_on_runtime, parse_words, resolve_embedder
from mlx_magic.magics.prepare import load_cell_images
from mlx_magic.vocabulary.embedding import EmbedRequest

if TYPE_CHECKING:
    import numpy as np

    from mlx_magic.magics.session import MagicsHost

#: Items ``nearest`` lists unless ``-k`` says otherwise.
DEFAULT_K = 5


@dataclass
class VectorTable:
    """A table of vectors as ``nearest`` and ``plot`` read it."""

    name: str
    vectors: Any
    rows: list
    index: list
    images: tuple
    model: Optional[str]
    kept: Optional[MLXEmbedResult]
    #: Which rows of the table these are: its rows that have a vector (an
    #: item that failed to embed has a NaN one); ``None``: all of them.
    embedded: Optional[Any] = None

    def without_failed(self) -> VectorTable:
        """The rows that have a vector: only they can be compared or drawn."""
        import numpy as np

        keep = ~np.isnan(self.vectors).any(axis=1)
        if keep.all():
            return self
        chosen = [int(i) for i in np.flatnonzero(keep)]
        return VectorTable(
            self.name,
            self.vectors[keep],
            [self.rows[i] for i in chosen],
            [self.index[i] for i in chosen],
            tuple(self.images[i] for i in chosen) if self.images else (),
            self.model,
            self.kept,
            keep,
        )


@magic_arguments("%mlx nearest")
@argument("names", nargs="*", help="QUERY TABLE, or TABLE with -i.")
@argument("-k", type=int, default=DEFAULT_K, help="How many items (5).")
@argument("-i", "--image", help="An image as the query.")
@argument("-m", "--model", help="The embedding model (default: the table's).")
def _nearest_flags(line: str) -> None:
    """``%mlx nearest QUERY TABLE [-k K] [-m MODEL]`` / ``%mlx nearest -i SRC TABLE``."""


@magic_arguments("%mlx plot")
@argument("names", nargs="*", help="TABLE")
@argument("--by", help="Colour the points by this column.")
@argument("--umap", action="store_true", help="UMAP instead of PCA (umap-learn).")
def _plot_flags(line: str) -> None:
    """``%mlx plot TABLE [--by COLUMN] [--umap]``."""


def command_nearest(magics: MagicsHost, words: list[str]) -> NearestResult:
    """``%mlx nearest QUERY TABLE [-k K]``: the K items of TABLE most like QUERY.

    QUERY is a text (quote it); ``-i SRC`` makes an image the query
    (``%mlx nearest -i cat.jpg photos``). It is embedded with the model that
    made TABLE's vectors (``-m`` for another), then every row is scored by
    cosine similarity; the table that comes back (``hits = %mlx nearest …``)
    has ``rank`` and ``score`` first, thumbnails where the items are images.
    """
    usage = "Usage: %mlx nearest QUERY TABLE [-k K] [-m MODEL] (or -i SRC TABLE)"
    args = parse_words(_nearest_flags, words, usage)
    wanted = 1 if args.image else 2
    if len(args.names) != wanted:
        raise UserError(usage)
    if args.k < 1:
        raise UserError(
            f"%mlx nearest -k K lists the K nearest items: K is at least 1, not {args.k}"
        )
    session = magics.session
    table = vector_table(magics, args.names[-1])
    spec = resolve_embedder(session, args.model or table.model)
    started = time.perf_counter()
    if args.image:
        loaded = load_cell_images(session, (args.image,), None)
        asked = EmbedRequest(spec, images=(loaded[0].image,))
        query = f"image: {args.image}"
    else:
        asked = EmbedRequest(spec, texts=(args.names[0],))
        query = args.names[0]
    import numpy as np

    made = embed_on_runtime(session, asked)
    if made.dims != table.vectors.shape[1]:
        raise UserError(
            f"The query's vectors are {made.dims} wide and {table.name}'s "
            f"{table.vectors.shape[1]}: embed both with one model (-m)"
        )
    scores = cosine_scores(table.vectors, made.vectors[0])
    chosen = nearest_positions(scores, args.k)
    rows = [
        {"rank": rank, "score": round(float(scores[i]), 4), **table.rows[i]}
        for rank, i in enumerate(chosen, start=1)
    ]
    took = time.perf_counter() - started
    note = (
        f"the {len(chosen)} of {len(scores)} items of {table.name} most like {query!r} · "
        f"cosine similarity · {spec.name} · {took:.2f} s"
    )
    # Positions in the whole table (its failed rows were left out here).
    whole = [int(i) for i in np.flatnonzero(table.embedded)] if table.embedded is not None else None
    return NearestResult(
        query=query,
        positions=[whole[i] for i in chosen] if whole is not None else chosen,
        scores=[float(scores[i]) for i in chosen],
        rows=rows,
        index=[table.index[i] for i in chosen],
        images=tuple(table.images[i] for i in chosen) if table.images else (),
        note=note,
    )


def command_plot(magics: MagicsHost, words: list[str]) -> None:
    """``%mlx plot TABLE [--by COLUMN] [--umap]``: the items of TABLE in two dimensions.

    Each item is a dot where its vector falls on the plane of the vectors' two
    main directions (PCA), or where UMAP puts it (``--umap``; ``pip install
    umap-learn``); ``--by COLUMN`` colours the dots by a column; image items
    show their thumbnails. The coordinates are kept in ``TABLE.points``.
    """
    args = parse_words(_plot_flags, words, "Usage: %mlx plot TABLE [--by COLUMN] [--umap]")
    if len(args.names) != 1:
        raise UserError("Usage: %mlx plot TABLE [--by COLUMN] [--umap]")
    table = vector_table(magics, args.names[0])
    colours = None
    if args.by is not None:
        known = list(table.rows[0]) if table.rows else []
        if args.by not in known:
            raise UserError(f"{table.name} has no column {args.by!r} (it has {', '.join(known)})")
        colours = [row[args.by] for row in table.rows]
    how = "UMAP" if args.umap else "PCA"
    points = umap_2d(table.vectors) if args.umap else pca_2d(table.vectors)
    if table.kept is not None:
        import numpy as np

        if table.embedded is not None:  # a failed item's row: no point
            drawn = np.full((len(table.embedded), 2), np.nan, dtype=np.float32)
            drawn[table.embedded] = points
            points_kept = drawn
        else:
            points_kept = points
        table.kept.points = points_kept
    title = f"{table.name}: {len(points)} items by {how}" + (
        f", coloured by {args.by}" if args.by else ""
    )
    labels = [_label(row) for row in table.rows]
    figure = points_figure(
        points,
        title=title,
        colours=colours,
        colour_name=args.by or "",
        labels=labels,
        images=table.images,
    )
    view = view_for(magics.session.shell)
    if getattr(magics.session.shell, "kernel", None) is None:
        view.show_bundle({"text/plain": f"[{title}: a notebook shows the picture]"})
    elif figure is not None:
        import base64

        png = base64.b64encode(figure_png(figure)).decode("ascii")
        view.show_bundle({"text/plain": f"[{title}]", "image/png": png})
    else:
        view.show_bundle(
            {
                "text/plain": f"[{title}]",
                "image/svg+xml": points_svg(points, title=title, labels=labels),
            }
        )


def vector_table(magics: MagicsHost, name: str) -> VectorTable:
    """The table of vectors the variable ``name`` holds.

    Raises:
        UserError: no such variable, or one with no vectors (one line each).
    """
    namespace = magics.session.shell.user_ns
    if name not in namespace:
        raise UserError(
            f"No table named {name!r}: embed first (%mlx embed ITEMS -o {name}), or name a "
            "DataFrame with a vector column"
        )
    value = namespace[name]
    if isinstance(value, MLXEmbedResult):
        return VectorTable(
            name, value.vectors, value.rows, value.index, value.images, value.model_key, value
        ).without_failed()
    columns = getattr(value, "columns", None)
    if columns is not None and VECTOR_COLUMN in list(columns) and len(value):
        import numpy as np

        vectors = np.stack([np.asarray(v, dtype=np.float32) for v in value[VECTOR_COLUMN]])
        rest = value.drop(columns=[c for c in (VECTOR_COLUMN, "image") if c in columns])
        images = tuple(value["image"]) if "image" in columns else ()
        images = tuple(None if i is None else small_copy(i) for i in images) if images else ()
        model = getattr(value, "attrs", {}).get(MODEL_ATTRIBUTE)
        return VectorTable(
            name, vectors, rest.to_dict("records"), list(value.index), images, model, None
        ).without_failed()
    raise UserError(
        f"{name} has no vectors to compare: embed it first (%mlx embed {name} -o NAME, or "
        "%%mlx --embed --map), then use that table"
    )


def cosine_scores(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The cosine similarity of each row of ``vectors`` with ``query``."""
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(query)
    return (vectors @ query) / np.maximum(norms, 1e-12)


def nearest_positions(scores: np.ndarray, k: int) -> list[int]:
    """The positions of the ``k`` highest scores, highest first (ties: table order)."""
    import numpy as np

    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The rows projected on their two main directions (PCA by SVD), N × 2."""
    import numpy as np

    centred = vectors - vectors.mean(axis=0)
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2), dtype=np.float32)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    points = centred @ directions[:2].T
    if points.shape[1] < 2:  # one-dimensional vectors
        points = np.hstack([points, np.zeros((len(points), 1))])
    return points


def umap_2d(vectors: np.ndarray) -> np.ndarray:
    """The rows placed by UMAP in two dimensions.

    Raises:
        UserError: umap-learn is not installed, or too few rows (one line).
    """
    try:
        import umap
    except ImportError:
        raise UserError(
            "--umap needs umap-learn (pip install umap-learn); without it, PCA"
        ) from None
    if len(vectors) < 4:
        raise UserError(f"--umap needs at least 4 items, not {len(vectors)}: leave it out (PCA)")
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(vectors) - 1), random_state=0)
    return reducer.fit_transform(vectors)


def _label(row: dict) -> str:
    for value in row.values():
        if isinstance(value, str):
            return value
    return ""
