"""A logit lens drawn: decoder layers (rows, last on top) × answer tokens (columns).

Each cell is the token that layer finds most likely there, shaded by its
probability; hovering it shows the layer's top five and the probability it
gives the token actually generated. Plain HTML with inline styles and no
script: CircuitsVis, the nearest existing drawing, needs torch and loads its
React bundle from a CDN, which an offline notebook or a saved one cannot run.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from mlx_magic.vocabulary.lens import LensCell, LensGrid

if TYPE_CHECKING:
    from IPython.lib.pretty import PrettyPrinter

# The longest token text a cell shows; the hover has it whole.
_CELL_CHARS = 10
_TEXT_CELL = 12


class LensView:
    """A :class:`LensGrid` as a notebook shows it (HTML) and a terminal prints it (text)."""

    def __init__(self, grid: LensGrid):
        self.grid = grid

    def _repr_html_(self) -> str:
        return lens_html(self.grid)

    def _repr_pretty_(self, printer: PrettyPrinter, cycle: bool) -> None:
        printer.text(lens_text(self.grid))

    def __repr__(self) -> str:
        return lens_text(self.grid)


def shown(text: str, limit: int = _CELL_CHARS) -> str:
    """A token's text made visible in one short line (newlines and tabs as signs)."""
    visible = text.replace("\n", "⏎").replace("\r", "␍").replace("\t", "⇥") or "∅"
    return visible if len(visible) <= limit else visible[: limit - 1] + "…"


def hover_text(grid: LensGrid, layer: int, token: int) -> str:
    """The hover of one cell: the layer's top tokens and the generated token's probability."""
    cell = grid.cell(layer, token)
    lines = [f"layer {layer}, answer token {token + 1} ({grid.tokens[token]!r})"]
    lines += [f"{text!r}  {p:.1%}" for text, p in zip(cell.top_texts, cell.top_probs)]
    lines.append(f"generated {grid.tokens[token]!r}: {cell.chosen_prob:.1%}")
    return "\n".join(lines)


def lens_html(grid: LensGrid) -> str:
    """The grid as an HTML table, every text escaped."""
    head = "".join(
        f'<th title="{html.escape(f"{number + 1}: {text!r} (id {token_id})", quote=True)}" '
        f'style="padding: 2px 4px; white-space: pre; font-weight: normal">'
        f"{html.escape(shown(text))}</th>"
        for number, (text, token_id) in enumerate(zip(grid.tokens, grid.token_ids))
    )
    rows = []
    for layer in reversed(range(grid.layers)):
        cells = "".join(
            _cell_html(grid, layer, token, cell) for token, cell in enumerate(grid.rows[layer])
        )
        rows.append(
            f'<tr data-layer="{layer}"><th style="padding: 2px 6px; text-align: right">'
            f"{layer}</th>{cells}</tr>"
        )
    note = (
        f"Logit lens ({html.escape(grid.model_type)}): what each layer's output, through the "
        "final norm and the head, predicts for each answer token. Last layer (the model's "
        "own output) on top; shade: the top token's probability; bold: it is the token "
        "generated. Hover a cell for the top 5."
    )
    return (
        '<div class="mlx-magic-lens" style="overflow-x: auto">'
        '<table style="border-collapse: collapse; font-family: monospace; font-size: 0.85em">'
        f'<thead><tr><th style="padding: 2px 6px">layer</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        f'<div style="font-size: 0.8em; opacity: 0.7">{note}</div></div>'
    )


def _cell_html(grid: LensGrid, layer: int, token: int, cell: LensCell) -> str:
    top = cell.top_texts[0] if cell.top_texts else ""
    p = cell.top_probs[0] if cell.top_probs else 0.0
    # Near-certain cells go dark blue, with light text to stay readable.
    alpha = 0.04 + 0.86 * max(0.0, min(1.0, p))
    colour = "color: white; " if alpha > 0.55 else ""
    hit = bool(cell.top_ids) and cell.top_ids[0] == grid.token_ids[token]
    weight = "font-weight: bold; " if hit else ""
    return (
        f'<td title="{html.escape(hover_text(grid, layer, token), quote=True)}" '
        f'data-p="{p:.4f}" style="background: rgba(40, 90, 200, {alpha:.2f}); {colour}{weight}'
        f'padding: 2px 4px; white-space: pre; border: 1px solid rgba(128, 128, 128, 0.2)">'
        f"{html.escape(shown(top))}</td>"
    )


def lens_text(grid: LensGrid) -> str:
    """The grid as fixed-width text: per cell the top token and its probability,
    ``*`` where it is the token generated; last layer first."""
    width = _TEXT_CELL
    title = (
        f"logit lens · {grid.model_type} · {grid.layers} layers × {len(grid.tokens)} answer "
        "tokens (top token, its probability; * = the token generated; last layer first)"
    )
    header = "layer │" + "│".join(f"{shown(t, width - 2)!s:^{width}}" for t in grid.tokens)
    lines = [title, header]
    for layer in reversed(range(grid.layers)):
        cells = []
        for token, cell in enumerate(grid.rows[layer]):
            top = cell.top_texts[0] if cell.top_texts else ""
            p = cell.top_probs[0] if cell.top_probs else 0.0
            mark = "*" if cell.top_ids and cell.top_ids[0] == grid.token_ids[token] else " "
            cells.append(f"{shown(top, width - 6):<{width - 5}}{p:>4.0%}{mark}")
        lines.append(f"{layer:>5} │" + "│".join(cells))
    return "\n".join(lines)
