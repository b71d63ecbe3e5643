"""The harness the benchmark scenarios share (see :mod:`mlx_magic.bench`).

* :class:`Context` - settings, the models (built or converted on first
  use) and fresh images shared by the scenarios; the texts they send.
* :class:`Kernel` - a real IPython kernel started with jupyter_client; cells
  are sent as a frontend sends them, every IOPub message is timestamped on
  arrival, and ``_mlx`` is read through the execute request's
  ``user_expressions`` (no extra cell, no extra output).
* :class:`InProcessText` / :class:`InProcessVision` - the baselines: raw
  ``mlx_lm.stream_generate`` / ``mlx_vlm.stream_generate`` in this process,
  with the very prompt token ids the magic sends (built by
  :func:`mlx_magic.engine.text_generation.prompt_token_ids`) and greedy sampling.
* :func:`cold_process` - ``python -m mlx_lm generate`` / ``python -m mlx_vlm
  generate`` in a fresh process, timed from spawn to the statistics line that
  follows the first token, with the prompt token count it printed.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from mlx_magic.errors import BenchError

# ---------------------------------------------------------------------------
# Texts (written for this benchmark)

SYSTEM_PROMPT = (
    "You are a careful assistant. Answer questions about the text the user gives you "
    "in one short sentence."
)

PARAGRAPH = (
    "The town of Linden Ford sits where two small rivers meet, and for most of its history "
    "it took its water straight from them. In 1887 a dry summer left the eastern river a "
    "chain of muddy pools, and an outbreak of fever that August convinced the town council "
    "to build a proper waterworks. The engineer they hired, Margaret Ellery, proposed a "
    "reservoir on Cobb Hill, three kilometres north of the town, fed by springs that never "
    "ran dry even in the worst droughts. Water would flow down to the town by gravity "
    "through a cast-iron main, so no pumps were needed. Construction began in the spring of "
    "1889 and took four years; the main alone used eleven hundred tonnes of iron, brought in "
    "by barge along the western river. When the reservoir was filled in 1893 it held about "
    "ninety million litres, enough for the whole town for two months. Ellery also insisted "
    "on a sand filter house at the foot of the hill, which the council thought an expensive "
    "luxury until the fever did not return. The filter house still stands today and is now "
    "a small museum, although the town has drawn most of its water from a deep well field "
    "since 1968. Every June the town holds a fair on Cobb Hill to celebrate the day the "
    "first water arrived, and children race paper boats down the old overflow channel."
)

QUESTIONS = [
    "In which year was the reservoir filled?",
    "Who was the engineer of the waterworks?",
    "How far from the town is Cobb Hill?",
    "Why were no pumps needed?",
    "How much iron did the main use?",
    "What made the council build the waterworks?",
    "What is the filter house used for today?",
    "Where has the town drawn its water since 1968?",
    "How long could the full reservoir supply the town?",
    "What happens every June on Cobb Hill?",
]

CONVERSATION = [
    "Hello! I am planning a small vegetable garden.",
    "Which vegetables are easy for a beginner?",
    "How often should I water tomatoes?",
    "And what about lettuce?",
    "Should I use compost?",
    "When should I plant carrots?",
    "How do I keep snails away?",
    "Thanks! Can you sum up your advice?",
]

SHORT_QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "How many legs does a spider have?",
    "What is the boiling point of water?",
    "Which planet is the largest?",
]

LONG_ANSWER_PROMPT = "Write a long story about a lighthouse keeper and a storm."
RAW_PROMPT = "The history of the city of Rome begins"
VISION_PROMPTS = ["Describe this image.", "What is in the picture?"]

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


# ---------------------------------------------------------------------------
# Context: settings, models and images shared by the scenarios


@dataclass
class Context:
    quick: bool
    progress: Callable[[str], None]
    work: Path
    reps: int
    prefix: str = ""
    _baselines: dict = field(default_factory=dict)
    _image_count: int = 0

    @classmethod
    def create(cls, *, quick: bool, progress, work_dir=None) -> "Context":
        if work_dir is None:
            from mlx_magic.models.embedded import cache_root

            work_dir = cache_root() / "bench"
        work = Path(work_dir).expanduser()
        (work / "images").mkdir(parents=True, exist_ok=True)
        return cls(quick=quick, progress=progress, work=work, reps=1 if quick else 3)

    def say(self, line: str) -> None:
        self.progress(f"{self.prefix} {line}")

    @property
    def tiny_llama(self) -> Path:
        from mlx_magic.testing.tiny_models import build_tiny_llama

        return build_tiny_llama(self.work / "tiny-llama")

    @property
    def tiny_vlm(self) -> Path:
        from mlx_magic.testing.tiny_models import build_tiny_vlm

        return build_tiny_vlm(self.work / "tiny-qwen2-vl")

    @property
    def smollm2(self) -> Path:
        """The converted folder of the embedded model (converted here if needed)."""
        from mlx_magic.models.gguf import convert_gguf
        from mlx_magic.models.resolve import embedded_spec

        spec = embedded_spec()
        return convert_gguf(spec.gguf, spec.path)

    def aliases(self) -> str:
        """A ``%config`` line naming the tiny models ``tiny-llama`` and ``tiny-vlm``."""
        aliases = {"tiny-llama": str(self.tiny_llama), "tiny-vlm": str(self.tiny_vlm)}
        return f"%config MLXMagics.aliases = {aliases!r}"

    def fresh_image(self, size: int = 224) -> Path:
        """A new random PNG (never seen by any cache).

        Smooth random colour fields with a little grain: they compress about
        as well as a photo does (pure noise would not compress at all).
        """
        import numpy as np
        from PIL import Image

        self._image_count += 1
        seed = time.time_ns() % (2**32)
        rng = np.random.default_rng(seed)
        coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), np.int16)
        grain = rng.integers(-6, 7, smooth.shape, dtype=np.int16)
        pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        path = self.work / "images" / f"bench-{os.getpid()}-{seed}-{self._image_count}.png"
        Image.fromarray(pixels).save(path)
        return path

    def text_baseline(self, path: Path) -> "InProcessText":
        key = ("text", str(path))
        if key not in self._baselines:
            self._baselines[key] = InProcessText(path)
        return self._baselines[key]

    def vision_baseline(self, path: Path) -> "InProcessVision":
        key = ("vision", str(path))
        if key not in self._baselines:
            self._baselines[key] = InProcessVision(path)
        return self._baselines[key]


# ---------------------------------------------------------------------------
# A real kernel


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
        """From sending the request to the arrival of the first streamed stdout text."""
        for arrived, message in self.messages:
            if message["msg_type"] == "stream" and message["content"].get("name") == "stdout":
                return arrived - self.sent
        return None

    @property
    def stats(self) -> dict:
        return self.values.get("stats", {})

    def traffic(self) -> dict:
        return traffic_of(message for _, message in self.messages)


def traffic_of(messages) -> dict:
    """Count output messages and their content bytes (JSON, UTF-8, as on the wire)."""
    counted = {"messages": 0, "bytes": 0, "by_type": {}}
    for message in messages:
        kind = message["msg_type"]
        if kind not in OUTPUT_MESSAGES:
            continue
        size = len(json.dumps(message["content"], ensure_ascii=False).encode("utf-8"))
        counted["messages"] += 1
        counted["bytes"] += size
        entry = counted["by_type"].setdefault(kind, [0, 0])
        entry[0] += 1
        entry[1] += size
    return counted


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
        reply, replied = None, None
        if reply_first:
            reply, replied = self._reply(msg_id, deadline, code)
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
        if reply is None:
            reply, replied = self._reply(msg_id, deadline, code)
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


# ---------------------------------------------------------------------------
# Baselines in this process


def _sampler():
    from mlx_lm.sample_utils import make_sampler

    return make_sampler(temp=0.0)


class InProcessText:
    """Raw ``mlx_lm.stream_generate`` on a model loaded in this process."""

    def __init__(self, path: Path):
        from mlx_lm import load

        from mlx_magic.locking import gpu_lock

        self.path = path
        with gpu_lock:
            self.model, self.tokenizer = load(str(path))

    def prompt_ids(
        self, prompt: str, *, raw: bool = False, system: Optional[str] = None, history=()
    ) -> list[int]:
        from mlx_magic.engine.text_generation import prompt_token_ids
        from mlx_magic.runtime.values import GenerationRequest, ModelSpec

        request = GenerationRequest(
            model=ModelSpec("baseline", "baseline", str(self.path)),
            prompt=prompt,
            raw=raw,
            system=system,
            history=tuple(history),
        )
        return prompt_token_ids(self.tokenizer, request)

    def generate(
        self, prompt: str, max_tokens: int, *, raw: bool = False, system: Optional[str] = None
    ) -> dict:
        """Greedy; times the prompt's tokenisation, the prefill and every token."""
        import mlx.core as mx
        from mlx_lm import stream_generate

        from mlx_magic.locking import gpu_lock

        with gpu_lock:
            started = time.perf_counter()
            ids = self.prompt_ids(prompt, raw=raw, system=system)
            first = None
            tokens = []
            last = None
            for response in stream_generate(
                self.model, self.tokenizer, mx.array(ids), max_tokens=max_tokens, sampler=_sampler()
            ):
                if first is None:
                    first = time.perf_counter()
                last = response
                if response.finish_reason != "stop":
                    tokens.append(int(response.token))
            ended = time.perf_counter()
        return {
            "ttft_s": first - started,
            "generation_tps": last.generation_tps,
            "prompt_tokens": len(ids),
            "prompt_tps": last.prompt_tps,
            "token_ids": tokens,
            "finish_reason": last.finish_reason,
            "wall_s": ended - started,
        }


