"""Hub downloads: what a model's first use will fetch, whether it fits the disk,
and the fetch itself, with progress, a stop and a resume.

Nothing here shows anything: the plan (:class:`HubPlan`) is a value and the
progress a callback of received bytes; :mod:`mlx_magic.magics.downloads` and
:mod:`mlx_magic.display.downloads` show them. The work is huggingface_hub's:
``model_info(files_metadata=True)`` lists the files and their sizes, the cache
tells which are here, ``snapshot_download`` fetches and lays out the cache,
and its ``tqdm_class`` hook reports the bytes and carries the stop.

Resume: huggingface_hub 2.x writes each download to a temporary file unique
to that call and deletes it when the call fails (``_download_to_tmp_and_move``),
so on its own an interrupted download starts again from byte 0. The weights
(the repository's git-lfs files, nearly all of a model's bytes) are therefore
fetched first by huggingface_hub's own ``http_get``, into the cache's
``blobs/<etag>.incomplete`` (the name huggingface_hub 0.x used for the same
job), continued with a ``Range`` request (``resume_size``) after an interrupt,
and renamed to ``blobs/<etag>`` when complete, under huggingface_hub's lock for
that blob; ``snapshot_download`` then links them into the snapshot as blobs it
already has and fetches the small files. This path is plain HTTP: a Hub file
stored on Xet is fetched through the Hub's HTTP bridge rather than by hf_xet.
"""

from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from mlx_magic.errors import DownloadStopped, HubUnreachable, ModelLoadError, UserError, one_line
from mlx_magic.units import human_bytes

#: The files of a Hub repository that a model needs: mlx-lm's own list
#: (``mlx_lm.utils.DEFAULT_ALLOW_PATTERNS``, pinned by a test), written out
#: because importing mlx-lm imports MLX, and resolution runs in the kernel.
HUB_ALLOW_PATTERNS = [
    "*.json",
    "model*.safetensors",
    "*.py",
    "tokenizer.model",
    "*.tiktoken",
    "tiktoken.model",
    "*.txt",
    "*.jsonl",
    "*.jinja",
]
#: And sentence-transformers' module folders (``2_Dense/model.safetensors``):
#: an embedding model's Dense layers, which mlx-vlm's ``load_embedding_model``
#: reads; other folders' weights (``onnx/``, ``original/``) are not fetched.
FETCHED = [*HUB_ALLOW_PATTERNS, "[0-9]_*/*.safetensors"]

#: Hears the bytes received, from huggingface_hub's download threads.
OnBytes = Callable[[int], None]


@dataclass(frozen=True)
class HubFile:
    """One file a model needs: its size, how many of its bytes are here (all
    once cached, a partial file's length, or 0), and its ETag (the sha256 of
    a git-lfs file, else its git blob id: the name of its blob in the cache)."""

    name: str
    size: int
    on_disk: int
    etag: str
    lfs: bool


@dataclass(frozen=True)
class HubPlan:
    """What fetching ``repo_id`` at ``commit`` will bring, and the room for it."""

    repo_id: str
    commit: str
    files: tuple[HubFile, ...]
    cache_dir: str
    free_bytes: int

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def on_disk_bytes(self) -> int:
        return sum(f.on_disk for f in self.files)

    @property
    def missing_bytes(self) -> int:
        return self.total_bytes - self.on_disk_bytes

    @property
    def complete(self) -> bool:
        return all(f.on_disk >= f.size for f in self.files)


def hub_cache_dir() -> Path:
    """huggingface_hub's cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    """``HF_HUB_OFFLINE`` is set: only the cache is used."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _repo_folder(repo_id: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return hub_cache_dir() / repo_folder_name(repo_id=repo_id, repo_type="model")


