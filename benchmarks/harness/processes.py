"""Processes the benchmark starts: :func:`cold_process` (``python -m mlx_lm generate``
/ ``python -m mlx_vlm generate``, timed from spawn to the first token) and
:class:`MlxLmServer` (``python -m mlx_lm.server`` on a loopback port)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

from benchmarks.harness.errors import BenchError

_STATS_LINE = re.compile(rb"^Prompt: (\d+) tokens, ([\d.]+) tokens-per-sec")


def cold_process(module: str, arguments: list, *, timeout: float = 600) -> dict:
    """``python -m module generate ...`` in a fresh process.

    ``ttft_s`` is the time from spawning the process to the arrival of the
    statistics line printed right after the generation (one token): the time
    a user waits for the first token, including Python's start, the imports and
    the model load. ``wall_s`` also includes the exit.
    """
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", module, "generate", *map(str, arguments)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None  # stdout=PIPE
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    output = []
    # (ttft, prompt tokens, prompt tokens/s), from the first statistics line.
    stats: Optional[tuple[float, int, float]] = None
    try:
        for line in process.stdout:
            output.append(line)
            match = _STATS_LINE.match(line.strip())
            if match and stats is None:
                ttft = time.perf_counter() - started
                stats = (ttft, int(match.group(1)), float(match.group(2)))
        code = process.wait()
    finally:
        timer.cancel()
    wall = time.perf_counter() - started
    text = b"".join(output).decode("utf-8", "replace")
    if code != 0 or stats is None:
        raise BenchError(f"python -m {module} generate failed (exit {code}): {text[-400:]}")
    ttft, prompt_tokens, prompt_tps = stats
    return {
        "ttft_s": ttft,
        "wall_s": wall,
        "prompt_tokens": prompt_tokens,
        "prompt_tps": prompt_tps,
        "prefill_s": prompt_tokens / prompt_tps,
        "output": text,
    }


class MlxLmServer:
    """``python -m mlx_lm.server`` for one model folder on a free loopback port."""

    def __init__(self, path: Path, work: Path):
        self.path = path
        work.mkdir(parents=True, exist_ok=True)
        (work / "hub").mkdir(exist_ok=True)  # an empty Hub cache: it serves just the folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log = work / f"server-{port}.log"
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(work / "hub"))
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlx_lm.server",
                    "--model",
                    str(path),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def __enter__(self) -> "MlxLmServer":
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError("mlx_lm.server exited: " + self._log_tail())
            try:
                with urllib.request.urlopen(self.url + "/v1/models", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.close()
        raise BenchError("mlx_lm.server did not start in 120 s: " + self._log_tail())

    def __exit__(self, *exc) -> None:
        self.close()

    def stream_directly(self, prompt: str, max_tokens: int) -> dict:
        """One greedy chat completion streamed straight from the server (httpx,
        no magic): its decode rate measured as the remote runtime measures it
        (tokens after the first over the time from the first streamed text to
        the last), so that remote mode's cost can be told from the server's."""
        import httpx
        from httpx_sse import connect_sse

        body = {
            "model": str(self.path),
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        first = last = None
        chunks = 0
        usage: dict[str, Any] = {}
        started = time.perf_counter()
        with httpx.Client(timeout=600) as client:
            with connect_sse(client, "POST", self.url + "/v1/chat/completions", json=body) as sse:
                for event in sse.iter_sse():
                    if event.data.strip() == "[DONE]":
                        break
                    data = event.json()
                    usage = data.get("usage") or usage
                    for choice in data.get("choices") or []:
                        if (choice.get("delta") or {}).get("content"):
                            now = time.perf_counter()
                            first = now if first is None else first
                            last = now
                            chunks += 1
        generated = int(usage.get("completion_tokens") or chunks)
        rate = (generated - 1) / (last - first) if first and last and last > first else 0.0
        return {
            "generation_tps": rate,
            "generation_tokens": generated,
            "ttft_s": (first - started) if first else None,
        }

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]
