"""The caches as the magics see them: ``%mlx cache clear [--disk]``, the disk
cache's line in ``%mlx status``, and the cache settings a request carries
(the prefix cache and its disk tier; ``--max-kv-size`` and ``--kv-bits``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlx_magic.errors import UserError
from mlx_magic.magics.session import say_if_busy
from mlx_magic.units import gib, gib_to_bytes
from mlx_magic.vocabulary.caching import KV_BITS, KVCacheSettings, PrefixCacheSettings

if TYPE_CHECKING:
    from mlx_magic.magics.options import CellOptions
    from mlx_magic.magics.session import MagicsHost

#: The fewest tokens ``--max-kv-size`` keeps (mlx-lm's rotating cache always
#: keeps the first 4 as well).
MIN_KV_SIZE = 16


def command_cache(magics: MagicsHost, names: list[str], disk: bool = False) -> None:
    """``%mlx cache clear``: the prompt prefix, vision feature and image caches
    in memory; with ``--disk``, the disk cache's entries as well."""
    if names != ["clear"]:
        raise UserError("Usage: %mlx cache clear [--disk]")
    session = magics.session
    say_if_busy(session, "clearing the caches")
    dropped = session.runtime.clear_caches() if session.runtime_started else 0
    dropped += len(session.image_cache)
    session.image_cache.clear()
    print(f"Cleared {dropped} cached entries (prompt prefixes, vision features, images)")
    if disk:
        from mlx_magic.engine.disk_cache import clear

        held = clear(disk_folder(magics))
        print(
            f"Emptied the disk cache: {held.entries} prompt states, {gib(held.bytes):.2f} GiB "
            f"({held.folder})"
        )


def disk_status_line(magics: Any) -> str:
    """The disk cache's line of ``%mlx status``."""
    from mlx_magic.engine.disk_cache import summary

    folder = disk_folder(magics)
    if magics.disk_cache_gb <= 0 or not magics.prefix_cache:
        why = "disk_cache_gb is 0" if magics.disk_cache_gb <= 0 else "prefix_cache is off"
        return f"Disk cache: off ({why}; {folder})"
    held = summary(folder)
    return (
        f"Disk cache: {held.entries} prompt states of {held.models} model(s), "
        f"{gib(held.bytes):.2f} GiB of {magics.disk_cache_gb:g} GiB, in {held.folder} "
        f"(prompts of {magics.disk_cache_min_tokens:,}+ new tokens)"
    )


def disk_folder(settings: Any) -> Path:
    return Path(settings.disk_cache_dir).expanduser()


def prefix_cache_settings(settings: Any, remote: bool = False) -> PrefixCacheSettings:
    """The prefix cache's settings for a request: in memory, and on disk
    (``disk_cache_gb`` 0: no disk tier)."""
    on_disk = settings.disk_cache_gb > 0 and not remote
    return PrefixCacheSettings(
        enabled=settings.prefix_cache,
        max_entries=settings.prefix_cache_entries,
        max_bytes=gib_to_bytes(settings.prefix_cache_gb),
        disk_folder=str(disk_folder(settings)) if on_disk else None,
        disk_max_bytes=gib_to_bytes(settings.disk_cache_gb),
        disk_min_tokens=settings.disk_cache_min_tokens,
    )


def kv_cache_settings(
    options: CellOptions, settings: Any, kind: str, draft: bool
) -> KVCacheSettings:
    """``--max-kv-size`` and ``--kv-bits`` over their settings, checked
    (one line if not right). They shape mlx-lm's KV cache: text models, here.

    Args:
        kind: the model's kind (``"text"``, ``"vision"``); draft: a draft model decodes.
    """
    max_size = options.max_kv_size if options.max_kv_size is not None else settings.max_kv_size
    bits = options.kv_bits if options.kv_bits is not None else settings.kv_bits
    given = options.max_kv_size is not None or options.kv_bits is not None
    if max_size is not None and max_size < MIN_KV_SIZE:
        raise UserError(f"--max-kv-size must be at least {MIN_KV_SIZE} tokens, not {max_size}")
    if bits is not None and bits not in KV_BITS:
        raise UserError(f"--kv-bits takes 4 or 8, not {bits}")
    if bits is not None and max_size is not None:
        raise UserError(
            "--max-kv-size and --kv-bits do not go together (mlx-lm cannot quantize a "
            "rotating cache): keep one"
        )
    if given and settings.runtime == "remote":
        raise UserError(
            "--max-kv-size and --kv-bits shape the local KV cache: a server keeps its own "
            "(leave them out, or %mlx disconnect)"
        )
    if kind != "text":
        if given:
            raise UserError("--max-kv-size and --kv-bits are for text models (mlx-lm) for now")
        return KVCacheSettings()
    if max_size is not None and draft:
        # mlx-lm's speculative decoding rewinds the cache, which a rotating one cannot.
        raise UserError("--max-kv-size and --draft do not go together: keep one")
    return KVCacheSettings(max_size=max_size, bits=bits)
