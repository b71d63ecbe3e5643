"""A Hugging Face Hub on 127.0.0.1 that serves model folders, for the download tests.

Why not a package: ``hf-local-hub`` (PyPI 3.0.0) is a CLI around a Go server
binary that its wheel does not ship (``hf_local.cli.find_binary`` asks for
``make server``); ``olah`` (0.5.4) serves local repositories only as git
repositories, and its local-mirror file route streams the whole blob and
ignores ``Range`` (``server_file_routes.file_get_common`` →
``LocalMirrorRepo.get_file``), so huggingface_hub would restart every resumed
file from byte 0 (``file_download.http_get``: a 200 to a Range request
truncates the partial file) and a resume could not be tested. Measured with
olah 0.5.4 (``offline = true``, a git mirror of the 37.5 MiB test weights):
``Range: bytes=1000-1999`` was answered 200 with all 39,372,816 bytes.

So this is the smallest faithful Hub: the endpoints huggingface_hub calls for
``model_info``, ``list_repo_tree``, ``snapshot_download`` and ``hf_hub_download``,
with the Hub's headers (``X-Repo-Commit``, ``ETag``: a file's git blob id, or
its sha256 for a weights file, as git-lfs stores it; ``X-Error-Code`` on a
404). Files are served by Starlette's ``FileResponse``, which answers ``HEAD``
and ``Range`` itself. A throttle (bytes per second) and a count of the file
bytes sent sit in one ASGI wrapper around ``send``.
"""

import asyncio
import hashlib
import threading
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route

#: Files above this size are not read to name them (a test's sparse huge file).
_HASHED = 1 << 30


def _git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubRepo:
    """One model repository: a folder's files at one commit."""

    def __init__(self, repo_id, folder):
        self.repo_id = repo_id
        self.folder = Path(folder)
        self.files = {}
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            name = path.relative_to(self.folder).as_posix()
            lfs = path.suffix in (".safetensors", ".gguf", ".bin")
            size = path.stat().st_size
            if size > _HASHED:  # a sparse stand-in for a huge file: named, never read
                data = f"{name} {size}".encode()
            else:
                data = path.read_bytes()
            self.files[name] = {
                "path": path,
                "size": size,
                "blob_id": _git_blob_id(data),
                "sha256": hashlib.sha256(data).hexdigest() if lfs else None,
            }
        listing = "\n".join(f"{n} {f['blob_id']}" for n, f in self.files.items())
        self.sha = hashlib.sha1(f"{repo_id}\n{listing}".encode()).hexdigest()

    def entry(self, name):
        """The file as the Hub's tree and siblings list it."""
        info = self.files[name]
        entry = {"type": "file", "path": name, "size": info["size"], "oid": info["blob_id"]}
        if info["sha256"]:
            entry["lfs"] = {"oid": info["sha256"], "size": info["size"], "pointerSize": 134}
        return entry

    def etag(self, name):
        info = self.files[name]
        return info["sha256"] or info["blob_id"]


