"""``--map ITEMS``: one cell's prompt over many items, each its own request.

ITEMS names a list, tuple, dict, pandas Series or DataFrame, a generator or
any iterable in the notebook; for ``%%mlx_vision`` also a glob of image
files. The prompt (and ``-i`` sources) refer to the item as ``{item}``, to
a row's columns as ``{row.column}`` or ``{item[key]}``, and to a dict's key
as ``{key}``. Every prompt is filled in before anything runs, so a template
that names a missing column is one error line, not a failed run.
"""

from __future__ import annotations

import glob
import os
import re
from collections import ChainMap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Optional

from mlx_magic.errors import TemplateError, UserError, one_line
from mlx_magic.magics.drafts import NO_DRAFT
from mlx_magic.magics.prepare import load_cell_images
from mlx_magic.magics.templating import fill_template

if TYPE_CHECKING:
    import argparse

    from mlx_magic.images import LoadedImage
    from mlx_magic.magics.options import CellOptions
    from mlx_magic.magics.session import Session

#: Most items one --map cell may run.
MAX_ITEMS = 100_000


#: The columns a ``--map`` table fills itself: an item's column or a
#: ``--schema`` field of one of these names is kept beside them as
#: ``item_NAME`` or ``data_NAME``, never overwritten, never taken for the run's
#: (``score`` too: ``--score`` fills it).
TABLE_COLUMNS = ("answer", "score", "tokens", "time_s", "finish_reason", "error")


def apart_from_table(
    columns: Mapping[str, Any], prefix: str, taken: tuple[str, ...] = TABLE_COLUMNS
) -> dict:
    """``columns`` with each name in ``taken`` renamed ``PREFIX_NAME``."""
    return {(f"{prefix}_{name}" if name in taken else name): v for name, v in columns.items()}


@dataclass
class MapItem:
    """One item of ``--map``: its value, what the prompt may name, its table columns."""

    index: Any
    value: Any
    names: dict = field(default_factory=dict)
    columns: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.columns = apart_from_table(self.columns, "item")


class Row:
    """``{row.column}`` for a dict item (a pandas row has attributes of its own)."""

    def __init__(self, values: Mapping):
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(
                f"the item has no column {name!r} (it has {', '.join(map(str, self._values))})"
            ) from None

    def __getitem__(self, key: object) -> Any:
        return self._values[key]

    def __format__(self, spec: str) -> str:
        return format(dict(self._values), spec)


def check_map_flags(args: argparse.Namespace) -> bool:
    """Whether the cell is a ``--map`` run (of one model, or of several: every
    ``-m``, ``--temp`` and ``--seed``); flags that do not go with it are one line."""
    score, score_by = getattr(args, "score", None), getattr(args, "score_by", None)
    judge = getattr(args, "judge", None)
    if judge is not None and score is None:
        raise UserError(f"--judge {judge} grades answers against a label: add --score COLUMN")
    if judge is not None and score_by is not None:
        raise UserError(
            f"--judge {judge} is the scorer: leave out --score-by {score_by} (or --judge)"
        )
    if args.map is None:
        if args.batch_size is not None or args.resume:
            raise UserError("--batch-size and --resume are for --map ITEMS")
        if score is not None or score_by is not None:
            raise UserError(
                "--score and --score-by compare the answers of --map ITEMS with a label "
                "column: add --map"
            )
        return False
    if score_by is not None and score is None:
        raise UserError(f"--score-by {score_by} says how to score: add --score COLUMN")
    if args.chat is not None:
        raise UserError("--map: each item is its own question; leave out --chat")
    if getattr(args, "video", None) is not None:
        raise UserError("--map takes images (-i {item}), not a video")
    if args.probs:
        raise UserError("--map: --probs shows one answer's tokens; leave it out")
    if args.no_interpolate:
        raise UserError(
            "--map fills {item} into the prompt and --no-interpolate leaves braces as they "
            "are: keep one (write {{ and }} for literal braces)"
        )
    if args.draft is not None and args.draft.lower() != NO_DRAFT:
        raise UserError(
            "--map decodes its items together (batched); --draft decodes one answer at a "
            "time: keep one"
        )
    return True


