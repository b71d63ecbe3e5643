"""A real IPython kernel with mlx_magic loaded, driven with jupyter_client as a
frontend drives it: :class:`Kernel`, the :class:`Cell` it returns, and
:func:`traffic_of`, which counts what the frontend receives."""

from __future__ import annotations

import ast
import json
import os
import queue
import subprocess
import time
from dataclasses import dataclass
from typing import Optional

from benchmarks.harness.errors import BenchError

# Message types that carry output to the frontend (what a notebook stores or renders).
OUTPUT_MESSAGES = (
    "stream",
    "display_data",
    "update_display_data",
    "comm_open",
    "comm_msg",
    "comm_close",
)

STATS_EXPRESSION = (
    "__import__('json').dumps(dict(__import__('dataclasses').asdict(_mlx.stats), "
    "text_chars=len(_mlx.text), text_bytes=len(_mlx.text.encode()), "
    "token_ids=[t.id for t in _mlx.tokens], finish_reason=_mlx.finish_reason))"
)

#: The session's background jobs (``-b``) in the kernel, as an expression: the
#: magics keep them on their session (older versions on the magics object).
JOBS_EXPRESSION = (
    "(lambda m: getattr(m, 'session', m).jobs)(get_ipython().find_magic('mlx', 'line').__self__)"
)


@dataclass
class Cell:
    """One executed cell as the client saw it."""

    code: str
    reply: dict
    sent: float
    replied: float
    messages: list  # (arrival perf_counter, message)
    values: dict

    @property
    def first_text_s(self) -> Optional[float]:
        """From sending the request to the arrival of the answer's first text:
        streamed stdout (``-f text``, terminals) or a Markdown block (the default
        in notebooks: one display output per block, updated in place)."""
        for arrived, message in self.messages:
            kind, content = message["msg_type"], message["content"]
            if kind == "stream" and content.get("name") == "stdout":
                return arrived - self.sent
            if (
                kind in ("display_data", "update_display_data")
                and (content.get("data", {}).get("text/markdown") or "").strip()
            ):
                return arrived - self.sent
        return None

    @property
    def stats(self) -> dict:
        return self.values.get("stats", {})

    def traffic(self) -> dict:
        return traffic_of(message for _, message in self.messages)


def traffic_of(messages) -> dict:
    """Count output messages and their content bytes (JSON, UTF-8, as on the wire)."""
    count = total = 0
    by_type: dict[str, list[int]] = {}  # message type: [messages, bytes]
    for message in messages:
        kind = message["msg_type"]
        if kind not in OUTPUT_MESSAGES:
            continue
        size = len(json.dumps(message["content"], ensure_ascii=False).encode("utf-8"))
        count += 1
        total += size
        entry = by_type.setdefault(kind, [0, 0])
        entry[0] += 1
        entry[1] += size
    return {"messages": count, "bytes": total, "by_type": by_type}


class Kernel:
    """An IPython kernel with mlx_magic loaded, driven as a frontend drives it."""

    def __init__(self, *setup: str):
        from jupyter_client.manager import start_new_kernel

        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        # The kernel's own stderr (a warning about TCP at every start) would
        # interleave with the progress lines; errors come back as messages.
        self.manager, self.client = start_new_kernel(
            kernel_name="python3", env=env, startup_timeout=120, stderr=subprocess.DEVNULL
        )
        #: IOPub messages of other requests (background jobs), with arrival times.
        self.others: list = []
        try:
            for code in ("%load_ext mlx_magic", *setup):
                self.execute(code, timeout=900)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Kernel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.client.stop_channels()
        finally:
            self.manager.shutdown_kernel(now=True)

    def send(
        self, code: str, *, expressions: Optional[dict] = None, cell_id: Optional[str] = None
    ) -> tuple[str, float]:
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": expressions or {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        message = self.client.session.msg(
            "execute_request", content, metadata={"cellId": cell_id} if cell_id else {}
        )
        sent = time.perf_counter()
        self.client.shell_channel.send(message)
        return message["header"]["msg_id"], sent

    def execute(
        self,
        code: str,
        *,
        expressions: Optional[dict] = None,
        cell_id: Optional[str] = None,
        timeout: float = 900,
        check: bool = True,
        reply_first: bool = False,
    ) -> Cell:
        """Run ``code``; wait for its reply and for the kernel to go idle.

        IOPub messages are timestamped as they arrive (the wait blocks on the
        IOPub socket). With ``reply_first`` the wait blocks on the shell socket
        first instead, so that the reply's arrival is timed exactly.
        """
        msg_id, sent = self.send(code, expressions=expressions, cell_id=cell_id)
        deadline = sent + timeout
        early = self._reply(msg_id, deadline, code) if reply_first else None
        messages = []
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise BenchError(f"timed out after {timeout:.0f} s: {code[:60]!r}")
            try:
                message = self.client.get_iopub_msg(timeout=min(remaining, 5.0))
            except queue.Empty:
                continue
            arrived = time.perf_counter()
            if message["parent_header"].get("msg_id") != msg_id:
                self.others.append((arrived, message))
                continue
            messages.append((arrived, message))
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        reply, replied = early if early is not None else self._reply(msg_id, deadline, code)
        cell = Cell(
            code=code,
            reply=reply,
            sent=sent,
            replied=replied,
            messages=messages,
            values=_expression_values(reply),
        )
        if check and reply.get("status") != "ok":
            raise BenchError(_error_line(code, reply, messages))
        return cell

    def _reply(self, msg_id: str, deadline: float, code: str) -> tuple[dict, float]:
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise BenchError(f"no reply in time: {code[:60]!r}")
            try:
                shell = self.client.get_shell_msg(timeout=min(remaining, 5.0))
            except queue.Empty:
                continue
            if shell["parent_header"].get("msg_id") == msg_id:
                return shell["content"], time.perf_counter()

    def generate(self, code: str, **kwargs) -> Cell:
        """Run a ``%%mlx`` cell and read ``_mlx`` in the same request."""
        return self.execute(code, expressions={"stats": STATS_EXPRESSION}, **kwargs)

    def drain(self, seconds: float = 0.2) -> None:
        """Collect stray IOPub messages (from background jobs) for ``seconds``."""
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            try:
                message = self.client.get_iopub_msg(timeout=0.02)
            except queue.Empty:
                continue
            self.others.append((time.perf_counter(), message))


def _expression_values(reply: dict) -> dict:
    values = {}
    for name, value in (reply.get("user_expressions") or {}).items():
        if value.get("status") != "ok":
            values[name] = {"error": value.get("evalue")}
            continue
        text = value["data"]["text/plain"]
        try:
            parsed = ast.literal_eval(text)
            values[name] = json.loads(parsed) if isinstance(parsed, str) else parsed
        except (ValueError, SyntaxError):
            values[name] = text
    return values


def _error_line(code: str, reply: dict, messages: list) -> str:
    errors = [m["content"] for _, m in messages if m["msg_type"] == "error"]
    streams = "".join(
        m["content"].get("text", "")
        for _, m in messages
        if m["msg_type"] == "stream" and m["content"].get("name") == "stderr"
    )
    detail = f"{reply.get('ename')}: {reply.get('evalue')}"
    if errors and not reply.get("evalue"):
        detail = f"{errors[0].get('ename')}: {errors[0].get('evalue')}"
    return f"cell failed ({detail}) {streams.strip()[-300:]} — cell: {code[:80]!r}"


def cell(magic: str, flags: str, text: str) -> str:
    """The source of a ``%%magic flags`` cell."""
    return f"%%{magic} {flags}\n{text}"