class LocalHub:
    """The server: ``hub.add("org/name", folder)``, then point ``HF_ENDPOINT`` at ``hub.url``.

    ``rate`` caps the file bytes sent per second (None: as fast as it goes);
    ``served`` counts the file bytes sent by GETs of ``/resolve/``.
    """

    def __init__(self):
        self.repos = {}
        self.rate = None
        self.served = 0
        self.served_by_path = {}
        self.active = 0  # file responses still being sent
        self.sending = None  # (first, last) time.monotonic() a file chunk was sent
        self.cut_after = None  # bytes of a file response after which the connection drops
        self.requests = []
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route("/api/models/{org}/{name}", self._model_info),
                Route("/api/models/{org}/{name}/revision/{rev}", self._model_info),
                Route("/api/models/{org}/{name}/tree/{rev}", self._tree),
                Route(
                    "/{org}/{name}/resolve/{rev}/{path:path}",
                    self._resolve,
                    methods=["GET", "HEAD"],
                ),
            ]
        )
        config = uvicorn.Config(
            self._metered(app), host="127.0.0.1", port=0, log_level="error", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the local Hub did not start")
            self._thread.join(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    @property
    def measured_rate(self):
        """The file bytes sent per second, from the first chunk to the last."""
        first, last = self.sending
        return self.served / max(last - first, 1e-6)

    def add(self, repo_id, folder):
        self.repos[repo_id] = HubRepo(repo_id, folder)
        return self.repos[repo_id]

    def close(self):
        self._server.should_exit = True
        self._thread.join(10)

    def reset_count(self):
        """Zero the count, once the responses of an earlier (stopped) client
        have ended: their last chunks must not count as the next run's."""
        while self.active:
            self._thread.join(0.01)
        with self._lock:
            self.served = 0
            self.sending = None
            self.served_by_path = {}

    # ---- the Hub's endpoints ------------------------------------------------

    def _repo(self, request):
        repo = self.repos.get(f"{request.path_params['org']}/{request.path_params['name']}")
        rev = request.path_params.get("rev", "main")
        if repo is None:
            return None, self._not_found("RepoNotFound", "Repository Not Found")
        if rev not in ("main", repo.sha):
            return None, self._not_found("RevisionNotFound", "Invalid rev id")
        return repo, None

    @staticmethod
    def _not_found(code, message):
        return JSONResponse({"error": message}, status_code=404, headers={"X-Error-Code": code})

    async def _model_info(self, request):
        repo, refused = self._repo(request)
        if refused:
            return refused
        siblings = []
        for name in repo.files:
            entry = repo.entry(name)
            sibling = {"rfilename": name, "size": entry["size"], "blobId": entry["oid"]}
            if "lfs" in entry:
                sibling["lfs"] = {
                    "sha256": entry["lfs"]["oid"],
                    "size": entry["size"],
                    "pointerSize": 134,
                }
            siblings.append(sibling)
        return JSONResponse(
            {
                "_id": repo.sha[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": repo.sha,
                "private": False,
                "gated": False,
                "disabled": False,
                "tags": [],
                "siblings": siblings,
            }
        )

    async def _tree(self, request):
        repo, refused = self._repo(request)
        if refused:
            return refused
        return JSONResponse([repo.entry(name) for name in repo.files])

    async def _resolve(self, request):
        repo, refused = self._repo(request)
        if refused:
            return refused
        name = request.path_params["path"]
        if name not in repo.files:
            return self._not_found("EntryNotFound", "Entry not found")
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{repo.etag(name)}"'}
        return FileResponse(repo.files[name]["path"], headers=headers)

    # ---- throttle and count ---------------------------------------------------

    def _metered(self, app):
        async def metered(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            counted = scope["method"] == "GET" and "/resolve/" in scope["path"]
            self.requests.append((scope["method"], scope["path"]))

            sent = 0

            async def send_metered(message):
                nonlocal sent
                if counted and message["type"] == "http.response.body":
                    size = len(message.get("body", b""))
                    sent += size
                    if self.cut_after is not None and sent > self.cut_after:
                        raise ConnectionAbortedError("the Hub dropped the connection")
                    if self.rate and size:
                        await asyncio.sleep(size / self.rate)
                    with self._lock:
                        self.served += size
                        now = time.monotonic()
                        self.sending = ((self.sending or (now, now))[0], now)
                        path = scope["path"]
                        self.served_by_path[path] = self.served_by_path.get(path, 0) + size
                await send(message)

            if not counted:
                return await app(scope, receive, send)
            with self._lock:
                self.active += 1
            try:
                return await app(scope, receive, send_metered)
            finally:
                with self._lock:
                    self.active -= 1

        return metered


def fat_tiny_llama(folder):
    """A tiny llama whose weights file is large enough (≈ 34 MiB, float32) to
    span several of huggingface_hub's 10 MiB download chunks: an interrupt can
    land in the middle of it and leave a partial file to resume."""
    from mlx_magic.testing.tiny_models import build_tiny_llama

    return build_tiny_llama(folder, hidden_size=512, num_layers=4, num_heads=8, num_kv_heads=4)


if __name__ == "__main__":  # a manual check: python tests/hub_server.py FOLDER org/name
    import sys

    hub = LocalHub()
    hub.add(sys.argv[2], sys.argv[1])
    print(f"HF_ENDPOINT={hub.url}")
    threading.Event().wait()