def map_items(name: str, namespace: Mapping[str, Any], *, vision: bool) -> list[MapItem]:
    """The items ``--map NAME`` runs over, in order.

    Raises:
        UserError: no such variable (or glob), or a value that is not a collection.
    """
    if name in namespace:
        items = _items_of(name, namespace[name])
    elif vision and any(char in name for char in "*?["):
        paths = sorted(path for path in glob.glob(os.path.expanduser(name)) if os.path.isfile(path))
        if not paths:
            raise UserError(f"--map {name}: the glob matches no files")
        items = [MapItem(i, path, {"item": path}, {"item": path}) for i, path in enumerate(paths)]
    else:
        hint = " or a glob of image files" if vision else ""
        raise UserError(f"--map {name}: no variable named {name!r}{hint}")
    if not items:
        raise UserError(f"--map {name}: it is empty, so there is nothing to run")
    return items


def _items_of(name: str, value: Any) -> list[MapItem]:
    kind = type(value).__name__
    module = type(value).__module__.split(".")[0]
    if module == "pandas" and kind == "DataFrame":
        # ``{row.name}`` must be the column "name", not the Series' own name.
        return [
            MapItem(index, row, {"item": row, "row": Row(row.to_dict())}, row.to_dict())
            for index, row in _read(name, value.iterrows())
        ]
    if module == "pandas" and kind == "Series":
        column = value.name if isinstance(value.name, str) else "item"
        return [
            MapItem(index, item, {"item": item}, {column: item})
            for index, item in _read(name, value.items())
        ]
    if isinstance(value, Mapping):
        return [
            MapItem(
                key,
                item,
                _names_of(item, key=key),
                {"key": key, **apart_from_table(_columns_of(item), "item", ("key",))},
            )
            for key, item in _read(name, value.items())
        ]
    if isinstance(value, (str, bytes)):
        raise UserError(
            f"--map {name}: {name} is a {kind}, not a collection of items: put the items in a "
            "list, or a DataFrame with one row per item"
        )
    try:
        iterator = iter(value)
    except TypeError:
        raise UserError(
            f"--map {name}: a {kind} cannot be iterated: pass a list, dict, Series, DataFrame "
            "or generator"
        ) from None
    items = []
    for index, item in enumerate(_read(name, iterator)):
        if index >= MAX_ITEMS:
            raise UserError(f"--map {name}: more than {MAX_ITEMS:,} items; split the run")
        items.append(MapItem(index, item, _names_of(item), _columns_of(item)))
    return items


def _read(name: str, values: Iterable) -> Iterator:
    """``values`` one by one; one that fails to come (a generator that raises) is one line.

    Raises:
        UserError: reading the items raised; names the item's position and the error.
    """
    iterator = iter(values)
    position = 0
    while True:
        try:
            value = next(iterator)
        except StopIteration:
            return
        except Exception as error:  # the notebook's own generator or collection
            detail = one_line(f"{type(error).__name__}: {error}", 200)
            raise UserError(
                f"--map {name}: reading item {position} raised {detail}; nothing ran: fix what "
                f"makes the items (a generator is used up: make it again)"
            ) from error
        yield value
        position += 1


def _names_of(item: Any, key: Any = None) -> dict:
    names = {"item": item}
    if isinstance(item, Mapping):
        names["row"] = Row(item)
    if key is not None:
        names["key"] = key
    return names


def _columns_of(item: Any) -> dict:
    if isinstance(item, Mapping):
        return {str(key): value for key, value in item.items()}
    if isinstance(item, (str, int, float, bool)) or item is None:
        return {"item": item}
    # An image or another object: named by its type in the table.
    return {"item": f"<{type(item).__name__}>"}


