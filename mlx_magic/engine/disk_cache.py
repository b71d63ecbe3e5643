"""The prefix cache's tier on disk: long prompts' KV state, kept across restarts.

A prompt that had to read at least ``disk_min_tokens`` tokens from scratch (a
pasted document, say) is, after its answer, also written with mlx-lm's own
prompt-cache files (:func:`mlx_lm.models.cache.save_prompt_cache`:
safetensors with metadata) to ``<folder>/<model id>/<tokens hash>.safetensors``.
The model id hashes the model's key, its weights (their files' names and sizes,
as the provenance record has them) and the KV cache's form, so another model,
the same name with other weights, or another form of cache never finds it. The
metadata holds the token ids: after a restart the in-memory
:class:`~mlx_magic.engine.prefix_cache.PrefixCache` asks :meth:`DiskPromptCache.nearest`
for the entry that shares the longest beginning with a new prompt, puts it in
its trie and reuses it as it does its own entries (one path for both tiers).

The folder is bounded: after each write the least recently used entries (by
modification time, which a hit refreshes: many file systems keep no access
times) go until it holds at most ``disk_max_bytes``, all models together. A
file is written under a hidden temporary name and renamed, so a kernel stopped
mid-write leaves no half entry, and a reader never sees one.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

if TYPE_CHECKING:
    from mlx_magic.vocabulary.values import GenerationRequest

SUFFIX = ".safetensors"
#: A half-written file this old was left by a process stopped mid-write.
STALE_PARTIAL_S = 3600
#: How long a process that exits waits for the states still to be written.
EXIT_WAIT_S = 30.0
FORMAT = "mlx_magic.prompt_cache/1"
#: save_prompt_cache stores our metadata as the first of its three trees.
_META = "0."


@dataclass(frozen=True)
class DiskEntry:
    """One prompt state on disk and the token ids it holds."""

    path: Path
    tokens: tuple


@dataclass(frozen=True)
class DiskSummary:
    """What the disk cache holds, all models together (``%mlx status``)."""

    folder: str
    entries: int
    bytes: int
    models: int


#: The token ids of files already read, by (path, size): a file never changes
#: under its name (the name is its tokens' hash), so its header is read once.
_TOKENS: dict[tuple[str, int], tuple] = {}


class DiskPromptCache:
    """One model's entries in the disk cache folder."""

    def __init__(
        self, root: Path, model_id: str, max_bytes: int, min_tokens: int, about: dict
    ) -> None:
        self.root = root
        self.folder = root / model_id
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens
        self._about = about

    def entries(self) -> list[DiskEntry]:
        found = []
        for path in _files(self.folder):
            tokens = _tokens_of(path)
            if tokens is not None:
                found.append(DiskEntry(path, tokens))
        return found

    def nearest(self, prompt: list[int]) -> tuple[Optional[DiskEntry], int]:
        """The entry whose tokens share the longest beginning with ``prompt``,
        and how many of the prompt's tokens it can give (its KV cache is
        trimmed to them; at least one prompt token is always read)."""
        best, best_usable = None, 0
        wanted = tuple(prompt)
        for entry in self.entries():
            common = len(os.path.commonprefix([entry.tokens, wanted]))
            usable = common if common == len(entry.tokens) else min(common, len(prompt) - 1)
            if usable > best_usable:
                best, best_usable = entry, usable
        return best, best_usable

    def load(self, entry: DiskEntry) -> Optional[list[Any]]:
        """The entry's KV cache (marked as just used), or ``None`` if it is gone
        or unreadable (a broken file is removed)."""
        from mlx_lm.models.cache import load_prompt_cache

        try:
            cache = load_prompt_cache(str(entry.path))
            os.utime(entry.path)
        except FileNotFoundError:
            return None
        except Exception:  # a damaged file: another run will write it again
            entry.path.unlink(missing_ok=True)
            return None
        return cache

    def worth_writing(self, prompt: list[int]) -> bool:
        """Whether ``prompt`` would read at least ``min_tokens`` from scratch
        with what the disk holds now."""
        if len(prompt) < self.min_tokens:
            return False
        _, usable = self.nearest(prompt)
        return len(prompt) - usable >= self.min_tokens

    def write(self, tokens: list[int], cache: list[Any]) -> Optional[Path]:
        """Write ``cache``, the KV state of ``tokens``, then keep the folder
        within its bound; ``None`` when the entry alone is over it."""
        from mlx_lm.models.cache import save_prompt_cache

        cache = _compact(cache)
        size = sum(int(layer.nbytes) for layer in cache)
        if size > self.max_bytes:
            return None
        ids = np.asarray(tokens, dtype="<u4")
        name = hashlib.sha256(ids.tobytes()).hexdigest()[:32] + SUFFIX
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / name
        partial = self.folder / f".{os.getpid()}-{name}"
        metadata = {
            **self._about,
            "format": FORMAT,
            "tokens": base64.b64encode(ids.tobytes()).decode("ascii"),
        }
        try:
            save_prompt_cache(str(partial), cache, metadata)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        _TOKENS[(str(target), target.stat().st_size)] = tuple(int(t) for t in tokens)
        keep_within(self.root, self.max_bytes)
        return target

    def write_later(
        self, prompt: list[int], seen: list[int], cache: list[Any]
    ) -> Optional[Callable[[], object]]:
        """What writes ``cache`` (the state of ``seen``: the prompt, the answer)
        after the answer, if ``prompt`` is worth it; ``None`` if not."""
        held = cached_length(cache)
        if held is None or held < len(prompt) or not self.worth_writing(prompt):
            return None
        tokens = list(seen[:held])
        _pending.add()

        def write() -> None:
            try:
                self.write(tokens, cache)
            except OSError:  # a full or read-only disk: the answer stands, unkept
                pass
            finally:
                _pending.done()

        return write


