"""What a ``%%mlx`` or ``%%mlx_vision`` cell does with its parsed flags: the
checks that need the flags together, then the one path each kind of cell
takes (``--map`` over items, columns side by side, ``-b``, ``--segment``, or
one answer in the foreground)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from functools import partial

from mlx_magic.errors import UserError
from mlx_magic.magics.attention import check_attention_flags
from mlx_magic.magics.embedding import run_embed_cell
from mlx_magic.magics.lens import check_lens_flags
from mlx_magic.magics.map_compare import run_map_cells
from mlx_magic.magics.mapping import check_map_flags
from mlx_magic.magics.marking import marked_images, uses_marks
from mlx_magic.magics.options import variants_of
from mlx_magic.magics.prepare import check_video_flags, load_cell_images, prepare
from mlx_magic.magics.run import check_columns, run_background, run_columns, run_foreground
from mlx_magic.magics.segmenting import segment_cell
from mlx_magic.magics.session import Session
from mlx_magic.magics.tool_loop import check_tools_flags, run_tools_cell


def run_text_cell(session: Session, args: argparse.Namespace, cell: str) -> None:
    """``%%mlx``: the cell's text answered by a text model (with ``--tools``,
    calling notebook functions; or, ``--embed``, turned into vectors)."""
    variants = variants_of(args)
    if args.embed:
        return run_embed_cell(session, variants, args, cell)
    check_lens_flags(args, len(variants), session.settings.runtime)
    check_attention_flags(args, len(variants), session.settings.runtime)
    check_tools_flags(args, len(variants), session.settings.runtime, session.shell)
    if args.tools is not None:  # an agent: the model calls notebook functions
        return run_tools_cell(session, variants[0], cell)
    if check_map_flags(args):
        return run_map_cells(session, variants, cell, session.resolve, vision=False)
    if len(variants) > 1:
        check_columns(len(variants), args.chat, args.background)
        cells = [prepare(session, options, cell, session.resolve) for options in variants]
        return run_columns(session, cells)
    prepared = prepare(session, variants[0], cell, session.resolve, cell_id=session.cell_id)
    if args.background:
        run_background(session, prepared)
        return
    run_foreground(session, prepared)


def run_vision_cell(session: Session, args: argparse.Namespace, cell: str) -> None:
    """``%%mlx_vision``: the cell's images (or video) and text answered by a
    vision model, segmented (``--segment``) or turned into vectors (``--embed``)."""
    if args.segment is not None:
        segment_cell(session, args, cell)
        return
    variants = variants_of(args)
    if args.embed:
        return run_embed_cell(session, variants, args, cell)
    first = variants[0]
    if not (args.image or args.map or uses_marks(first)) and args.chat is None and not args.video:
        raise UserError(
            "%%mlx_vision needs an image: add -i SRC (a file, URL or variable) or a "
            "video, -v SRC; %%mlx answers text alone"
        )
    check_video_flags(args, session.settings.runtime)
    check_attention_flags(args, len(variants), session.settings.runtime)
    if check_map_flags(args):
        if uses_marks(first):
            raise UserError("--marks and --region @N go with one cell's images, not --map")
        return run_map_cells(session, variants, cell, session.resolve_vision, vision=True)
    if (
        args.model is None
        and session.settings.default_vision_model is None
        and session.settings.runtime != "remote"
    ):
        raise UserError(
            "No vision model: pass --model, or set %config "
            "MLXMagics.default_vision_model = '<folder or Hub id>'"
        )
    # With --marks the images sent have the marks drawn; the previews draw their own.
    sent, shown, marks = marked_images(session, first, partial(load_cell_images, session))
    if len(variants) > 1:
        check_columns(len(variants), args.chat, args.background)
        cells = [
            replace(
                prepare(session, options, cell, session.resolve_vision, tuple(sent)),
                images=tuple(shown),
                marks=marks,
            )
            for options in variants
        ]
        return run_columns(session, cells)
    prepared = prepare(
        session, first, cell, session.resolve_vision, tuple(sent), cell_id=session.cell_id
    )
    prepared = replace(prepared, images=tuple(shown), marks=marks)
    if not prepared.request.images and not prepared.request.has_video:
        raise UserError(
            f"%%mlx_vision needs an image: conversation '{args.chat}' has none yet; "
            "add -i SRC (later turns may leave it out)"
        )
    if args.background:
        run_background(session, prepared)
        return
    run_foreground(session, prepared)
