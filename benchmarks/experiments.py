"""Experiments behind the "Investigations" section of BENCHMARKS.md.

``widget_segments`` changes one thing *inside a benchmark kernel only* (a
monkeypatch sent as a cell; no file of the package is changed) and measures
the effect with the same harness as ``python -m benchmarks``::

    python benchmarks/experiments.py widget_segments # -b traffic vs segment size
    python benchmarks/experiments.py blas [--openblas /path/libopenblas.so]
    python benchmarks/experiments.py decode_overhead   # per-token cost, no kernel
    python benchmarks/experiments.py decode_in_kernel  # ... and inside a kernel
    python benchmarks/experiments.py decode_coalesced  # a reader that wakes every 20 ms
    python benchmarks/experiments.py first_text_gap    # GIL switch interval and first text
    python benchmarks/experiments.py decode_three_way  # raw / as is / 20 ms reader, one kernel
    python benchmarks/experiments.py first_text_handshake  # runtime waits for the first text
    python benchmarks/experiments.py first_text_timeline   # where the first text's time goes

``blas`` runs SmolLM2 in fresh processes with MLX's bundled BLAS, then with an
optimized OpenBLAS preloaded, quantized and dequantized.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

if not __package__:  # run as `python benchmarks/NAME.py`: import from the repository's root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.harness import (
    RAW_PROMPT,
    STATS_EXPRESSION,
    Context,
    Kernel,
    cell,
    traffic_of,
)

SEGMENT_PATCH = """
import mlx_magic.display.widget_view as _w
_init = _w.WidgetStreamView.__init__
def _patched(self, *args, **kwargs):
    kwargs["segment_chars"] = {segment}
    _init(self, *args, **kwargs)
_w.WidgetStreamView.__init__ = _patched
"""


def widget_segments(context: Context, tokens: int) -> None:
    """Bytes a -b job sends, by the widget view's segment size."""
    variants = [("as is", "")]
    for segment in (2000, 1000, 500, 250):
        variants.append((f"{segment}-char segments", SEGMENT_PATCH.format(segment=segment)))
    for label, patch in variants:
        with Kernel(context.aliases(), "%mlx load tiny-llama") as kernel:
            if patch:
                kernel.execute(patch)
            kernel.generate(cell("mlx", "-m tiny-llama -n 20 --raw", RAW_PROMPT))
            kernel.drain(0.1)
            kernel.others.clear()
            started = kernel.execute(cell("mlx", f"-b -m tiny-llama -n {tokens} --raw", RAW_PROMPT))
            waited = kernel.execute("%mlx wait all")
            kernel.drain(0.5)
            messages = (
                [m for _, m in started.messages]
                + [m for _, m in kernel.others]
                + [m for _, m in waited.messages if m["msg_type"].startswith("comm")]
            )
            counted = traffic_of(messages)
            text = kernel.execute(
                "pass",
                expressions={
                    "stats": STATS_EXPRESSION.replace(
                        "_mlx",
                        "get_ipython().find_magic('mlx', 'line').__self__.jobs.all()[-1].result",
                    )
                },
            ).stats["text_bytes"]
            limit = 3 * text + 512 * counted["messages"]
            print(
                f"{label:40s} {counted['messages']:4d} messages {counted['bytes'] / 1e3:6.1f} kB "
                f"for {text / 1e3:.1f} kB of text ({counted['bytes'] / text:.1f}×; target "
                f"limit {limit / 1e3:.1f} kB: {'pass' if counted['bytes'] < limit else 'MISS'}) "
                + ", ".join(
                    f"{k} {n}/{b / 1e3:.1f} kB" for k, (n, b) in sorted(counted["by_type"].items())
                ),
                flush=True,
            )


