"""``--draft MODEL`` / ``--num-draft N`` and the ``draft_model`` setting, checked.

A draft is for local text models (mlx-lm's speculative decoding): a flag that
cannot apply is one line; the setting simply does not apply where a draft
cannot (a vision model, a server).
"""

from __future__ import annotations

from typing import Any, Optional

from mlx_magic.errors import UserError
from mlx_magic.magics.options import CellOptions
from mlx_magic.vocabulary.embedding import embedder_not_chat
from mlx_magic.vocabulary.values import ModelSpec

#: ``--draft none``: no draft for this cell, whatever the setting says.
NO_DRAFT = "none"


def draft_of(
    options: CellOptions, spec: ModelSpec, settings: Any, session: Any
) -> tuple[Optional[ModelSpec], int]:
    """The draft model for this cell (or ``None``) and how many tokens it proposes.

    Raises:
        UserError: a ``--draft``/``--num-draft`` that cannot apply, or a draft
            model that cannot be found, in one line.
    """
    asked = options.draft is not None and options.draft.lower() != NO_DRAFT
    name = options.draft if options.draft is not None else settings.draft_model
    count = settings.num_draft_tokens if options.num_draft is None else options.num_draft
    if not 1 <= count <= 64:
        raise UserError(f"--num-draft must be between 1 and 64 tokens, not {count}")
    if not name or name.lower() == NO_DRAFT:
        if options.num_draft is not None:
            raise UserError("--num-draft goes with a draft model: add --draft MODEL")
        return None, count
    if settings.runtime == "remote" or spec.kind != "text":
        if not asked:
            return None, count  # the setting is for local text models
        where = "a server" if settings.runtime == "remote" else "a vision model"
        raise UserError(
            f"--draft works with local text models (mlx-lm's speculative decoding), not "
            f"{where}: leave it out (a server drafts with its own, e.g. mlx_lm.server "
            "--draft-model)"
        )
    if options.schema is not None:
        raise UserError(
            "--draft and --schema: drafted tokens would skip the schema's constraint; keep one"
        )
    # Name what the user wrote: the cell's flag, or the setting it did not repeat.
    given = f"--draft {name}" if options.draft is not None else f"The draft_model setting {name!r}"
    fix = (
        "" if options.draft is not None else " (%config MLXMagics.draft_model = None turns it off)"
    )
    try:
        draft = session.resolve(name)
    except UserError as error:
        raise UserError(f"{given}: {error}{fix}") from error
    if draft.kind == "embedding":
        raise UserError(f"{given}: {embedder_not_chat(draft.name)}{fix}")
    if draft.same_model(spec):
        raise UserError(
            f"{given} is the model itself: a draft is a smaller model of the same "
            f"family (its own first layers make one: mlx_magic.testing.drafts){fix}"
        )
    return draft, count