def fill_for_item(text: str, item: MapItem, namespace: Mapping[str, Any], position: int) -> str:
    """``text`` with ``{item}``, ``{row.…}``, ``{key}`` and notebook variables filled in.

    Raises:
        UserError: a placeholder that fails for this item (one line naming it).
    """
    try:
        return fill_template(text, ChainMap(item.names, namespace))  # type: ignore[arg-type]
    except TemplateError as error:
        missing = _missing_column(error)
        # --map refuses --no-interpolate: its advice is no way out here.
        what = missing or _NO_INTERPOLATE_ADVICE.sub("", str(error))
        raise UserError(f"--map, item {position} ({_short(item.index)}): {what}") from error


#: The template's ", or pass --no-interpolate ..." advice (for a single cell).
_NO_INTERPOLATE_ADVICE = re.compile(r",? or pass --no-interpolate(?: to send braces as they are)?")


def _missing_column(error: TemplateError) -> Optional[str]:
    """``{row.colour}`` on a row without it, said plainly."""
    cause = error.__cause__
    if isinstance(cause, AttributeError) and "has no column" in str(cause):
        return f"{cause}: fix the {{row.…}} placeholder"
    return None


def image_source_for_item(
    source: str, item: MapItem, namespace: Mapping[str, Any], position: int
) -> tuple[str, Optional[Any]]:
    """An ``-i`` source for one item: a filled-in path, or (for ``{item}``
    naming an image object) a hidden name and the object itself."""
    stripped = source.strip()
    if stripped.startswith("{") and stripped.endswith("}") and stripped.count("{") == 1:
        value = _lookup(stripped[1:-1], item, namespace, position)
        if not isinstance(value, (str, os.PathLike)):
            return "__mlx_map_image", value
        return os.fspath(value), None
    return fill_for_item(source, item, namespace, position), None


def _lookup(expression: str, item: MapItem, namespace: Mapping[str, Any], position: int) -> Any:
    # The value itself (not its text): a PIL image or an array in a row.
    try:
        return string_value(expression, ChainMap(item.names, namespace))  # type: ignore[arg-type]
    except TemplateError as error:
        raise UserError(f"--map, item {position} ({_short(item.index)}): {error}") from error


def string_value(expression: str, namespace: Mapping[str, Any]) -> Any:
    """What ``{expression}`` names (``item``, ``row.path``, ``item[0]``), as an object."""
    import string

    from mlx_magic.magics.templating import _Namespace

    try:
        value, _ = string.Formatter().get_field(expression, (), _Namespace(namespace))
    except Exception as error:
        raise TemplateError(f"{{{expression}}} failed: {type(error).__name__}: {error}") from error
    return value


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def item_images(
    session: Session, options: CellOptions, item: MapItem, position: int
) -> tuple[LoadedImage, ...]:
    """The images ``-i`` names for one item (``-i {item}``, ``-i {row.path}``).

    Raises:
        UserError: an image that cannot be read or cut (``--region``), named
            by its ``-i`` source as written, never by the hidden name an
            image object is lent under.
    """
    namespace = session.shell.user_ns
    sources: list[str] = []
    hidden: dict[str, object] = {}
    written: dict[str, str] = {}
    for source in options.images:
        filled, value = image_source_for_item(source, item, namespace, position)
        if value is not None:
            name = f"{filled}_{len(hidden)}"
            hidden[name] = value
            written[name] = source
            filled = name
        sources.append(filled)
    if hidden:
        namespace.update(hidden)
    try:
        return tuple(load_cell_images(session, tuple(sources), options.region))
    except UserError as error:
        message = str(error)
        for name in sorted(written, key=len, reverse=True):  # _10 before _1
            source = written[name]
            message = message.replace(name, source)
        raise UserError(message) from error
    finally:
        for name in hidden:
            namespace.pop(name, None)