BLAS_SCRIPT = """
import sys, time, mlx.core as mx
from mlx_lm import load
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.utils import dequantize_model
model, tokenizer = load(sys.argv[1])
if sys.argv[2] == "dequantized":
    model = dequantize_model(model)
ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                    add_generation_prompt=True)
prefill, decode = [], []
for _ in range(3):
    cache = make_prompt_cache(model)
    began = time.perf_counter(); mx.eval(model(mx.array(ids)[None], cache=cache))
    prefill.append(len(ids) / (time.perf_counter() - began))
    began = time.perf_counter()
    for _ in range(8):
        mx.eval(model(mx.array([[ids[-1]]]), cache=cache))
    decode.append(8 / (time.perf_counter() - began))
print(f"prefill {max(prefill):.1f} tok/s, decode {max(decode):.1f} tok/s ({len(ids)}-token prompt)")
"""


def blas(context: Context, openblas: str | None) -> None:
    """SmolLM2 prefill/decode speed with MLX's bundled BLAS and with OpenBLAS preloaded."""
    import mlx.core

    lib = os.path.join(os.path.dirname(mlx.core.__file__), "lib", "libmlx.so")
    linked = subprocess.run(["ldd", lib], capture_output=True, text=True).stdout
    print(
        "libmlx links:",
        ", ".join(
            line.split()[0] for line in linked.splitlines() if "blas" in line or "lapack" in line
        )
        or "(no BLAS found)",
    )
    if openblas is None:
        site = sysconfig.get_paths()["purelib"]
        found = [
            path
            for path in glob.glob(os.path.join(site, "*", "libopenblas*.so*"))
            if "scipy_openblas" not in path
        ]  # scipy's has renamed symbols
        openblas = found[0] if found else None
    runs = [("bundled BLAS", None)] + ([("OpenBLAS preloaded", openblas)] if openblas else [])
    for label, preload in runs:
        env = dict(os.environ)
        if preload:
            env["LD_PRELOAD"] = preload
        for variant in ("quantized", "dequantized"):
            out = subprocess.run(
                [sys.executable, "-c", BLAS_SCRIPT, str(context.smollm2), variant],
                capture_output=True,
                text=True,
                env=env,
                timeout=900,
            )
            print(
                f"{label:20s} {variant:12s} {out.stdout.strip() or out.stderr[-300:]}", flush=True
            )
    if not openblas:
        print("no OpenBLAS with standard symbols found; pass --openblas PATH")


