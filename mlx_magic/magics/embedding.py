"""Embeddings in a notebook: ``%mlx embed ITEMS`` and ``%%mlx --embed``.

Texts (a list, a Series, a DataFrame column, the cell's lines, or ``--map``
items filled into the cell) or images (``-i {item}``, a glob) become vectors of
an embedding model, batched, on the runtime (``Runtime.embed``): one row per
item in ``_mlx`` (an :class:`~mlx_magic.display.embedding_view.MLXEmbedResult`:
``_mlx.vectors``, ``_mlx.table`` with a ``vector`` column). ``%mlx nearest``
and ``%mlx plot`` (:mod:`mlx_magic.magics.nearest`) read them.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional, Union

from IPython.core.magic_arguments import argument, magic_arguments

from mlx_magic.display.embedding_view import MLXEmbedResult, embedding_progress, small_copy
from mlx_magic.display.views import view_for
from mlx_magic.errors import UserError
from mlx_magic.magics.lens import read_on_the_runtime
from mlx_magic.magics.mapping import MapItem, fill_for_item, item_images, map_items
from mlx_magic.magics.options import CellOptions, checked_out_name
from mlx_magic.vocabulary.embedding import (
    DEFAULT_BATCH_SIZE,
    NEEDS_LOCAL_MODEL,
    Embeddings,
    EmbedRequest,
    not_an_embedder,
)

if TYPE_CHECKING:
    from mlx_magic.magics.session import MagicsHost, Session
    from mlx_magic.vocabulary.values import ModelSpec

#: Items one runtime request carries (a progress bar counts them above this).
CHUNK_ITEMS = 256
#: The ``%mlx`` commands that parse their own flags (:func:`parse_words`).
OWN_FLAGS = ("embed", "nearest", "plot")
#: The flags of a ``%%mlx`` cell that ask for an answer, which ``--embed`` does not give.
_ANSWER_FLAGS = (
    ("chat", "--chat"),
    ("background", "-b"),
    ("schema", "--schema"),
    ("score", "--score"),
    ("probs", "--probs"),
    ("lens", "--lens"),
    ("attention", "--attention"),
    ("resume", "--resume"),
    ("video", "-v"),
)


@magic_arguments("%mlx embed")
@argument("items", nargs="?", help="A variable (list, Series, DataFrame) or a glob of images.")
@argument("-m", "--model", help="The embedding model (default: default_embedding_model).")
@argument("-c", "--column", help="A DataFrame's text column.")
@argument("-i", "--image", action="append", default=[], help="Images: -i {item}, -i {row.path}.")
@argument("-o", "--out", help="Also store the vectors in this variable.")
@argument("--batch-size", type=int, help=f"Texts per forward pass ({DEFAULT_BATCH_SIZE}).")
def _embed_flags(line: str) -> None:
    """``%mlx embed ITEMS [-c COLUMN] [-i SRC] [-m MODEL] [-o NAME] [--batch-size N]``."""


def parse_words(flags: Any, words: list[str], usage: str) -> Any:
    """``words`` (the line after the command, split as a shell would) parsed
    by ``flags``' parser; options may come between the positional words."""
    if "-h" in words or "--help" in words:
        raise UserError(f"%mlx? shows the manual; {usage}")
    return flags.parser.parse_intermixed_args(words)


def command_embed(magics: MagicsHost, words: list[str]) -> None:
    """``%mlx embed ITEMS [-c COLUMN] [-i SRC] [-m MODEL] [-o NAME] [--batch-size N]``.

    The texts of ITEMS (a list or Series of strings, a DataFrame's column
    ``-c COLUMN``) or its images (``-i {item}`` for paths or pictures, or ITEMS
    a glob such as ``"photos/*.jpg"``) become vectors of the embedding model
    ``-m`` (or the ``default_embedding_model`` setting), batched: ``_mlx`` (and
    ``-o NAME``) holds them: ``_mlx.vectors`` (N × D), ``_mlx.table`` (the
    items' columns and a ``vector`` column). An image that cannot be read or
    embedded is a failed row: its reason in the table's ``error`` column, its
    vector NaN (``nearest`` and ``plot`` leave it out).
    """
    usage = "Usage: %mlx embed ITEMS [-c COLUMN] [-i SRC] [-m MODEL] [-o NAME] [--batch-size N]"
    args = parse_words(_embed_flags, words, usage)
    if args.items is None:
        raise UserError(usage)
    session = magics.session
    out = checked_out_name(args.out)
    spec = resolve_embedder(session, args.model)
    name = args.items
    namespace = session.shell.user_ns
    is_glob = name not in namespace and any(char in name for char in "*?[")
    try:
        items = map_items(name, namespace, vision=True)
    except UserError as error:  # its lines name --map
        raise UserError(str(error).replace("--map ", "%mlx embed ", 1)) from None
    sources = tuple(args.image) or (("{item}",) if is_glob else ())
    if sources and args.column:
        raise UserError("-c COLUMN names texts, -i SRC images: keep one")
    texts = () if sources else tuple(_texts_of(items, name, args.column))
    embed_and_keep(
        session,
        spec,
        items,
        name,
        texts=texts,
        sources=sources,
        batch_size=args.batch_size,
        out=out,
    )