class InProcessVision:
    """Raw ``mlx_vlm.stream_generate`` on a model loaded in this process."""

    def __init__(self, path: Path):
        from mlx_vlm import load
        from mlx_vlm.utils import load_config

        from mlx_magic.locking import gpu_lock

        with gpu_lock:
            self.model, self.processor = load(str(path))
            self.config = load_config(str(path))

    def generate(self, prompt: str, image: Path, max_tokens: int) -> dict:
        from mlx_vlm import stream_generate
        from mlx_vlm.prompt_utils import apply_chat_template

        from mlx_magic.locking import gpu_lock

        with gpu_lock:
            started = time.perf_counter()
            text = apply_chat_template(self.processor, self.config, prompt, num_images=1)
            first = None
            last = None
            for response in stream_generate(
                self.model,
                self.processor,
                text,
                image=[str(image)],
                max_tokens=max_tokens,
                temperature=0.0,
            ):
                if first is None:
                    first = time.perf_counter()
                last = response
        return {"ttft_s": first - started, "prompt_tokens": last.prompt_tokens}


# ---------------------------------------------------------------------------
# Fresh processes

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
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    output = []
    ttft = prompt_tokens = prompt_tps = None
    try:
        for line in process.stdout:
            output.append(line)
            match = _STATS_LINE.match(line.strip())
            if match and ttft is None:
                ttft = time.perf_counter() - started
                prompt_tokens, prompt_tps = int(match.group(1)), float(match.group(2))
        code = process.wait()
    finally:
        timer.cancel()
    wall = time.perf_counter() - started
    text = b"".join(output).decode("utf-8", "replace")
    if code != 0 or ttft is None:
        raise BenchError(f"python -m {module} generate failed (exit {code}): {text[-400:]}")
    return {
        "ttft_s": ttft,
        "wall_s": wall,
        "prompt_tokens": prompt_tokens,
        "prompt_tps": prompt_tps,
        "prefill_s": prompt_tokens / prompt_tps,
        "output": text,
    }


# ---------------------------------------------------------------------------
# Helpers


def median(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ms(seconds: Optional[float]) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.0f} ms"


def cell(magic: str, flags: str, text: str) -> str:
    return f"%%{magic} {flags}\n{text}"