def decode_overhead(context: Context, reps: int) -> None:
    """Where the magic's per-token time goes, in this process (no kernel, no frontend).

    Interleaved, per model: raw ``mlx_lm.stream_generate``; the runtime thread
    with ``stream_job`` reading every event as it comes (what ``%%mlx`` does,
    into a view that shows nothing); and the runtime thread with a reader that
    wakes only every 50 ms and drains what has queued up.
    """
    import time

    from benchmarks.harness import LONG_ANSWER_PROMPT, InProcessText
    from benchmarks.metrics import median
    from mlx_magic.display.streaming import stream_job
    from mlx_magic.display.views import StreamView
    from mlx_magic.models.resolve import resolve_model
    from mlx_magic.runtime.thread import ThreadRuntime
    from mlx_magic.vocabulary.values import (
        Finished,
        GenerationRequest,
        PrefixCacheSettings,
        SamplingParams,
    )

    runtime = ThreadRuntime(8 << 30)
    try:
        for label, path, tokens in [
            ("tiny llama", context.tiny_llama, 400),
            ("smollm2", context.smollm2, 24),
        ]:
            spec = resolve_model(str(path))
            runtime.load(spec)
            baseline = InProcessText(path)
            request = GenerationRequest(
                model=spec,
                prompt=LONG_ANSWER_PROMPT,
                sampling=SamplingParams(max_tokens=tokens),
                prefix_cache=PrefixCacheSettings(enabled=False),
            )

            def raw():
                return baseline.generate(LONG_ANSWER_PROMPT, tokens)["generation_tps"]

            def per_event():
                job = runtime.generate(request)
                return stream_job(job, StreamView(), interval_s=0.2).result.stats.generation_tps

            def drained():
                job = runtime.generate(request)
                while True:
                    time.sleep(0.05)
                    for event in job.waiting_events():
                        if isinstance(event, Finished):
                            return event.stats["generation_tps"]

            variants = {
                "raw mlx_lm": raw,
                "runtime + stream_job (per event)": per_event,
                "runtime + reader every 50 ms": drained,
            }
            samples = {name: [] for name in variants}
            for fn in variants.values():
                fn()  # warm-up
            names = list(variants)
            for rep in range(reps if label != "smollm2" else max(2, reps // 2)):
                for name in names[rep % 3 :] + names[: rep % 3]:  # rotate the order
                    samples[name].append(variants[name]())
            base = median(samples["raw mlx_lm"])
            for name, values in samples.items():
                print(
                    f"{label:10s} {name:34s} median {median(values):7.1f} tok/s "
                    f"({median(values) / base:.3f}×)  "
                    f"[{', '.join(f'{v:.0f}' if v > 50 else f'{v:.2f}' for v in values)}]",
                    flush=True,
                )
    finally:
        runtime.stop()


RAW_IN_KERNEL = """
import mlx.core as _mx, mlx_magic as _mm
from mlx_lm import load as _load, stream_generate as _sg
from mlx_lm.sample_utils import make_sampler as _ms
_raw = globals().setdefault("_raw_models", {{}})
if {path!r} not in _raw:
    with _mm.gpu_lock:
        _raw[{path!r}] = _load({path!r})
_model, _tok = _raw[{path!r}]
with _mm.gpu_lock:
    for _r in _sg(_model, _tok, _mx.array({ids!r}), max_tokens={tokens}, sampler=_ms(temp=0.0)):
        pass
_raw_tps = _r.generation_tps
"""


def decode_in_kernel(context: Context, reps: int) -> None:
    """Decode speed in a kernel: %%mlx as is, %%mlx with its output captured (no IOPub
    traffic), raw mlx_lm run by a cell in the same kernel, and raw mlx_lm here."""
    from benchmarks.harness import LONG_ANSWER_PROMPT
    from benchmarks.metrics import median

    with Kernel(
        context.aliases(),
        "%mlx load tiny-llama",
        "%mlx load smollm2",
        "%config MLXMagics.prefix_cache = False",
    ) as kernel:
        for label, model, path, tokens in [
            ("tiny llama", "tiny-llama", context.tiny_llama, 400),
            ("smollm2", "smollm2", context.smollm2, 24),
        ]:
            baseline = context.text_baseline(path)
            ids = baseline.prompt_ids(LONG_ANSWER_PROMPT)
            code = cell("mlx", f"-m {model} -n {tokens}", LONG_ANSWER_PROMPT)

            def shown():
                return kernel.generate(code).stats["generation_tps"]

            def captured():
                return kernel.generate("%%capture _captured\n" + code).stats["generation_tps"]

            def raw_kernel():
                done = kernel.execute(
                    RAW_IN_KERNEL.format(path=str(path), ids=ids, tokens=tokens),
                    expressions={"tps": "_raw_tps"},
                )
                return done.values["tps"]

            def raw_here():
                return baseline.generate(LONG_ANSWER_PROMPT, tokens)["generation_tps"]

            variants = {
                "raw mlx_lm, benchmark process": raw_here,
                "raw mlx_lm, cell in the kernel": raw_kernel,
                "%%mlx, output captured": captured,
                "%%mlx (shown)": shown,
            }
            for fn in variants.values():
                fn()  # warm-up
            samples = {name: [] for name in variants}
            names = list(variants)
            for rep in range(reps if label != "smollm2" else max(2, reps // 2)):
                for name in names[rep % 4 :] + names[: rep % 4]:
                    samples[name].append(variants[name]())
            base = median(samples[names[0]])
            for name, values in samples.items():
                print(
                    f"{label:10s} {name:32s} median {median(values):7.1f} tok/s "
                    f"({median(values) / base:.3f}×)  "
                    f"[{', '.join(f'{v:.0f}' if v > 50 else f'{v:.2f}' for v in values)}]",
                    flush=True,
                )


COALESCING_PATCH = """
import queue as _queue, time as _time
from mlx_magic.vocabulary.job import Job as _Job
from mlx_magic.vocabulary.values import TokenChunk as _TokenChunk
def _next_event(self, timeout=None):
    try:
        event = self.events.get_nowait()
    except _queue.Empty:
        if not getattr(self, "_text_seen", False):
            try:
                event = self.events.get(timeout=timeout)  # until the first text: at once
            except _queue.Empty:
                return None
        else:
            _time.sleep(min(0.02, timeout if timeout is not None else 0.02))
            try:
                event = self.events.get_nowait()
            except _queue.Empty:
                return None
    if isinstance(event, _TokenChunk):
        self._text_seen = True
    return event
_Job.next_event = _next_event
"""


def _both_models_warm(context: Context) -> tuple:
    """Setup cells: both text models loaded, the prefix cache off."""
    return (
        context.aliases(),
        "%mlx load tiny-llama",
        "%mlx load smollm2",
        "%config MLXMagics.prefix_cache = False",
    )


def _alternate(kernels: dict, code: str, reps: int) -> dict:
    """Warm each kernel up, then run ``code`` in each, the order reversed every
    other repetition; per kernel, the first token → frontend gaps (s) and the
    decode rates (tok/s)."""
    for kernel in kernels.values():
        kernel.generate(code)  # warm-up
    runs = {name: ([], []) for name in kernels}
    for rep in range(reps):
        for name in list(kernels) if rep % 2 == 0 else list(kernels)[::-1]:
            done = kernels[name].generate(code)
            runs[name][0].append(done.first_text_s - done.stats["ttft_s"])
            runs[name][1].append(done.stats["generation_tps"])
    return runs


def _print_gaps(label: str, runs: dict, width: int) -> None:
    from benchmarks.metrics import median

    for name, (gaps, tps) in runs.items():
        print(
            f"{label:10s} {name:{width}s} first token → frontend median "
            f"{median(gaps) * 1000:.0f} ms [{', '.join(f'{g * 1000:.0f}' for g in gaps)}]; "
            f"decode median {median(tps):.1f} tok/s",
            flush=True,
        )


def decode_coalesced(context: Context, reps: int) -> None:
    """%%mlx decode speed and visible TTFT, as is and with a reader that, after the
    first text, wakes at most every 20 ms and takes everything queued (patched in one
    of two kernels)."""
    from benchmarks.harness import LONG_ANSWER_PROMPT
    from benchmarks.metrics import median

    setup = _both_models_warm(context)
    with Kernel(*setup) as plain, Kernel(*setup) as patched:
        patched.execute(COALESCING_PATCH)
        for label, model, tokens, model_reps in [
            ("tiny llama", "tiny-llama", 400, reps),
            ("smollm2", "smollm2", 24, max(2, reps // 2)),
        ]:
            code = cell("mlx", f"-m {model} -n {tokens}", LONG_ANSWER_PROMPT)
            runs = _alternate({"as is": plain, "reader every 20 ms": patched}, code, model_reps)
            base = median(runs["as is"][1])
            for name, (gaps, values) in runs.items():
                print(
                    f"{label:10s} {name:20s} median {median(values):7.1f} tok/s "
                    f"({median(values) / base:.3f}×), first token → frontend "
                    f"{median(gaps) * 1000:.0f} ms  "
                    f"[{', '.join(f'{v:.0f}' if v > 50 else f'{v:.2f}' for v in values)}]",
                    flush=True,
                )


def first_text_gap(context: Context, reps: int) -> None:
    """Time from the runtime's first token to the frontend's first text, with Python's
    default GIL switch interval (5 ms) and with 0.5 ms (set in one of two kernels)."""
    from benchmarks.harness import LONG_ANSWER_PROMPT

    setup = _both_models_warm(context)
    with Kernel(*setup) as plain, Kernel(*setup) as fast_switch:
        fast_switch.execute("import sys; sys.setswitchinterval(0.0005)")
        kernels = {"switch interval 5 ms": plain, "switch interval 0.5 ms": fast_switch}
        for label, model, tokens in [("tiny llama", "tiny-llama", 60), ("smollm2", "smollm2", 6)]:
            code = cell("mlx", f"-m {model} -n {tokens}", LONG_ANSWER_PROMPT)
            _print_gaps(label, _alternate(kernels, code, reps), 24)


def decode_three_way(context: Context, reps: int) -> None:
    """In ONE kernel, rotating: raw mlx_lm in a cell, %%mlx as is, and %%mlx with the
    20 ms reader (COALESCING_PATCH, switched on and off by a flag between cells)."""
    from benchmarks.harness import LONG_ANSWER_PROMPT
    from benchmarks.metrics import median

    patch = COALESCING_PATCH.replace(
        "def _next_event(self, timeout=None):\n",
        "_plain_next_event = _Job.next_event\n"
        "def _next_event(self, timeout=None):\n"
        "    if not COALESCE:\n"
        "        return _plain_next_event(self, timeout)\n",
    )
    with Kernel(
        context.aliases(), "%mlx load tiny-llama", "%config MLXMagics.prefix_cache = False"
    ) as kernel:
        kernel.execute("COALESCE = False\n" + patch)
        path, tokens = context.tiny_llama, 400
        ids = context.text_baseline(path).prompt_ids(LONG_ANSWER_PROMPT)
        code = cell("mlx", f"-m tiny-llama -n {tokens}", LONG_ANSWER_PROMPT)

        def raw_kernel():
            done = kernel.execute(
                RAW_IN_KERNEL.format(path=str(path), ids=ids, tokens=tokens),
                expressions={"tps": "_raw_tps"},
            )
            return done.values["tps"]

        def as_is():
            kernel.execute("COALESCE = False")
            return kernel.generate(code).stats["generation_tps"]

        def coalesced():
            kernel.execute("COALESCE = True")
            return kernel.generate(code).stats["generation_tps"]

        variants = {
            "raw mlx_lm, cell in the kernel": raw_kernel,
            "%%mlx as is": as_is,
            "%%mlx, reader every 20 ms": coalesced,
        }
        for fn in variants.values():
            fn()
        samples = {name: [] for name in variants}
        names = list(variants)
        for rep in range(reps):
            for name in names[rep % 3 :] + names[: rep % 3]:
                samples[name].append(variants[name]())
        base = median(samples[names[0]])
        for name, values in samples.items():
            print(
                f"tiny llama {name:32s} median {median(values):7.1f} tok/s "
                f"({median(values) / base:.3f}×)  [{', '.join(f'{v:.0f}' for v in values)}]",
                flush=True,
            )


HANDSHAKE_PATCH = """
import threading as _threading
from mlx_magic.runtime import values as _protocol
from mlx_magic.vocabulary.job import Job as _Job
from mlx_magic.display import streaming as _streaming
_emit = _Job.emit
def _emit_then_wait(self, event):
    _emit(self, event)
    shown = self.__dict__.setdefault("_first_shown", _threading.Event())
    if isinstance(event, _protocol.TokenChunk) and event.text and not shown.is_set():
        shown.wait(0.05)  # the reader shows the first text before the next MLX step
_Job.emit = _emit_then_wait
_show = _streaming._Collector._show
def _show_and_tell(self, text):
    _show(self, text)
    if text:
        self.job.__dict__.setdefault("_first_shown", _threading.Event()).set()
_streaming._Collector._show = _show_and_tell
"""


def first_text_handshake(context: Context, reps: int) -> None:
    """First token → frontend text, as is and with the runtime thread waiting (at most
    50 ms, once) until the reader has shown the first text (patched in one of two kernels)."""
    from benchmarks.harness import LONG_ANSWER_PROMPT

    setup = _both_models_warm(context)
    with Kernel(*setup) as plain, Kernel(*setup) as patched:
        patched.execute(HANDSHAKE_PATCH)
        kernels = {"as is": plain, "handshake": patched}
        for label, model, tokens in [("tiny llama", "tiny-llama", 200), ("smollm2", "smollm2", 6)]:
            code = cell("mlx", f"-m {model} -n {tokens}", LONG_ANSWER_PROMPT)
            _print_gaps(label, _alternate(kernels, code, reps), 10)


TIMELINE_PATCH = r"""
import time as _time
import mlx_magic.engine.stepping as _stepping, mlx_magic.display.streaming as _streaming, mlx_magic.display.views as _views
TIMELINE = {}
_report = _stepping.Stepper._report
def _timed_report(self, response):
    if "emitted" not in TIMELINE and response.text:
        TIMELINE["emitted"] = _time.perf_counter()
    last = _report(self, response)
    if "emitted" in TIMELINE and "runtime resumed" not in TIMELINE:
        TIMELINE["runtime resumed"] = _time.perf_counter()
    return last
_stepping.Stepper._report = _timed_report
_write = _views.NotebookView.write
def _timed_write(self, text):
    first = text and "write started" not in TIMELINE
    if first:
        TIMELINE["write started"] = _time.perf_counter()
    _write(self, text)
    if first:
        TIMELINE["write returned"] = _time.perf_counter()
_views.NotebookView.write = _timed_write
"""


def first_text_timeline(context: Context, reps: int) -> None:
    """When the first text is emitted by the runtime, written by the view, and
    received by the client (one clock: perf_counter is system-wide here), SmolLM2."""
    from benchmarks.harness import LONG_ANSWER_PROMPT

    with Kernel(
        "%config MLXMagics.prefix_cache = False", "%mlx load smollm2", TIMELINE_PATCH
    ) as kernel:
        kernel.generate(cell("mlx", "-n 2 --raw", "Hello"))
        for _ in range(reps):
            kernel.execute("TIMELINE.clear()")
            done = kernel.execute(
                cell("mlx", "-n 4", LONG_ANSWER_PROMPT), expressions={"t": "TIMELINE"}
            )
            times = done.values["t"]
            arrived = next(at for at, m in done.messages if m["msg_type"] == "stream")
            times["client received"] = arrived
            start = times["emitted"]
            print(
                ", ".join(
                    f"{name} {(at - start) * 1000:+.1f} ms"
                    for name, at in sorted(times.items(), key=lambda kv: kv[1])
                ),
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "experiment",
        choices=[
            "widget_segments",
            "blas",
            "decode_overhead",
            "decode_in_kernel",
            "decode_coalesced",
            "first_text_gap",
            "decode_three_way",
            "first_text_handshake",
            "first_text_timeline",
        ],
    )
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--openblas")
    args = parser.parse_args()
    context = Context.create(quick=True, progress=print)
    if args.experiment == "first_text_timeline":
        first_text_timeline(context, args.reps)
    elif args.experiment == "widget_segments":
        widget_segments(context, args.tokens)
    elif args.experiment == "first_text_handshake":
        first_text_handshake(context, args.reps)
    elif args.experiment == "decode_three_way":
        decode_three_way(context, args.reps)
    elif args.experiment == "first_text_gap":
        first_text_gap(context, args.reps)
    elif args.experiment == "decode_coalesced":
        decode_coalesced(context, args.reps)
    elif args.experiment == "decode_in_kernel":
        decode_in_kernel(context, args.reps)
    elif args.experiment == "decode_overhead":
        decode_overhead(context, args.reps)
    else:
        blas(context, args.openblas)
    return 0


if __name__ == "__main__":
    sys.exit(main())