class _Pending:
    """The states promised to the disk and not written yet. A kernel restarted
    right after a long answer exits while its runtime thread (a daemon) may
    still be writing: the process waits for them at exit (``atexit`` runs
    before daemon threads are stopped), so "Restart & Run All" finds them."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()
        self._registered = False

    def add(self) -> None:
        with self._changed:
            self._count += 1
            if not self._registered:
                atexit.register(self.wait, EXIT_WAIT_S)
                self._registered = True

    def done(self) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def wait(self, timeout: float) -> bool:
        """Whether every promised state was written within ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self._count <= 0, timeout)


_pending = _Pending()


def disk_tier(model: dict, request: GenerationRequest) -> Optional[DiskPromptCache]:
    """A model's entries on disk for ``request``, or ``None`` when the disk
    tier is off (no folder, no room) or the cache cannot be kept (a rotating
    KV cache has forgotten its beginning: it is no prompt's state).

    Args:
        model: the model's provenance record (its name, key, weights' hash).
    """
    settings = request.prefix_cache
    if not settings.enabled or not settings.disk_folder or settings.disk_max_bytes <= 0:
        return None
    if request.kv_cache.max_size is not None:
        return None
    about = {
        "model": str(model.get("name")),
        "model_key": str(model.get("key")),
        "weights_sha256": str(model.get("weights_sha256")),
        "kv_cache": kv_form(request),
    }
    model_id = hashlib.sha256(
        json.dumps([about["model_key"], about["weights_sha256"], about["kv_cache"]]).encode()
    ).hexdigest()[:16]
    return DiskPromptCache(
        Path(settings.disk_folder).expanduser(),
        model_id,
        settings.disk_max_bytes,
        settings.disk_min_tokens,
        about,
    )


def kv_form(request: GenerationRequest) -> str:
    """The KV cache's form, as the prefix cache keys its entries: a state of
    one form is never handed to a generation of another."""
    bits = request.kv_cache.bits
    return "model" if bits is None else f"kv{bits}"


def _compact(cache: list[Any]) -> list[Any]:
    """``cache`` with each plain layer cut to the tokens it holds: mlx-lm's
    ``KVCache`` grows by 256 positions at a time and its state is the whole
    buffer, so a 337-token prompt would be written as 512 (the layers written
    are views: the cache in memory is left as it is)."""
    from mlx_lm.models.cache import KVCache

    compact = []
    for layer in cache:
        if type(layer) is KVCache and layer.keys is not None and layer.offset < layer.keys.shape[2]:
            cut = KVCache()
            end = layer.offset
            cut.state = (layer.keys[..., :end, :], layer.values[..., :end, :], end)
            layer = cut
        compact.append(layer)
    return compact


def cached_length(cache: list[Any]) -> Optional[int]:
    """How many tokens ``cache`` holds (``None`` if its layers disagree or cannot say)."""
    offsets = {getattr(layer, "offset", None) for layer in cache}
    if len(offsets) != 1 or None in offsets:
        return None
    return offsets.pop()


def keep_within(root: Path, max_bytes: int) -> None:
    """Remove the least recently used entries until ``root`` holds at most
    ``max_bytes`` (and what a stopped writer left half-written an hour ago)."""
    files = []
    for folder in _model_folders(root):
        _drop_stale_partials(folder)
        for path in _files(folder):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            files.append((stat.st_mtime, stat.st_size, path))
    files.sort()
    total = sum(size for _, size, _ in files)
    for _, size, path in files:
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size


def summary(root: Path) -> DiskSummary:
    """The entries and bytes in the disk cache folder ``root``."""
    entries = size = models = 0
    for folder in _model_folders(root):
        files = _files(folder)
        models += bool(files)
        entries += len(files)
        size += sum(path.stat().st_size for path in files if path.exists())
    return DiskSummary(str(root), entries, size, models)


def clear(root: Path) -> DiskSummary:
    """Empty the disk cache folder ``root`` (its entries, and any half-written
    file); returns what it held."""
    held = summary(root)
    for folder in _model_folders(root):
        for path in folder.iterdir():
            if path.name.endswith(SUFFIX) and path.is_file():
                path.unlink(missing_ok=True)
    return held


def _drop_stale_partials(folder: Path) -> None:
    now = time.time()
    for path in folder.glob(".*" + SUFFIX):
        try:
            if now - path.stat().st_mtime > STALE_PARTIAL_S:
                path.unlink()
        except FileNotFoundError:
            pass


def _model_folders(root: Path) -> list[Path]:
    try:
        return [path for path in root.iterdir() if path.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _files(folder: Path) -> list[Path]:
    """The entries of one model's folder (half-written files are hidden)."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [folder / n for n in names if n.endswith(SUFFIX) and not n.startswith(".")]


def _tokens_of(path: Path) -> Optional[tuple]:
    """The token ids an entry holds, from its header alone (``None``: another
    format, left alone; or damaged, e.g. cut short by a full disk: removed)."""
    from safetensors import safe_open

    try:
        key = (str(path), path.stat().st_size)
    except FileNotFoundError:
        return None
    if key in _TOKENS:
        return _TOKENS[key]
    try:
        with safe_open(str(path), framework="numpy") as opened:
            metadata = opened.metadata() or {}
    except Exception:  # damaged: only complete files are renamed into the folder
        path.unlink(missing_ok=True)
        return None
    if metadata.get(_META + "format") != FORMAT:
        return None
    try:
        raw = base64.b64decode(metadata[_META + "tokens"])
    except (KeyError, ValueError):
        return None
    tokens = tuple(int(t) for t in np.frombuffer(raw, dtype="<u4"))
    _TOKENS[key] = tokens
    return tokens
