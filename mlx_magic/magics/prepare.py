"""From a cell's options and text to a :class:`~mlx_magic.magics.options.PreparedCell`: the request the
runtime runs, and what to do with its answer.

Cheap checks come first (the text, the flags, the template), the model is
resolved last: a mistake is reported before anything slow happens.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Optional

from mlx_magic.errors import UserError
from mlx_magic.images import LoadedImage, load_images
from mlx_magic.images.regions import capped, cut_region
from mlx_magic.magics.cache_commands import kv_cache_settings, prefix_cache_settings
from mlx_magic.magics.conversations import PendingTurn
from mlx_magic.magics.drafts import draft_of
from mlx_magic.magics.options import (
    CellOptions,
    PreparedCell,
    check_thinking,
    checked_out_name,
    sampling_params,
)
from mlx_magic.magics.provenance import with_drawn_seed
from mlx_magic.magics.schemas import answer_schema
from mlx_magic.magics.session import Session, answering_model
from mlx_magic.magics.templating import fill_template, last_error_text
from mlx_magic.vocabulary.values import GenerationRequest, ModelSpec

if TYPE_CHECKING:
    import argparse


def load_cell_images(
    session: Session, sources: tuple[str, ...], region: Optional[tuple] = None
) -> list[LoadedImage]:
    """The images ``-i`` names, decoded (through the session's cache), and cut
    to ``--region`` when given."""
    images = load_images(list(sources), session.shell.user_ns, cache=session.image_cache)
    if region is not None:
        images = [cut_region(loaded, region) for loaded in images]
    limit = session.settings.max_images
    if len(images) > limit:
        raise UserError(
            f"{len(images)} images is more than the {limit} allowed "
            "(MLXMagics.max_images): send fewer"
        )
    return images


def check_video_flags(args: argparse.Namespace, runtime: str) -> None:
    """``-v``, ``--fps`` and ``--max-frames`` together make sense (one line if not)."""
    from mlx_magic.images.video_sources import MAX_FRAMES_LIMIT

    video = getattr(args, "video", None)
    fps, max_frames = getattr(args, "fps", None), getattr(args, "max_frames", None)
    if video is None:
        if fps is not None or max_frames is not None:
            raise UserError("--fps and --max-frames are for a video: add -v SRC")
        return
    if fps is not None and not 0 < fps <= 60:
        raise UserError(f"--fps must be above 0 and at most 60, not {fps:g}")
    if max_frames is not None and not 2 <= max_frames <= MAX_FRAMES_LIMIT:
        raise UserError(f"--max-frames must be between 2 and {MAX_FRAMES_LIMIT}, not {max_frames}")
    if args.chat is not None:
        raise UserError("-v: a video is sent in one cell, not in a conversation: leave out --chat")
    if runtime == "remote":
        raise UserError(
            "-v: videos go to local models only; for a server, send some frames as images (-i)"
        )


def _sent_key(loaded: LoadedImage, max_pixels: int) -> str:
    """The content key of the image as sent: a shrunk image is other pixels."""
    width, height = loaded.image.size
    return loaded.cache_key if width * height <= max_pixels else f"{loaded.cache_key}@{max_pixels}"


def prepare(
    session: Session,
    options: CellOptions,
    text: str,
    resolve: Callable[[Optional[str]], ModelSpec],
    images: tuple[LoadedImage, ...] = (),
    cell_id: Optional[str] = None,
) -> PreparedCell:
    """Validate the text and options, then resolve the model (slowest, last).

    ``images`` are the cell's own; in a conversation the images of the earlier
    turns are sent too, each with its turn.
    """
    settings = session.settings
    prompt = (text or "").strip("\n")
    if not prompt.strip():
        raise UserError("The cell is empty: write the prompt on the lines below the magic")
    if options.interpolate:
        prompt = fill_template(prompt, session.shell.user_ns)
    if options.append_last_error:
        error_text = last_error_text(session.shell)
        if error_text is None:
            raise UserError("--error: no error has happened in this session yet")
        prompt = f"{prompt}\n\nThe last error:\n```\n{error_text}\n```"
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as error:
        raise UserError(
            f"The prompt holds {prompt[error.start]!r} at character {error.start}, which is not "
            "text (a lone surrogate, e.g. from a broken decode): clean the value it came from"
        ) from error
    # A sampled answer is always repeatable: without --seed, one is drawn.
    sampling = with_drawn_seed(sampling_params(options, settings))
    max_pixels = options.max_pixels or settings.max_image_pixels
    out_name = checked_out_name(options.out)
    spec = answering_model(resolve(options.model))
    if options.trust_remote_code:
        spec = replace(spec, trust_remote_code=True)
    check_thinking(options, spec, settings.runtime)
    draft, num_draft_tokens = draft_of(options, spec, settings, session)
    kv_cache = kv_cache_settings(options, settings, spec.kind, draft is not None)
    system = options.system if options.system is not None else settings.system_prompt
    history: tuple = ()
    history_images: tuple = ()
    earlier_images: tuple = ()
    earlier_keys: tuple = ()
    turn = conversation_name = None
    if options.chat is not None:
        try:
            conversation = session.conversations.start_or_continue(
                options.chat, spec.key, spec.name, system
            )
        except ValueError as error:
            raise UserError(str(error)) from error
        if options.system is not None and options.system != conversation.system:
            if conversation.turns:
                # Its turns were answered under the old system prompt (and their
                # KV cache holds it): a new one is a new conversation.
                raise UserError(
                    f"Conversation '{conversation.name}' keeps its system prompt: start "
                    f"another with --chat NEW_NAME -s ..., or clear it with "
                    f"%mlx chat reset {conversation.name}"
                )
            conversation.system = options.system
        turns, index = conversation.history_before(cell_id, prompt)
        history = tuple(earlier.history_entry() for earlier in turns)
        if any(earlier.images for earlier in turns):
            history_images = tuple(len(earlier.images) for earlier in turns)
            earlier_images = tuple(image for earlier in turns for image in earlier.images)
            earlier_keys = tuple(key for earlier in turns for key in earlier.image_keys)
        system = conversation.system
        conversation_name = conversation.name
        turn = PendingTurn(conversation, index, tuple(image.caption for image in images))
    video = None
    if options.video is not None:
        from mlx_magic.images.video_sources import load_video_source

        video = load_video_source(options.video, session.shell.user_ns, options.video_max_frames)
    if options.schema and settings.runtime == "remote":
        raise UserError(
            "--schema constrains the local decoder (llguidance): a server's answer cannot be "
            "constrained from here: leave it out, or %mlx disconnect to run the model locally"
        )
    schema = answer_schema(options.schema, session.shell.user_ns) if options.schema else None
    request = GenerationRequest(
        model=spec,
        prompt=prompt,
        history=history,
        history_images=history_images,
        conversation=conversation_name,
        images=earlier_images + tuple(capped(loaded.image, max_pixels) for loaded in images),
        image_keys=earlier_keys + tuple(_sent_key(loaded, max_pixels) for loaded in images),
        top_logprobs=options.probs or 0,
        video=video.path if video is not None else None,
        video_frames=tuple(capped(frame, max_pixels) for frame in video.frames) if video else (),
        video_fps=options.video_fps,
        video_max_frames=options.video_max_frames,
        schema_json=schema.json_text if schema is not None else None,
        system=system,
        raw=options.raw,
        think=options.think,
        think_budget=options.think_budget,
        draft=draft,
        num_draft_tokens=num_draft_tokens,
        sampling=sampling,
        prefix_cache=prefix_cache_settings(settings, settings.runtime == "remote"),
        kv_cache=kv_cache,
    )
    return PreparedCell(options, request, out_name, turn, tuple(images), cell_id, schema)