@contextmanager
def hub_errors(repo_id: str) -> Iterator[None]:
    """The Hub's refusals and a missing network as one :class:`ModelLoadError` line."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    try:
        yield
    except GatedRepoError as error:
        raise ModelLoadError(
            f"'{repo_id}' is gated on the Hugging Face Hub: accept its terms on its page, "
            "then log in (hf auth login)"
        ) from error
    except RepositoryNotFoundError as error:
        raise ModelLoadError(
            f"No model '{repo_id}' on the Hugging Face Hub: check the name (owner/name), or "
            "log in (hf auth login) if it is private"
        ) from error
    except HFValidationError as error:
        raise ModelLoadError(
            f"'{repo_id}' is not a valid Hugging Face Hub id ({error}): pass owner/name, a "
            "local model folder, or a .gguf file"
        ) from error
    except (httpx2.ConnectError, httpx2.TimeoutException, OfflineModeIsEnabled) as error:
        raise HubUnreachable(
            f"Could not reach the Hugging Face Hub to fetch '{repo_id}' (no network?): pass a "
            "local model folder, or set HF_HUB_OFFLINE=1 to use only the local cache"
        ) from error
    except HfHubHTTPError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelLoadError(f"The Hub refused '{repo_id}': {first_line}") from error


def plan_download(repo_id: str) -> HubPlan:
    """Ask the Hub which files ``repo_id`` has (one request), and see which are here.

    Raises:
        HubUnreachable: no answer (offline, no network).
        ModelLoadError: the Hub refused (no such model, gated…), one line.
    """
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.utils import filter_repo_objects

    with hub_errors(repo_id):
        info = HfApi().model_info(repo_id, files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings or []}
    names = filter_repo_objects(sorted(siblings), allow_patterns=FETCHED)
    blobs = _repo_folder(repo_id) / "blobs"
    files = []
    for name in names:
        sibling = siblings[name]
        size = sibling.lfs.size if sibling.lfs else (sibling.size or 0)
        etag = sibling.lfs.sha256 if sibling.lfs else (sibling.blob_id or "")
        if isinstance(try_to_load_from_cache(repo_id, name, revision=info.sha), str):
            on_disk = size
        elif (blobs / etag).is_file():
            on_disk = size  # fetched, not yet linked into the snapshot
        else:
            partial = blobs / f"{etag}.incomplete"
            on_disk = min(partial.stat().st_size, size) if partial.is_file() else 0
        files.append(HubFile(name, size, on_disk, etag, lfs=sibling.lfs is not None))
    return HubPlan(
        repo_id=repo_id,
        commit=info.sha or "",
        files=tuple(files),
        cache_dir=str(hub_cache_dir()),
        free_bytes=free_disk_bytes(hub_cache_dir()),
    )


def free_disk_bytes(folder: Path) -> int:
    """Free bytes on the disk that holds ``folder`` (or will, once made)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(Path.cwd()).free


def check_disk(plan: HubPlan) -> None:
    """Refuse, before anything is fetched, a download the disk cannot hold.

    Raises:
        UserError: one line with both numbers.
    """
    if plan.missing_bytes > plan.free_bytes:
        raise UserError(
            f"Not enough disk for '{plan.repo_id}': it needs {human_bytes(plan.missing_bytes)}, "
            f"{human_bytes(plan.free_bytes)} free in {plan.cache_dir} (free some space, "
            "%mlx rm a model, or set HF_HOME to a larger disk)"
        )


