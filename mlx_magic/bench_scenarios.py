"""The scenarios of :mod:`mlx_magic.bench`, and the harness they share.

Each scenario is a function ``name(context, result)`` that fills a
:class:`~mlx_magic.bench.ScenarioResult` as it goes (so a scenario that
fails half way keeps what it measured). The harness:

* :class:`Kernel` - a real IPython kernel started with jupyter_client; cells
  are sent as a frontend sends them, every IOPub message is timestamped on
  arrival, and ``_mlx`` is read through the execute request's
  ``user_expressions`` (no extra cell, no extra output).
* :class:`InProcessText` / :class:`InProcessVision` - the baselines: raw
  ``mlx_lm.stream_generate`` / ``mlx_vlm.stream_generate`` in this process,
  with the very prompt token ids the magic sends (built by
  :func:`mlx_magic.text_generation.prompt_token_ids`) and greedy sampling.
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

from .bench import DIFFERENCE, RATIO, SPEEDUP, Metric, ScenarioResult

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
OUTPUT_MESSAGES = ("stream", "display_data", "update_display_data", "comm_open", "comm_msg",
                   "comm_close")

STATS_EXPRESSION = (
    "__import__('json').dumps(dict(__import__('dataclasses').asdict(_mlx.stats), "
    "text_chars=len(_mlx.text), text_bytes=len(_mlx.text.encode()), "
    "token_ids=[t.id for t in _mlx.tokens], finish_reason=_mlx.finish_reason))"
)


class BenchError(RuntimeError):
    """A cell or a process of the benchmark failed."""


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
            from .embedded import cache_root

            work_dir = cache_root() / "bench"
        work = Path(work_dir).expanduser()
        (work / "images").mkdir(parents=True, exist_ok=True)
        return cls(quick=quick, progress=progress, work=work, reps=1 if quick else 3)

    def say(self, line: str) -> None:
        self.progress(f"{self.prefix} {line}")

    @property
    def tiny_llama(self) -> Path:
        from .tiny_models import build_tiny_llama

        return build_tiny_llama(self.work / "tiny-llama")

    @property
    def tiny_vlm(self) -> Path:
        from .tiny_models import build_tiny_vlm

        return build_tiny_vlm(self.work / "tiny-qwen2-vl")

    @property
    def smollm2(self) -> Path:
        """The converted folder of the embedded model (converted here if needed)."""
        from .gguf import convert_gguf
        from .models import embedded_spec

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
        self.manager, self.client = start_new_kernel(kernel_name="python3", env=env,
                                                     startup_timeout=120,
                                                     stderr=subprocess.DEVNULL)
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

    def send(self, code: str, *, expressions: Optional[dict] = None,
             cell_id: Optional[str] = None) -> tuple[str, float]:
        content = {"code": code, "silent": False, "store_history": True,
                   "user_expressions": expressions or {}, "allow_stdin": False,
                   "stop_on_error": True}
        message = self.client.session.msg("execute_request", content,
                                          metadata={"cellId": cell_id} if cell_id else {})
        sent = time.perf_counter()
        self.client.shell_channel.send(message)
        return message["header"]["msg_id"], sent

    def execute(self, code: str, *, expressions: Optional[dict] = None,
                cell_id: Optional[str] = None, timeout: float = 900,
                check: bool = True, reply_first: bool = False) -> Cell:
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
            if message["msg_type"] == "status" and \
                    message["content"]["execution_state"] == "idle":
                break
        if reply is None:
            reply, replied = self._reply(msg_id, deadline, code)
        cell = Cell(code=code, reply=reply, sent=sent, replied=replied, messages=messages,
                    values=_expression_values(reply))
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
    streams = "".join(m["content"].get("text", "") for _, m in messages
                      if m["msg_type"] == "stream" and m["content"].get("name") == "stderr")
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

        from .locking import gpu_lock

        self.path = path
        with gpu_lock:
            self.model, self.tokenizer = load(str(path))

    def prompt_ids(self, prompt: str, *, raw: bool = False, system: Optional[str] = None,
                   history=()) -> list[int]:
        from .protocol import GenerationRequest, ModelSpec
        from .text_generation import prompt_token_ids

        request = GenerationRequest(model=ModelSpec("baseline", "baseline", str(self.path)),
                                    prompt=prompt, raw=raw, system=system,
                                    history=tuple(history))
        return prompt_token_ids(self.tokenizer, request)

    def generate(self, prompt: str, max_tokens: int, *, raw: bool = False,
                 system: Optional[str] = None) -> dict:
        """Greedy; times the prompt's tokenisation, the prefill and every token."""
        import mlx.core as mx
        from mlx_lm import stream_generate

        from .locking import gpu_lock

        with gpu_lock:
            started = time.perf_counter()
            ids = self.prompt_ids(prompt, raw=raw, system=system)
            first = None
            tokens = []
            last = None
            for response in stream_generate(self.model, self.tokenizer, mx.array(ids),
                                            max_tokens=max_tokens, sampler=_sampler()):
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

        from .locking import gpu_lock

        with gpu_lock:
            self.model, self.processor = load(str(path))
            self.config = load_config(str(path))

    def generate(self, prompt: str, image: Path, max_tokens: int) -> dict:
        from mlx_vlm import stream_generate
        from mlx_vlm.prompt_utils import apply_chat_template

        from .locking import gpu_lock

        with gpu_lock:
            started = time.perf_counter()
            text = apply_chat_template(self.processor, self.config, prompt, num_images=1)
            first = None
            last = None
            for response in stream_generate(self.model, self.processor, text, image=[str(image)],
                                            max_tokens=max_tokens, temperature=0.0):
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
    process = subprocess.Popen([sys.executable, "-m", module, "generate", *map(str, arguments)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
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
    return {"ttft_s": ttft, "wall_s": wall, "prompt_tokens": prompt_tokens,
            "prompt_tps": prompt_tps, "prefill_s": prompt_tokens / prompt_tps,
            "output": text}


# ---------------------------------------------------------------------------
# Helpers


def median(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ms(seconds: Optional[float]) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.0f} ms"


def cell(magic: str, flags: str, text: str) -> str:
    return f"%%{magic} {flags}\n{text}"


# ---------------------------------------------------------------------------
# Scenario: overhead


def overhead(context: Context, result: ScenarioResult) -> None:
    """Decode tokens/s and time to first token: raw mlx-lm against %%mlx in a kernel."""
    result.title = (
        "Raw `mlx_lm.stream_generate` in the benchmark process against `%%mlx` in a real kernel, "
        "same prompt token ids (the chat template applied by "
        "`mlx_magic.text_generation.prompt_token_ids` on both sides), greedy, same max tokens. "
        "The prefix cache is **off** in the kernel (`%config MLXMagics.prefix_cache = False`), so "
        "every repetition prefills the whole prompt, as the baseline does. Decode speed is "
        "mlx-lm's own `generation_tps` on both sides (it includes the time the consumer of the "
        "generator spends per token, i.e. the magic's per-token work). TTFT is measured on the "
        "runtime side (`_mlx.stats.ttft_s`: job start to first token, tokenisation included, as "
        "in the baseline) and as the frontend sees it (execute request sent → first stdout "
        "stream message received)."
    )
    if context.quick:
        plans = [("smollm2", "smollm2", RAW_PROMPT, True, 3, 0.99),
                 ("tiny llama", "tiny-llama", LONG_ANSWER_PROMPT, False, 60, 0.95)]
    else:
        plans = [("smollm2", "smollm2", LONG_ANSWER_PROMPT, False, 24, 0.99),
                 ("tiny llama", "tiny-llama", LONG_ANSWER_PROMPT, False, 400, 0.95)]
    reps = context.reps
    result.setup = {
        "reps": reps if context.quick else f"{reps + 1} (smollm2), {4 * reps} (tiny llama), ABBA order",
        "models": ", ".join(f"{label} (-n {n}{', --raw' if raw else ''})"
                            for label, _, _, raw, n, _ in plans),
        "prompt": repr(plans[0][2]),
        "stream_interval_ms": 200,
    }
    series = result.series
    series.update(models=[], baseline_tps=[], ours_tps=[])
    context.say("starting a kernel")
    with Kernel(context.aliases(), "%config MLXMagics.prefix_cache = False") as kernel:
        for label, model, prompt, raw, max_tokens, decode_target in plans:
            # Single decode rates vary by ±10-30% on a shared machine; repetitions of the
            # tiny model take a second, so it gets many; SmolLM2 gets one full ABBA cycle.
            if context.quick:
                model_reps = reps
            else:
                model_reps = reps + 1 if model == "smollm2" else 4 * reps
            context.say(f"{label}: loading in the kernel and here")
            kernel.execute(f"%mlx load {model}")
            path = context.smollm2 if model == "smollm2" else context.tiny_llama
            baseline = context.text_baseline(path)
            flags = f"-m {model} -n {max_tokens}" + (" --raw" if raw else "")
            code = cell("mlx", flags, prompt)
            # One short untimed round on each side: first calls allocate.
            baseline.generate("Hello", 2, raw=True)
            kernel.generate(cell("mlx", f"-m {model} -n 2 --raw", "Hello"))
            base_runs, our_cells = [], []
            for rep in range(1, model_reps + 1):
                # ABBA order: a load that drifts during the run hits both sides alike.
                if rep % 2:
                    base = baseline.generate(prompt, max_tokens, raw=raw)
                    ours = kernel.generate(code)
                else:
                    ours = kernel.generate(code)
                    base = baseline.generate(prompt, max_tokens, raw=raw)
                base_runs.append(base)
                our_cells.append(ours)
                context.say(
                    f"{label} rep {rep}/{model_reps}: decode {base['generation_tps']:.1f} vs "
                    f"{ours.stats['generation_tps']:.1f} tok/s; TTFT {ms(base['ttft_s'])} vs "
                    f"{ms(ours.stats['ttft_s'])} (visible {ms(ours.first_text_s)})")
            metrics = _overhead_metrics(label, base_runs, our_cells, decode_target)
            result.metrics += metrics
            series["models"].append(label)
            series["baseline_tps"].append(metrics[0].baseline_median)
            series["ours_tps"].append(metrics[0].ours_median)
            result.notes.append(_overhead_note(label, base_runs, our_cells))


def _overhead_metrics(label, base_runs, our_cells, decode_target) -> list:
    return [
        Metric("overhead", f"decode tok/s, {label}", "tok/s",
               [b["generation_tps"] for b in base_runs],
               [c.stats["generation_tps"] for c in our_cells],
               "mlx_lm.stream_generate", "%%mlx (_mlx.stats)", RATIO,
               f"≥ {decode_target}×",
               _ratio_at_least(base_runs, our_cells, decode_target)),
        Metric("overhead", f"TTFT, {label} (runtime side)", "s",
               [b["ttft_s"] for b in base_runs], [c.stats["ttft_s"] for c in our_cells],
               "in process", "_mlx.stats.ttft_s", DIFFERENCE, "< +20 ms",
               median([c.stats["ttft_s"] for c in our_cells])
               - median([b["ttft_s"] for b in base_runs]) < 0.020),
        Metric("overhead", f"TTFT, {label} (as the frontend sees it)", "s",
               [b["ttft_s"] for b in base_runs], [c.first_text_s for c in our_cells],
               "in process", "request sent → first stdout message", DIFFERENCE, "< +20 ms",
               median([c.first_text_s for c in our_cells])
               - median([b["ttft_s"] for b in base_runs]) < 0.020),
    ]


def _ratio_at_least(base_runs, our_cells, target) -> bool:
    base = median([b["generation_tps"] for b in base_runs])
    ours = median([c.stats["generation_tps"] for c in our_cells])
    return ours / base >= target


def _overhead_note(label, base_runs, our_cells) -> str:
    same_tokens = all(b["token_ids"] == c.stats["token_ids"] for b, c in zip(base_runs, our_cells))
    prompt_tokens = {b["prompt_tokens"] for b in base_runs} | {c.stats["prompt_tokens"]
                                                               for c in our_cells}
    generated = sorted({len(b["token_ids"]) for b in base_runs})
    paired = [c.stats["ttft_s"] - b["ttft_s"] for b, c in zip(base_runs, our_cells)]
    ratios = [c.stats["generation_tps"] / b["generation_tps"] for b, c in zip(base_runs, our_cells)]
    spread_tps = [b["generation_tps"] for b in base_runs]
    visible_extra = [c.first_text_s - c.stats["ttft_s"] for c in our_cells]
    spread = max(b["ttft_s"] for b in base_runs) - min(b["ttft_s"] for b in base_runs)
    streams = [sum(1 for _, m in c.messages if m["msg_type"] == "stream") for c in our_cells]
    return (
        f"**{label}:** prompt {'/'.join(map(str, sorted(prompt_tokens)))} tokens on both sides, "
        f"{'/'.join(map(str, generated))} tokens generated; the magic generated "
        f"{'the same' if same_tokens else 'DIFFERENT'} token ids as the baseline. "
        f"Decode ratio per repetition (ours ÷ the baseline run next to it): "
        f"{', '.join(f'{r:.2f}' for r in ratios)} (median {median(ratios):.3f}); the baseline "
        f"alone ranged from {min(spread_tps):.3g} to {max(spread_tps):.3g} tok/s. "
        f"Paired TTFT differences (ours − baseline, per repetition): "
        f"{', '.join(f'{d * 1000:+.0f} ms' for d in paired)}; the baseline's own TTFT varied by "
        f"{spread * 1000:.0f} ms between repetitions. Between the runtime's first token and the "
        f"frontend receiving the first text: {', '.join(ms(v) for v in visible_extra)} "
        f"({', '.join(map(str, streams))} stream messages per answer; after the first text, "
        f"`buffering.TokenBuffer` batches tokens by count and by time)."
    )


# ---------------------------------------------------------------------------
# Scenario: traffic


def traffic(context: Context, result: ScenarioResult) -> None:
    """IOPub messages and bytes per generation, against the answer's length."""
    sizes = (100, 400) if context.quick else (500, 2000, 8000)
    background_size = sizes[-1] if context.quick else 2000
    reps = 1 if context.quick else 2
    result.title = (
        "Output messages (stream, display_data, update_display_data, comm_*) of one `%%mlx` "
        "cell, and their bytes (the JSON content of each message, UTF-8, as sent), at growing "
        f"answer lengths: tiny llama, `--raw`, greedy, a prompt that does not stop early "
        f"(`{RAW_PROMPT}`). The baseline column is the answer text itself (its UTF-8 bytes): "
        "the least any frontend must receive. Target: bytes < 3 × text + 512 B per output "
        "message (the JSON framing and the status/footer displays are a constant per update). "
        f"The last rows measure a background job (`-b`, ipywidgets) of {background_size} tokens, "
        "counting every comm message until `%mlx wait` returns."
    )
    result.setup = {"reps": f"{reps} (1 at 8000 tokens)" if not context.quick else 1,
                    "tokens": ", ".join(map(str, sizes)), "stream_interval_ms": 200}
    series = result.series
    series.update(tokens=[], bytes=[], text_bytes=[], limit=[], messages=[])
    with Kernel(context.aliases(), "%mlx load tiny-llama") as kernel:
        kernel.generate(cell("mlx", "-m tiny-llama -n 20 --raw", RAW_PROMPT))  # warm-up
        for size in sizes:
            samples = []
            # The longest answer is measured once: its counts barely vary.
            size_reps = 1 if size >= 8000 else reps
            for rep in range(1, size_reps + 1):
                ours = kernel.generate(cell("mlx", f"-m tiny-llama -n {size} --raw", RAW_PROMPT),
                                       timeout=1800)
                counted = ours.traffic()
                counted["text_bytes"] = ours.stats["text_bytes"]
                counted["text_chars"] = ours.stats["text_chars"]
                counted["tokens"] = ours.stats["generation_tokens"]
                samples.append(counted)
                context.say(f"{size} tokens rep {rep}/{size_reps}: {counted['messages']} messages, "
                            f"{counted['bytes']} B for {counted['text_bytes']} B of text")
            result.metrics += _traffic_metrics(f"{size} tokens", samples)
            series["tokens"].append(size)
            series["bytes"].append(median([s["bytes"] for s in samples]))
            series["text_bytes"].append(median([s["text_bytes"] for s in samples]))
            series["limit"].append(median([3 * s["text_bytes"] + 512 * s["messages"]
                                           for s in samples]))
            series["messages"].append(median([s["messages"] for s in samples]))
            detail = samples[-1]["by_type"]
            result.notes.append(
                f"**{size} tokens:** " + ", ".join(
                    f"{kind} {count} messages / {size_b} B" for kind, (count, size_b) in
                    sorted(detail.items())) + f"; {samples[-1]['tokens']} tokens generated, "
                f"{samples[-1]['text_chars']} characters.")
        _background_traffic(context, kernel, result, background_size)
    per_char = [b / t for b, t in zip(series["bytes"], series["text_bytes"]) if t]
    if len(per_char) >= 2:
        result.notes.append(
            "Bytes per byte of text at " + ", ".join(
                f"{n} tokens: {v:.2f}" for n, v in zip(series["tokens"], per_char))
            + " — flat or falling means the growth is linear (nothing is resent).")


def _traffic_metrics(label: str, samples: list, what: str = "%%mlx") -> list:
    passed = all(s["bytes"] < 3 * s["text_bytes"] + 512 * s["messages"] for s in samples)
    return [
        Metric("traffic", f"IOPub bytes, {label} ({what})", "B",
               [s["text_bytes"] for s in samples], [s["bytes"] for s in samples],
               "the answer text", "all output messages", RATIO,
               "< 3 × text + 512 B/update", passed),
        Metric("traffic", f"IOPub messages, {label} ({what})", "msgs",
               [], [s["messages"] for s in samples], "", "", RATIO, "", None),
    ]


def _background_traffic(context, kernel, result, size) -> None:
    kernel.drain(0.1)
    kernel.others.clear()
    code = cell("mlx", f"-b -m tiny-llama -n {size} --raw", RAW_PROMPT)
    started = kernel.execute(code)
    waited = kernel.execute("%mlx wait all")
    kernel.drain(0.5)
    # Widget updates go out with whichever request is current: the job's cell,
    # the wait cell, or none; the wait cell's own printed line is not counted.
    messages = [m for _, m in started.messages] + [m for _, m in kernel.others] + [
        m for _, m in waited.messages if m["msg_type"].startswith("comm")]
    counted = traffic_of(messages)
    values = kernel.execute("pass", expressions={"stats": STATS_EXPRESSION.replace(
        "_mlx", "get_ipython().find_magic('mlx', 'line').__self__.jobs.all()[-1].result")})
    stats = values.stats
    counted["text_bytes"] = stats.get("text_bytes", 0)
    counted["tokens"] = stats.get("generation_tokens", 0)
    context.say(f"-b {size} tokens: {counted['messages']} messages, {counted['bytes']} B "
                f"for {counted['text_bytes']} B of text")
    if counted["text_bytes"]:
        result.metrics += _traffic_metrics(f"{size} tokens", [counted], "-b, widgets")
        result.series["background_tokens"] = [size]
        result.series["background_bytes"] = [counted["bytes"]]
        result.notes.append(
            f"**-b, {size} tokens:** " + ", ".join(
                f"{kind} {count} messages / {size_b} B" for kind, (count, size_b) in
                sorted(counted["by_type"].items())) +
            f" for {counted['text_bytes']} B of text. Widget state is sent whole: every update "
            "resends the current text segment of `widget_view.WidgetStreamView` (its size is "
            "bounded), however little text it adds, and every new segment opens a widget.")


# ---------------------------------------------------------------------------
# Scenario: warm vs cold


def warm_vs_cold(context: Context, result: ScenarioResult) -> None:
    """Time to first token: a fresh generate process against a warm cell."""
    result.title = (
        "Time to first token of a fresh `python -m mlx_lm generate` / `python -m mlx_vlm "
        "generate` process (`--max-tokens 1`, timed from spawn to the statistics line it prints "
        "right after the token: Python start, imports, model load, prompt) against a warm cell "
        "(`-n 1`, timed from sending the execute request to receiving the token's text). Each "
        "repetition asks a new question (text) or sends a new random 224×224 image (vision) on "
        "both sides, so nothing is answered from a cache. The prompt token counts printed by the "
        "processes are checked against `_mlx.stats.prompt_tokens`."
    )
    reps = context.reps
    text_models = [("tiny llama", "tiny-llama", context.tiny_llama)]
    if not context.quick:
        text_models.insert(0, ("smollm2", "smollm2", context.smollm2))
    result.setup = {"reps": reps, "text models": ", ".join(t[0] for t in text_models),
                    "vision model": "tiny Qwen2-VL"}
    with Kernel(context.aliases(), "%mlx load tiny-llama", "%mlx load tiny-vlm") as kernel:
        for label, model, path in text_models:
            kernel.execute(f"%mlx load {model}")
            kernel.execute("%config MLXMagics.prefix_cache = True")
            kernel.generate(cell("mlx", f"-m {model} -n 1", "Hello."))  # warm: template cached
            cold, warm_cached, warm_plain = [], [], []
            for rep in range(reps):
                question = SHORT_QUESTIONS[rep % len(SHORT_QUESTIONS)]

                def run_cold():
                    return cold_process("mlx_lm", ["--model", path, "--prompt", question,
                                                   "--max-tokens", "1"])

                process = run_cold() if rep % 2 == 0 else None
                kernel.execute("%config MLXMagics.prefix_cache = True")
                cached = kernel.generate(cell("mlx", f"-m {model} -n 1", question))
                kernel.execute("%config MLXMagics.prefix_cache = False")
                plain = kernel.generate(cell("mlx", f"-m {model} -n 1", question))
                if process is None:  # ABBA order
                    process = run_cold()
                cold.append(process)
                warm_cached.append(cached)
                warm_plain.append(plain)
                context.say(
                    f"{label} rep {rep + 1}/{reps}: cold process {process['ttft_s']:.2f} s "
                    f"(prefill {process['prefill_s']:.2f} s), warm {ms(cached.first_text_s)} "
                    f"(prefix cache on) / {ms(plain.first_text_s)} (off)")
            kernel.execute("%config MLXMagics.prefix_cache = True")
            result.metrics += [
                Metric("warm_vs_cold", f"TTFT, {label}: warm cell (defaults)", "s",
                       [p["ttft_s"] for p in cold], [c.first_text_s for c in warm_cached],
                       "fresh mlx_lm generate", "%%mlx, prefix cache on", SPEEDUP, "≥ 10× faster",
                       _speedup([p["ttft_s"] for p in cold],
                                [c.first_text_s for c in warm_cached]) >= 10),
                Metric("warm_vs_cold", f"TTFT, {label}: warm cell, prefix cache off", "s",
                       [p["ttft_s"] for p in cold], [c.first_text_s for c in warm_plain],
                       "fresh mlx_lm generate", "%%mlx, prefix cache off", SPEEDUP,
                       "≥ 10× faster",
                       _speedup([p["ttft_s"] for p in cold],
                                [c.first_text_s for c in warm_plain]) >= 10),
            ]
            result.notes.append(_cold_note(label, cold, warm_cached, warm_plain))
        _vision_warm_vs_cold(context, kernel, result, reps)


def _speedup(baseline, ours) -> float:
    return median(baseline) / median(ours)


def _cold_note(label, cold, warm_cached, warm_plain) -> str:
    counts_cold = sorted({p["prompt_tokens"] for p in cold})
    counts_warm = sorted({c.stats["prompt_tokens"] for c in warm_plain})
    prefill = median([p["prefill_s"] for p in cold])
    startup = median([p["ttft_s"] - p["prefill_s"] for p in cold])
    warm_prefill = median([c.stats["ttft_s"] for c in warm_plain])
    cached_tokens = sorted({c.stats["cached_prompt_tokens"] for c in warm_cached})
    cached_ttft = median([c.stats["ttft_s"] for c in warm_cached])
    bound = (startup + prefill) / prefill if prefill else float("inf")
    return (
        f"**{label}:** prompt tokens — processes {counts_cold}, cells {counts_warm} "
        f"({'they match' if counts_cold == counts_warm else 'they DIFFER'}). The cold process "
        f"spends a median {startup:.2f} s on start, imports and load, then {prefill:.2f} s on the "
        f"prompt (its own `Prompt: … tokens-per-sec` line); the warm cell with the prefix cache "
        f"off spends {warm_prefill:.2f} s to its first token (runtime side), so without any "
        f"cache the speed-up cannot exceed (start + prompt) / prompt ≈ {bound:.1f}×. With the "
        f"prefix cache on (the default), {cached_tokens} of the prompt tokens came from the "
        f"cache (the chat template's system prompt, shared by every question) and the first "
        f"token took {cached_ttft:.2f} s (runtime side)."
    )


def _vision_warm_vs_cold(context, kernel, result, reps) -> None:
    prompt = VISION_PROMPTS[0]
    warmup = context.fresh_image()
    kernel.generate(cell("mlx_vision", f"-m tiny-vlm -n 1 -i {warmup}", prompt))
    cold, warm = [], []
    for rep in range(reps):
        image = context.fresh_image()
        process = cold_process("mlx_vlm", ["--model", context.tiny_vlm, "--image", image,
                                           "--prompt", prompt, "--max-tokens", "1",
                                           "--temperature", "0", "--verbose"])
        ours = kernel.generate(cell("mlx_vision", f"-m tiny-vlm -n 1 -i {image}", prompt))
        cold.append(process)
        warm.append(ours)
        context.say(f"tiny VLM rep {rep + 1}/{reps}: cold process {process['ttft_s']:.2f} s, "
                    f"warm {ms(ours.first_text_s)} (runtime {ms(ours.stats['ttft_s'])})")
    result.metrics.append(Metric(
        "warm_vs_cold", "TTFT, tiny VLM + new image: warm cell", "s",
        [p["ttft_s"] for p in cold], [c.first_text_s for c in warm],
        "fresh mlx_vlm generate", "%%mlx_vision", SPEEDUP, "≥ 10× faster",
        _speedup([p["ttft_s"] for p in cold], [c.first_text_s for c in warm]) >= 10))
    counts_cold = sorted({p["prompt_tokens"] for p in cold})
    counts_warm = sorted({c.stats["prompt_tokens"] for c in warm})
    result.notes.append(
        f"**tiny VLM:** prompt tokens (image tokens included) — processes {counts_cold}, cells "
        f"{counts_warm} ({'they match: the image was really processed on both sides' if counts_cold == counts_warm else 'they DIFFER'}). "
        f"Cold process: {median([p['ttft_s'] for p in cold]):.2f} s to the first token "
        f"(prompt part {median([p['prefill_s'] for p in cold]) * 1000:.0f} ms).")


# ---------------------------------------------------------------------------
# Scenario: conversation


def conversation(context: Context, result: ScenarioResult) -> None:
    """TTFT per turn: --chat with the prefix cache against rebuilding the history."""
    if context.quick:
        model, label, turns, max_tokens = "tiny-llama", "tiny llama", 3, 6
    else:
        model, label, turns, max_tokens = "smollm2", "smollm2", 8, 6
    result.title = (
        f"A {turns}-turn conversation (`%%mlx --chat NAME -n {max_tokens}`, {label}), run twice "
        "side by side in one kernel, turn by turn: once with the prefix cache off (every turn "
        "prefills the whole history: the baseline) and once with it on (every turn prefills only "
        "what is new). TTFT is `_mlx.stats.ttft_s`. Target: with reuse, turn "
        f"{turns}'s TTFT ≤ 1.3 × turn 1's."
    )
    result.setup = {"model": label, "turns": turns, "answer tokens": max_tokens, "reps": 1}
    rebuild, reuse = [], []
    with Kernel(context.aliases(), f"%mlx load {model}") as kernel:
        kernel.generate(cell("mlx", f"-m {model} -n 1", "Hi."))  # warm-up, then forget it
        kernel.execute("%mlx cache clear")
        for turn in range(turns):
            text = CONVERSATION[turn]
            kernel.execute("%config MLXMagics.prefix_cache = False")
            plain = kernel.generate(cell("mlx", f"-m {model} -n {max_tokens} --chat rebuild", text),
                                    cell_id=f"rebuild-{turn}")
            kernel.execute("%config MLXMagics.prefix_cache = True")
            cached = kernel.generate(cell("mlx", f"-m {model} -n {max_tokens} --chat reuse", text),
                                     cell_id=f"reuse-{turn}")
            rebuild.append(plain.stats)
            reuse.append(cached.stats)
            context.say(
                f"turn {turn + 1}/{turns}: rebuild {plain.stats['ttft_s']:.2f} s "
                f"({plain.stats['prompt_tokens']} prompt tokens), reuse "
                f"{cached.stats['ttft_s']:.2f} s ({cached.stats['prompt_tokens']} tokens, "
                f"{cached.stats['cached_prompt_tokens']} cached)")
    result.series.update(
        model=label,
        rebuild_ttft=[s["ttft_s"] for s in rebuild], reuse_ttft=[s["ttft_s"] for s in reuse],
        rebuild_prompt=[s["prompt_tokens"] for s in rebuild],
        reuse_prompt=[s["prompt_tokens"] for s in reuse],
        reuse_cached=[s["cached_prompt_tokens"] for s in reuse])
    last = turns
    result.metrics += [
        Metric("conversation", f"TTFT turn {last} ÷ turn 1, with reuse", "s",
               [reuse[0]["ttft_s"]], [reuse[-1]["ttft_s"]], "turn 1", f"turn {last}", RATIO,
               "≤ 1.3×", reuse[-1]["ttft_s"] <= 1.3 * reuse[0]["ttft_s"]),
        Metric("conversation", f"TTFT turn {last} ÷ turn 1, rebuilding the history", "s",
               [rebuild[0]["ttft_s"]], [rebuild[-1]["ttft_s"]], "turn 1", f"turn {last}", RATIO,
               "", None),
        Metric("conversation", f"TTFT turn {last}: rebuild vs reuse", "s",
               [rebuild[-1]["ttft_s"]], [reuse[-1]["ttft_s"]], "prefix cache off",
               "--chat, prefix cache on", SPEEDUP, "", None),
    ]
    same_prompts = [s["prompt_tokens"] for s in rebuild] == [s["prompt_tokens"] for s in reuse]
    result.notes.append(
        "Prompt tokens per turn: " + ", ".join(str(s["prompt_tokens"]) for s in reuse)
        + f" (the same in both runs: {'yes' if same_prompts else 'NO — the answers differed'}); "
        "tokens taken from the prefix cache with reuse: "
        + ", ".join(str(s["cached_prompt_tokens"]) for s in reuse)
        + ". One repetition: each turn is a measurement, and the rebuild run costs minutes on "
        "this CPU (its TTFT grows with the history).")


# ---------------------------------------------------------------------------
# Scenario: prefix


def prefix(context: Context, result: ScenarioResult) -> None:
    """TTFT for questions about the same pasted paragraph, with and without the cache."""
    if context.quick:
        model, label, paragraph = "tiny-llama", "tiny llama", PARAGRAPH[:400]
        n_cached, n_uncached, n_cold = 3, 2, 1
        path = context.tiny_llama
    else:
        model, label, paragraph = "smollm2", "smollm2", PARAGRAPH
        # Each uncached question (or cold process) reads ~325 tokens: ~45 s on this CPU.
        n_cached, n_uncached, n_cold = 10, 3, 2
        path = context.smollm2
    result.title = (
        f"{n_cached} different questions after the same system prompt and pasted paragraph "
        f"({label}, `-n 1`, `%config MLXMagics.system_prompt`), interleaved: with the prefix "
        f"cache (all {n_cached}), without it (the first {n_uncached}), and as fresh `python -m "
        f"mlx_lm generate --system-prompt … --prompt …` processes (the first {n_cold}). Cells "
        "are timed from sending the request to receiving the answer's token (the cold process: "
        "from spawn to its statistics line), so the three are comparable; the runtime-side "
        "TTFT is in the plot's data. Targets: from the second question on, ≥ 5× faster "
        "than without the cache and ≥ 10× faster than the cold process."
    )
    result.setup = {"model": label, "cached questions": n_cached, "uncached": n_uncached,
                    "cold processes": n_cold, "paragraph characters": len(paragraph)}
    cached, uncached, cold = [], [], []
    system = SYSTEM_PROMPT.replace("'", "’")
    with Kernel(context.aliases(), f"%mlx load {model}",
                f"%config MLXMagics.system_prompt = '{system}'") as kernel:
        kernel.generate(cell("mlx", f"-m {model} -n 1", "Hi."))  # warm-up, then forget it
        kernel.execute("%mlx cache clear")
        for number in range(n_cached):
            prompt = f"{paragraph}\n\n{QUESTIONS[number]}"
            kernel.execute("%config MLXMagics.prefix_cache = True")
            with_cache = kernel.generate(cell("mlx", f"-m {model} -n 1", prompt))
            cached.append(with_cache)
            line = (f"question {number + 1}: cached {with_cache.first_text_s:.2f} s "
                    f"({with_cache.stats['cached_prompt_tokens']}/"
                    f"{with_cache.stats['prompt_tokens']} tokens reused)")
            if number < n_uncached:
                kernel.execute("%config MLXMagics.prefix_cache = False")
                without = kernel.generate(cell("mlx", f"-m {model} -n 1", prompt))
                uncached.append(without)
                line += f", uncached {without.first_text_s:.2f} s"
            if number < n_cold:
                process = cold_process("mlx_lm", ["--model", path, "--system-prompt", system,
                                                  "--prompt", prompt, "--max-tokens", "1"])
                cold.append(process)
                line += f", cold process {process['ttft_s']:.2f} s ({process['prompt_tokens']} tokens)"
            context.say(line)
        kernel.execute("%config MLXMagics.prefix_cache = True")
    later = [c.first_text_s for c in cached[1:]]
    result.series.update(
        model=label, prompt_tokens=cached[0].stats["prompt_tokens"],
        cached_ttft=[c.first_text_s for c in cached],
        uncached_ttft=[c.first_text_s for c in uncached],
        cold_ttft=[p["ttft_s"] for p in cold],
        cached_runtime_ttft=[c.stats["ttft_s"] for c in cached],
        uncached_runtime_ttft=[c.stats["ttft_s"] for c in uncached])
    result.metrics += [
        Metric("prefix", "TTFT, questions 2+: cache vs no cache", "s",
               [c.first_text_s for c in uncached], later, "%%mlx, prefix cache off",
               "%%mlx, prefix cache on", SPEEDUP, "≥ 5× faster",
               _speedup([c.first_text_s for c in uncached], later) >= 5),
        Metric("prefix", "TTFT, questions 2+: cache vs cold process", "s",
               [p["ttft_s"] for p in cold], later, "fresh mlx_lm generate",
               "%%mlx, prefix cache on", SPEEDUP, "≥ 10× faster",
               _speedup([p["ttft_s"] for p in cold], later) >= 10),
        Metric("prefix", "TTFT, question 1 (cache still empty)", "s",
               [uncached[0].first_text_s], [cached[0].first_text_s], "prefix cache off",
               "prefix cache on", RATIO, "", None),
    ]
    counts_cells = [c.stats["prompt_tokens"] for c in cached[:n_cold]]
    counts_cold = [p["prompt_tokens"] for p in cold]
    reused = [c.stats["cached_prompt_tokens"] for c in cached]
    result.notes.append(
        f"Prompt tokens: cells {counts_cells}, cold processes {counts_cold} for the same "
        f"questions ({'they match' if counts_cells == counts_cold else 'they DIFFER'}). Tokens "
        f"reused from the cache per question: {reused}. Uncached prefill ran at "
        f"{median([c.stats['prompt_tps'] for c in uncached]):.1f} tokens/s; the cold processes "
        f"spent {median([p['ttft_s'] - p['prefill_s'] for p in cold]):.2f} s on start and load "
        f"and {median([p['prefill_s'] for p in cold]):.2f} s on the prompt.")


# ---------------------------------------------------------------------------
# Scenario: repeat image


def repeat_image(context: Context, result: ScenarioResult) -> None:
    """TTFT of the first and second question about the same (new) image."""
    reps = context.reps
    result.title = (
        "Two questions about the same image in a row (`%%mlx_vision -m tiny-vlm -n 1 -i IMG`), "
        "each repetition with a new random 224×224 PNG (so every cache is cold for the first "
        "question). The second question reuses the decoded image (kernel side) and the vision "
        "features (runtime side). TTFT is `_mlx.stats.ttft_s` (job start to first token); the "
        "frontend's view (request sent → text received) also counts reading and decoding the "
        "file. The raw `mlx_vlm.stream_generate` in this process, on the same image and prompt, "
        "is shown for reference."
    )
    result.setup = {"reps": reps, "model": "tiny Qwen2-VL", "image": "224×224 random PNG"}
    baseline = context.vision_baseline(context.tiny_vlm)
    first, second, first_visible, second_visible, raw, previews = [], [], [], [], [], []
    with Kernel(context.aliases(), "%mlx load tiny-vlm") as kernel:
        warm = context.fresh_image()
        kernel.generate(cell("mlx_vision", f"-m tiny-vlm -n 1 -i {warm}", VISION_PROMPTS[0]))
        baseline.generate(VISION_PROMPTS[0], warm, 1)
        for rep in range(reps):
            image = context.fresh_image()
            raw.append(baseline.generate(VISION_PROMPTS[0], image, 1)["ttft_s"])
            one = kernel.generate(cell("mlx_vision", f"-m tiny-vlm -n 1 -i {image}",
                                       VISION_PROMPTS[0]))
            two = kernel.generate(cell("mlx_vision", f"-m tiny-vlm -n 1 -i {image}",
                                       VISION_PROMPTS[1]))
            previews.append(_preview_of(one))
            first.append(one.stats["ttft_s"])
            second.append(two.stats["ttft_s"])
            first_visible.append(one.first_text_s)
            second_visible.append(two.first_text_s)
            context.say(f"rep {rep + 1}/{reps}: first {ms(first[-1])}, second {ms(second[-1])} "
                        f"(frontend {ms(first_visible[-1])} → {ms(second_visible[-1])}; raw "
                        f"mlx_vlm {ms(raw[-1])})")
        status = kernel.execute("%mlx status")
    result.series.update(first=first, second=second, raw=raw)
    result.metrics += [
        Metric("repeat_image", "TTFT, second question ÷ first (runtime side)", "s",
               first, second, "first question", "second, same image", RATIO, "≤ 0.6×",
               median(second) <= 0.6 * median(first)),
        Metric("repeat_image", "TTFT, second ÷ first (as the frontend sees it)", "s",
               first_visible, second_visible, "first question", "second, same image", RATIO,
               "≤ 0.6×", median(second_visible) <= 0.6 * median(first_visible)),
        Metric("repeat_image", "TTFT, first question vs raw mlx_vlm", "s",
               raw, first, "mlx_vlm.stream_generate", "%%mlx_vision (runtime side)",
               RATIO, "", None),
    ]
    text = "".join(m["content"].get("text", "") for _, m in status.messages
                   if m["msg_type"] == "stream")
    lines = [line for line in text.splitlines() if "Vision features" in line or "Decoded" in line]
    result.notes.append("`%mlx status` after the run: " + "; ".join(lines))
    if previews and previews[0]:
        sizes = [p["bytes"] for p in previews if p]
        result.notes.append(
            f"Every vision cell first shows the image preview: one display_data of "
            f"{median(sizes) / 1e3:.0f} kB here (the thumbnail as PNG twice: base64 in the HTML "
            f"and as image/png; the image file is {median([p['file'] for p in previews if p]) / 1e3:.0f} kB), "
            f"received {ms(median([p['at'] for p in previews if p]))} after the request. That "
            "part of the frontend's wait (reading the file, making and sending the preview) is "
            "the same for both questions, so the frontend sees a smaller relative gain than the "
            "runtime.")


def _preview_of(vision_cell: Cell) -> Optional[dict]:
    """Size and arrival of the image preview (the display_data with an image/png)."""
    for arrived, message in vision_cell.messages:
        data = message["content"].get("data", {}) if message["msg_type"] == "display_data" else {}
        if "image/png" in data:
            path = re.search(r"-i (\S+)", vision_cell.code).group(1)
            return {"bytes": len(json.dumps(message["content"]).encode()),
                    "at": arrived - vision_cell.sent, "file": os.path.getsize(path)}
    return None


# ---------------------------------------------------------------------------
# Scenario: responsiveness


def responsiveness(context: Context, result: ScenarioResult) -> None:
    """Latency of a trivial cell while a background job streams."""
    pings = 4 if context.quick else 10
    jobs = [("tiny llama", "tiny-llama", 1000 if context.quick else 3000)]
    if not context.quick:
        jobs.append(("smollm2", "smollm2", 60))
    result.title = (
        "Round trip of a `1+1` cell (execute request sent → execute reply received) in an idle "
        "kernel (baseline) and while a `%%mlx -b` background job streams (ours), interleaved: "
        f"{pings} pings idle, then {pings} pings during the job, for a fast model (tiny llama: "
        "the runtime thread is busy in Python most of the time) and a slow one (SmolLM2: "
        "mostly inside MLX). Target: median < 100 ms while streaming."
    )
    result.setup = {"pings per side": pings, "jobs": ", ".join(f"{j[0]} -n {j[2]}" for j in jobs)}
    with Kernel(context.aliases(), *(f"%mlx load {model}" for _, model, _ in jobs)) as kernel:
        for label, model, tokens in jobs:
            kernel.generate(cell("mlx", f"-m {model} -n 2 --raw", RAW_PROMPT))  # warm-up
            idle = [_ping(kernel)[0] for _ in range(pings)]
            kernel.execute(cell("mlx", f"-b -m {model} -n {tokens} --raw", RAW_PROMPT))
            busy, late = [], 0
            deadline = time.perf_counter() + 120
            while len(busy) < pings and time.perf_counter() < deadline:
                latency, running = _ping(kernel)
                if running:
                    busy.append(latency)
                else:
                    late += 1
                    if late > 3:
                        break
                time.sleep(0.1)
            kernel.execute("%mlx wait all")
            kernel.drain(0.2)
            if not busy:
                raise BenchError(f"the {label} background job ended before any ping")
            context.say(f"{label}: idle median {ms(median(idle))}, during -b median "
                        f"{ms(median(busy))} (max {ms(max(busy))}; {len(busy)} pings while "
                        f"the job ran)")
            result.series[f"{label}_idle"] = idle
            result.series[f"{label}_busy"] = busy
            result.metrics.append(Metric(
                "responsiveness", f"`1+1` latency during -b, {label}", "s", idle, busy,
                "idle kernel", f"-b job streaming ({tokens} tokens)", DIFFERENCE,
                "< 100 ms", median(busy) < 0.100))
            result.notes.append(
                f"**{label}:** during the job: max {ms(max(busy))} over {len(busy)} pings; "
                f"idle: max {ms(max(idle))}.")


_RUNNING = "len(get_ipython().find_magic('mlx', 'line').__self__.jobs.running())"


def _ping(kernel: Kernel) -> tuple[float, bool]:
    """The round trip of ``1+1``, and whether a background job was running at its end."""
    ping = kernel.execute("1+1", reply_first=True, expressions={"running": _RUNNING})
    return ping.replied - ping.sent, bool(ping.values.get("running"))
