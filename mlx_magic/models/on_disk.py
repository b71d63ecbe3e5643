"""The models on disk: the Hub models in huggingface_hub's cache (and those
whose first download was stopped), the GGUF files the product has converted;
and deleting a Hub model, for
``%mlx models --local`` and ``%mlx rm``.

huggingface_hub does the work: ``scan_cache_dir`` lists the cache (size,
last access, revisions), ``delete_revisions`` plans a deletion and
``execute`` runs it. Kind and quantization come from each model's
``config.json``. Nothing here shows anything: the listing is values.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from mlx_magic.errors import UserError
from mlx_magic.models.downloads import hub_cache_dir
from mlx_magic.models.resolve import model_kind


@dataclass(frozen=True)
class LocalModel:
    """A model on disk: a Hub download, or a converted GGUF file."""

    name: str
    size: int
    kind: str  # "text", "vision", or "?" (no readable config.json)
    quantization: str  # "4-bit", "8-bit" … or "" (full precision)
    last_used: float  # a timestamp
    source: str  # "hub", "partial" (a stopped first download) or "gguf"
    path: str


def local_models(gguf_root: Optional[Path] = None) -> list[LocalModel]:
    """The Hub models in huggingface_hub's cache, then the converted GGUF files
    under ``gguf_root`` (the product's conversion cache), most recently used first."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    found = []
    try:
        repos = [r for r in scan_cache_dir(hub_cache_dir()).repos if r.repo_type == "model"]
    except CacheNotFound:
        repos = []
    for repo in repos:
        newest = max(repo.revisions, key=lambda r: r.last_modified, default=None)
        config = _config(newest.snapshot_path) if newest is not None else None
        found.append(
            LocalModel(
                name=repo.repo_id,
                size=repo.size_on_disk,
                kind=_kind(config),
                quantization=_quantization(config),
                last_used=repo.last_accessed,
                source="hub",
                path=str(repo.repo_path),
            )
        )
    found += _partial_downloads({repo.repo_id for repo in repos})
    if gguf_root is not None and gguf_root.is_dir():
        for folder in sorted(gguf_root.iterdir()):
            marker = folder / "gguf_source.json"
            if not marker.is_file():
                continue  # not a finished conversion
            try:
                source = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                source = {}
            config = _config(folder)
            files = [p for p in folder.rglob("*") if p.is_file()]
            found.append(
                LocalModel(
                    name=str(source.get("file") or folder.name),
                    size=sum(p.stat().st_size for p in files),
                    kind=_kind(config),
                    quantization=_quantization(config),
                    last_used=max((p.stat().st_atime for p in files), default=0.0),
                    source="gguf",
                    path=str(folder),
                )
            )
    return sorted(found, key=lambda m: m.last_used, reverse=True)


def _partial_downloads(complete: set[str]) -> list[LocalModel]:
    """Hub models whose first download was stopped: huggingface_hub's scan
    skips a repository folder with no snapshot yet, but its partial weights
    take room (and the next run resumes them)."""
    found = []
    root = hub_cache_dir()
    for folder in sorted(root.glob("models--*")) if root.is_dir() else []:
        repo_id = folder.name[len("models--") :].replace("--", "/")
        if repo_id in complete or not folder.is_dir():
            continue
        files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
        found.append(
            LocalModel(
                name=repo_id,
                size=sum(p.stat().st_size for p in files),
                kind="?",
                quantization="",
                last_used=max((p.stat().st_mtime for p in files), default=0.0),
                source="partial",
                path=str(folder),
            )
        )
    return found


def _config(folder: Path) -> Optional[dict]:
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def _kind(config: Optional[dict]) -> str:
    return "?" if config is None else model_kind(config)


def _quantization(config: Optional[dict]) -> str:
    """mlx-lm writes ``quantization: {bits, group_size}``; transformers' own
    checkpoints ``quantization_config``."""
    if not config:
        return ""
    settings = config.get("quantization") or config.get("quantization_config") or {}
    bits = settings.get("bits") if isinstance(settings, dict) else None
    return f"{bits}-bit" if bits else ""


@dataclass(frozen=True)
class Removal:
    """What deleting a Hub model frees, and how (``run()`` deletes)."""

    repo_id: str
    size: int
    run: Callable[[], None]


def removal(repo_id: str) -> Removal:
    """How to delete every revision of ``repo_id`` from huggingface_hub's cache.

    Raises:
        UserError: it is not there.
    """
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(hub_cache_dir())
    except CacheNotFound:
        cache = None
    repo = next(
        (
            r
            for r in (cache.repos if cache else ())
            if r.repo_type == "model" and r.repo_id == repo_id
        ),
        None,
    )
    if repo is None:
        partial = next((m for m in _partial_downloads(set()) if m.name == repo_id), None)
        if partial is not None:  # a stopped first download: its folder goes
            folder = Path(partial.path)
            return Removal(repo_id, partial.size, lambda: shutil.rmtree(folder))
    if cache is None or repo is None:
        raise UserError(
            f"'{repo_id}' is not in the Hugging Face cache ({hub_cache_dir()}): "
            "%mlx models --local lists what is"
        )
    strategy = cache.delete_revisions(*(r.commit_hash for r in repo.revisions))
    folder = repo.repo_path

    def run() -> None:
        strategy.execute()
        # A repository left without revisions may still hold partial downloads.
        if folder.is_dir() and not any((folder / "snapshots").glob("*")):
            shutil.rmtree(folder, ignore_errors=True)

    return Removal(repo_id=repo_id, size=repo.size_on_disk, run=run)