def run_embed_cell(session: Session, options: list[CellOptions], args: Any, cell: str) -> None:
    """``%%mlx --embed``: the cell's lines (or, with ``--map ITEMS``, the cell
    filled in for each item; with ``-i {item}`` each item's image) become vectors."""
    if len(options) > 1:
        raise UserError(
            "--embed takes one embedding model (and no --temp/--seed sweep): embed with each "
            "in its own cell"
        )
    for attribute, flag in _ANSWER_FLAGS:
        value = getattr(args, attribute, None)
        if value is not None and value is not False and value != []:  # --attention is ""
            raise UserError(f"--embed makes vectors, not an answer: leave out {flag}")
    chosen = options[0]
    out = checked_out_name(chosen.out)
    spec = resolve_embedder(session, chosen.model)
    namespace = session.shell.user_ns
    text = cell.strip("\n")
    sources = tuple(chosen.images)
    if chosen.map_items is None:
        if sources:
            raise UserError("--embed with -i embeds the images of --map ITEMS: add --map")
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            raise UserError("%%mlx --embed: write one text per line in the cell (or --map ITEMS)")
        items = [MapItem(i, line, {"item": line}, {"item": line}) for i, line in enumerate(lines)]
        texts: tuple = tuple(lines)
        name = "the cell's lines"
    else:
        name = chosen.map_items
        items = map_items(name, namespace, vision=bool(sources))
        # IPython runs no cell magic on an empty cell: a comment stands in.
        if sources and any(
            line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()
        ):
            raise UserError(
                "--embed -i embeds each image alone: write only a # comment in the cell (or "
                "embed texts without -i)"
            )
        if not sources and not text.strip():
            raise UserError("%%mlx --embed --map: the cell is the text of each item, as {item}")
        texts = tuple(
            ()
            if sources
            else (fill_for_item(text, item, namespace, i) for i, item in enumerate(items))
        )
    embed_and_keep(
        session,
        spec,
        items,
        name,
        texts=texts,
        sources=sources,
        batch_size=chosen.batch_size,
        out=out,
        region=chosen.region,
        max_pixels=chosen.max_pixels,
    )


def resolve_embedder(session: Session, name: Optional[str]) -> ModelSpec:
    """The embedding model ``-m`` names (or the setting's).

    Raises:
        UserError: none named, a remote runtime, or a chat model (one line each).
    """
    settings = session.settings
    if settings.runtime == "remote":
        raise UserError(NEEDS_LOCAL_MODEL)
    name = name or settings.default_embedding_model
    if not name:
        raise UserError(
            "No embedding model: pass -m MODEL, or set %config "
            "MLXMagics.default_embedding_model = '<folder or Hub id>'"
        )
    spec = session.resolve(name)
    if spec.kind != "embedding":
        raise UserError(not_an_embedder(spec.name))
    return spec


def embed_on_runtime(session: Session, asked: EmbedRequest) -> Embeddings:
    """``asked``'s vectors from the runtime, saying so when it waits behind a generation."""
    made, _ = read_on_the_runtime(session, "the embeddings", lambda: session.runtime.embed(asked))
    return made