def fetch(
    repo_id: str,
    plan: Optional[HubPlan] = None,
    on_bytes: Optional[OnBytes] = None,
    stop: Optional[threading.Event] = None,
) -> Path:
    """The folder of ``repo_id``'s files, fetched as ``plan`` says (its weights
    resumably, then the rest), or found in the cache.

    Without a plan (offline, no network) ``snapshot_download`` alone decides:
    a complete cached copy serves. ``on_bytes(n)`` hears each chunk received;
    once ``stop`` is set, the next chunk raises :class:`DownloadStopped`.

    Raises:
        ModelLoadError: the Hub refused, no network and no complete copy here,
            or the download broke off (one line; the next run resumes).
        DownloadStopped: ``stop`` was set.
    """
    import httpx2
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    if plan is not None:
        snapshot = _repo_folder(repo_id) / "snapshots" / plan.commit
        if all((snapshot / f.name).is_file() for f in plan.files):
            return snapshot  # all here: no second request to the Hub
    progress = _progress_class(on_bytes, stop)
    try:
        with hub_errors(repo_id):
            if plan is not None:
                for file in plan.files:
                    if file.lfs and file.on_disk < file.size:
                        _fetch_blob(plan, file, progress)
            folder = snapshot_download(repo_id, allow_patterns=FETCHED, tqdm_class=progress)
    except LocalEntryNotFoundError as error:
        if offline():
            raise ModelLoadError(
                f"'{repo_id}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
                "set: download it on a connected machine or pass a local model folder"
            ) from error
        raise HubUnreachable(
            f"Could not fetch '{repo_id}' from the Hugging Face Hub (no network?): pass a "
            "local model folder, or set HF_HUB_OFFLINE=1 to use only the local cache"
        ) from error
    except (OSError, httpx2.HTTPError) as error:
        # The connection broke off for good (huggingface_hub retried), the disk
        # filled up, a file came short: what was written stays for the next run.
        raise ModelLoadError(
            f"Downloading '{repo_id}' failed ({one_line(error, 200)}): run it again to resume"
        ) from error
    return Path(folder)


def hub_plan(repo_id: str) -> Optional[HubPlan]:
    """The Hub's plan for ``repo_id``, or None when only the cache can answer
    (offline, no network).

    Raises:
        ModelLoadError: the Hub refused (one line).
    """
    if offline():
        return None
    try:
        return plan_download(repo_id)
    except HubUnreachable:
        return None


def fetch_quietly(repo_id: str) -> Path:
    """Plan, check the disk and fetch, showing nothing (resolution outside the
    magics: scripts, benchmarks, tests)."""
    plan = hub_plan(repo_id)
    if plan is not None:
        check_disk(plan)
    return fetch(repo_id, plan)


def _fetch_blob(plan: HubPlan, file: HubFile, progress: type) -> None:
    """One weights file into ``blobs/<etag>``, continuing a partial one."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import WeakFileLock, build_hf_headers

    folder = _repo_folder(plan.repo_id)
    blob = folder / "blobs" / file.etag
    partial = blob.with_name(f"{file.etag}.incomplete")
    lock = hub_cache_dir() / ".locks" / folder.name / f"{file.etag}.lock"
    blob.parent.mkdir(parents=True, exist_ok=True)
    lock.parent.mkdir(parents=True, exist_ok=True)
    headers = build_hf_headers()
    # The file's own address (the Hub redirects weights to its storage).
    url = hf_hub_url(plan.repo_id, file.name, revision=plan.commit)
    location = get_hf_file_metadata(url, headers=headers).location
    with WeakFileLock(lock):
        if blob.is_file():
            return  # another download finished it meanwhile
        with partial.open("ab") as out:
            http_get(
                location,
                out,
                resume_size=out.tell(),
                headers=headers,
                expected_size=file.size,
                tqdm_class=progress,
            )
        os.replace(partial, blob)


#: The bars that count bytes received: http_get's own (a weights file), and
#: snapshot_download's transfer bar (the others count files, or bytes
#: written, which includes the start of a resumed file).
_BYTE_BARS = ("huggingface_hub.http_get", "huggingface_hub.snapshot_download.transfer")


def _progress_class(on_bytes: Optional[OnBytes], stop: Optional[threading.Event]) -> type:
    """A tqdm class for huggingface_hub that draws nothing: its byte bars
    report what is received to ``on_bytes``, and every bar stops the download
    once ``stop`` is set."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class Reporting(hf_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._reports = kwargs.get("name") in _BYTE_BARS
            kwargs["disable"] = True  # our display shows the download
            super().__init__(*args, **kwargs)

        def update(self, n: Optional[float] = 1) -> Optional[bool]:
            if stop is not None and stop.is_set():
                raise DownloadStopped()
            if self._reports and on_bytes is not None and n:
                on_bytes(int(n))
            return super().update(n)

    return Reporting
