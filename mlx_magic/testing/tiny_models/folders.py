"""Atomic, idempotent building of a model folder, and writing its JSON files.

A build is written into a temporary sibling folder that is renamed into
place last, with a marker file (:data:`MARKER`) inside that records the
recipe, so a crashed or concurrent build never leaves a half model that
counts, and a folder built with another recipe is not reused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

# Bump when the layout or contents of a build change, so that folders built
# by an older version are not mistaken for current ones.
FORMAT_VERSION = 1

# Written last into a build; its presence means the folder is complete. It
# also records the recipe so a folder built differently is not reused.
MARKER = "tiny_model.json"


def atomic_build(folder: Path, recipe: dict, fill: Callable[[Path], None]) -> Path:
    """Return ``folder`` holding the build ``recipe`` describes, making it if needed.

    ``fill`` writes the files into a temporary sibling folder, which is then
    renamed to ``folder``: a rename is atomic, so readers see either nothing
    or a whole model, and the marker written last is only ever seen inside a
    complete one.
    """
    folder = folder.expanduser().absolute()
    recipe = {"format": FORMAT_VERSION, **recipe}
    if _is_built(folder, recipe):
        return folder
    if folder.exists() and any(folder.iterdir()):
        # Not ours (or another recipe): never overwrite somebody's files.
        raise FileExistsError(
            f"{folder} exists and is not a tiny model built with {recipe}; "
            "choose another folder or remove it"
        )

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.building-", dir=folder.parent))
    try:
        fill(tmp)
        (tmp / MARKER).write_text(json.dumps(recipe, indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a model folder is not
        if folder.exists():
            folder.rmdir()  # empty (checked above); rename needs it gone on some OSes
        try:
            os.rename(tmp, folder)
        except OSError:
            # Lost a race with a concurrent build of the same folder: fine
            # if the winner built the same thing.
            if not _is_built(folder, recipe):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _is_built(folder: Path, recipe: dict) -> bool:
    """Whether ``folder`` holds a finished build of ``recipe``."""
    try:
        return json.loads((folder / MARKER).read_text()) == recipe
    except (OSError, ValueError):
        return False


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