def embed_and_keep(
    session: Session,
    spec: ModelSpec,
    items: list[MapItem],
    name: str,
    *,
    texts: tuple,
    sources: tuple,
    batch_size: Optional[int],
    out: Optional[str],
    region: Optional[tuple] = None,
    max_pixels: Optional[int] = None,
) -> MLXEmbedResult:
    """Embed the items' texts (or the images ``sources`` name for each), show
    the table and keep it in ``_mlx`` (and ``out``)."""
    if batch_size is not None and batch_size < 1:
        raise UserError(
            f"--batch-size N: N texts share a forward pass, at least 1, not {batch_size}"
        )
    started = time.perf_counter()
    options = CellOptions(images=sources, region=region, max_pixels=max_pixels)
    #: Each chunk's vectors; a count where none of its images could be read.
    parts: list[Union[Embeddings, int]] = []
    thumbnails: list = []
    #: Why an item has no vector (an image that could not be read or embedded), by position.
    errors: dict[int, str] = {}
    progress = embedding_progress(len(items), spec.name) if len(items) > CHUNK_ITEMS else None
    try:
        # A chunk at a time: the bar moves, an interrupt is heard between chunks,
        # and only one chunk's pictures are decoded at full size at once.
        for start in range(0, len(items), CHUNK_ITEMS):
            chunk = items[start : start + CHUNK_ITEMS]
            read = _chunk_images(session, options, chunk, start, errors) if sources else {}
            if sources and not read:
                parts.append(len(chunk))
                thumbnails.extend([None] * len(chunk))
            else:
                asked = EmbedRequest(
                    spec,
                    texts=texts[start : start + CHUNK_ITEMS],
                    images=tuple(read.values()),
                    batch_size=batch_size or DEFAULT_BATCH_SIZE,
                )
                made = embed_on_runtime(session, asked)
                parts.append(_in_place(made, list(read), start, len(chunk)) if sources else made)
                for position, reason in made.failed:
                    errors[list(read)[position]] = reason
                thumbnails.extend(
                    small_copy(read[p]) if p in read else None
                    for p in range(start, start + len(chunk))
                    if sources
                )
            if progress is not None:
                progress.update(len(chunk))
    finally:
        if progress is not None:
            progress.close()
    made = joined(parts, name, errors)
    result = MLXEmbedResult(
        rows=[dict(item.columns) for item in items],
        vectors=made.vectors,
        index=[item.index for item in items],
        items_name=name,
        model=spec.name,
        model_key=spec.key,
        embeddings=made,
        images=tuple(thumbnails),
        seconds=time.perf_counter() - started,
        errors=[errors.get(position) for position in range(len(items))] if errors else [],
    )
    view_for(session.shell).show_bundle(
        {"text/plain": f"[{result.summary}]", "text/html": result._repr_html_()}
    )
    session.shell.user_ns["_mlx"] = result
    if out:
        session.shell.user_ns[out] = result
    return result


def _chunk_images(
    session: Session, options: CellOptions, chunk: list[MapItem], start: int, errors: dict
) -> dict:
    """Each item's (first) image by position; one that cannot be read is left
    out, its one-line reason put in ``errors`` (a failed row, as ``--map``'s)."""
    read = {}
    for position, item in enumerate(chunk, start):
        try:
            loaded = item_images(session, options, item, position)
        except UserError as error:
            errors[position] = str(error)
            continue
        if loaded:
            read[position] = loaded[0].image
    return read


def _in_place(made: Embeddings, positions: list[int], start: int, count: int) -> Embeddings:
    """``made``'s vectors (of the images at ``positions``) as the chunk's rows:
    a NaN row for each item whose image was not read."""
    import numpy as np

    vectors = np.full((count, made.vectors.shape[1]), np.nan, dtype=np.float32)
    vectors[[position - start for position in positions]] = made.vectors
    return replace(made, vectors=vectors)


def joined(
    parts: list[Union[Embeddings, int]], name: str = "", errors: Optional[dict] = None
) -> Embeddings:
    """The chunks' vectors as one :class:`Embeddings`, in order: NaN rows, as
    wide as the others, for a chunk whose images all failed (``errors`` says why).

    Raises:
        UserError: no item could be embedded (one line: the first reason).
    """
    import numpy as np

    made = [part for part in parts if not isinstance(part, int)]
    width = max((part.vectors.shape[1] for part in made), default=0)
    if not made or not width:
        reasons = list((errors or {}).values()) or ["nothing to embed"]
        raise UserError(f"No item of {name} could be embedded: {reasons[0]}")
    first = made[0]
    return replace(
        first,
        vectors=np.concatenate(
            [
                np.full((part, width), np.nan, dtype=np.float32)
                if isinstance(part, int)
                else part.vectors
                if part.vectors.shape[1] == width
                else np.full((len(part.vectors), width), np.nan, dtype=np.float32)
                for part in parts
            ]
        ),
        failed=tuple(sorted((errors or {}).items())),
        normalized=all(part.normalized for part in made),
        tokens=sum(part.tokens for part in made),
        batches=sum(part.batches for part in made),
        seconds=sum(part.seconds for part in made),
    )


def _texts_of(items: list[MapItem], name: str, column: Optional[str]) -> list[str]:
    """Each item's text: the item itself, or its ``column``.

    Raises:
        UserError: an unknown column, a table without ``-c``, or an item that
            is not text (one line each).
    """
    texts = []
    for position, item in enumerate(items):
        row = item.names.get("row")
        if column is not None:
            if row is None:
                raise UserError(f"-c {column}: the items of {name} have no columns; leave out -c")
            try:
                value = row[column]
            except (KeyError, IndexError):
                known = ", ".join(map(str, item.columns))
                raise UserError(f"{name} has no column {column!r} (it has {known})") from None
        elif row is not None:
            known = ", ".join(map(str, item.columns))
            raise UserError(f"{name} is a table: name its text column with -c COLUMN ({known})")
        else:
            value = item.value
        if isinstance(value, os.PathLike) or not isinstance(value, str):
            raise UserError(
                f"{name}, item {position}: a {type(value).__name__}, not a text (images: -i {{item}})"
            )
        texts.append(value)
    return texts
