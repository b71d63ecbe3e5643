"""Where the time goes, in one process (no kernel, no frontend), on the models of a
GPU run's profile: ``python -m benchmarks.gpu.probe --profile PROFILE.json``.

* ``decode``: per model, interleaved (the order rotates every repetition): raw
  ``mlx_lm.stream_generate`` on this thread; the same on another thread (the
  runtime's situation, without the runtime); the runtime thread read per event
  by ``stream_job`` (what ``%%mlx`` does, into a view that shows nothing); the
  runtime thread read every 50 ms. Paired ratios to raw, per repetition.
* ``switch``: the tiny model's runtime + ``stream_job`` under three values of
  ``sys.setswitchinterval`` (the GIL hand-over interval; Python's default is 5 ms).
* ``report``: the runtime thread's own Python time per token (``Stepper._report``
  and ``Job.emit``, timed by wrapping them) and a cProfile of the reading thread.
* ``prefill``: raw mlx-lm reading a long prompt with ``prefill_step_size`` 16 (the
  magic's first step size for a model whose prompt speed it has not measured yet,
  ``engine.stepping.FIRST_PREFILL_STEP``), 512 and 2048 (mlx-lm's default), and the
  magic's first and second long prompt on a freshly loaded model.

* ``jit`` and ``questions`` (:mod:`benchmarks.gpu.first_tokens`): the first
  long prompt in a fresh process, and new short questions to a warm model.

Writes ``probe.json`` and ``probe.txt`` (the printed lines) into ``--out``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import threading
import time
from pathlib import Path

from benchmarks.gpu.first_tokens import (
    VARIANT,
    jit,
    probe_request,
    questions,
    raw_first_token_s,
)
from benchmarks.gpu.probe_log import LINES, say


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.probe")
    parser.add_argument("--profile", required=True)
    parser.add_argument("--out", default="gpu-probe")
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--parts", default="decode,switch,report,prefill")
    parser.add_argument("--variant", default="magic", help="for the jit part (see jit)")
    args = parser.parse_args(argv)
    VARIANT[0] = args.variant
    from benchmarks.harness import Profile

    profile = Profile.load(args.profile)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [p.strip() for p in args.parts.split(",")]
    data: dict = {}
    from mlx_magic.runtime.thread import ThreadRuntime

    runtime = ThreadRuntime(64 << 30)
    began = time.perf_counter()
    try:
        for part in parts:
            say(f"== {part} ({time.perf_counter() - began:.0f} s)")
            try:
                data[part] = PARTS[part](runtime, profile, args.reps)
            except Exception as error:  # noqa: BLE001 - the next part runs
                import traceback

                say(f"{part} FAILED: {type(error).__name__}: {error}")
                say(traceback.format_exc())
            (out / "probe.json").write_text(json.dumps(data, indent=1, default=str))
            (out / "probe.txt").write_text("\n".join(LINES) + "\n")
    finally:
        runtime.stop()
    return 0


def _variants(runtime, path: Path, tokens: int) -> dict:
    from benchmarks.harness import LONG_ANSWER_PROMPT, InProcessText
    from mlx_magic.display.streaming import stream_job
    from mlx_magic.display.views import StreamView
    from mlx_magic.models.resolve import resolve_model
    from mlx_magic.vocabulary.values import Finished

    spec = resolve_model(str(path))
    runtime.load(spec)
    baseline = InProcessText(path)
    request = probe_request(spec, tokens, LONG_ANSWER_PROMPT)

    def raw():
        return baseline.generate(LONG_ANSWER_PROMPT, tokens)["generation_tps"]

    def raw_thread():
        box = {}
        thread = threading.Thread(target=lambda: box.setdefault("tps", raw()))
        thread.start()
        thread.join()
        return box["tps"]

    def per_event():
        job = runtime.generate(request)
        return stream_job(job, StreamView(), interval_s=0.2).result.stats.generation_tps

    def drained():
        job = runtime.generate(request)
        while True:
            time.sleep(0.05)
            for event in job.waiting_events():
                if isinstance(event, Finished):
                    return event.stats.generation_tps

    return {
        "raw mlx-lm, this thread": raw,
        "raw mlx-lm, another thread": raw_thread,
        "runtime + stream_job": per_event,
        "runtime, read every 50 ms": drained,
    }


def _interleave(variants: dict, reps: int) -> dict:
    samples: dict = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up
    names = list(variants)
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(variants[name]())
    return samples


def _print_samples(label: str, samples: dict) -> dict:
    base = samples[next(iter(samples))]
    summary = {}
    for name, values in samples.items():
        ratios = [v / b for v, b in zip(values, base)]
        summary[name] = {"tps": values, "paired": ratios}
        say(
            f"{label:34s} {name:28s} median {statistics.median(values):8.1f} tok/s; ÷ raw per "
            f"rep {', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.3f})"
        )
    return summary


def decode(runtime, profile, reps: int) -> dict:
    results = {}
    models = [m for m in profile.decode if m.alias != "llama-3.1-8b"]
    for model in models[:1] + models[2:3] + models[-1:]:
        variants = _variants(runtime, Path(model.path), model.max_tokens)
        results[model.label] = _print_samples(model.label, _interleave(variants, reps))
    return results


def switch(runtime, profile, reps: int) -> dict:
    model = profile.fast
    assert model is not None
    variants = _variants(runtime, Path(model.path), 1000)
    results = {}
    default = sys.getswitchinterval()
    try:
        for interval in (0.0005, default, 0.05):
            sys.setswitchinterval(interval)
            picked = {k: variants[k] for k in ("raw mlx-lm, this thread", "runtime + stream_job")}
            label = f"{model.label}, switch {interval * 1000:g} ms"
            results[str(interval)] = _print_samples(label, _interleave(picked, reps))
    finally:
        sys.setswitchinterval(default)
    return results


def report(runtime, profile, reps: int) -> dict:
    """The runtime thread's Python time per token, and a profile of the reader."""
    from benchmarks.harness import LONG_ANSWER_PROMPT
    from mlx_magic.display.streaming import stream_job
    from mlx_magic.display.views import StreamView
    from mlx_magic.engine import stepping
    from mlx_magic.models.resolve import resolve_model
    from mlx_magic.vocabulary.job import Job

    results = {}
    spent = {"report": 0.0, "emit": 0.0, "reports": 0, "emits": 0}
    original_report, original_emit = stepping.Stepper._report, Job.emit

    def timed_report(self, response):
        began = time.perf_counter()
        try:
            return original_report(self, response)
        finally:
            spent["report"] += time.perf_counter() - began
            spent["reports"] += 1

    def timed_emit(self, event):
        began = time.perf_counter()
        try:
            return original_emit(self, event)
        finally:
            spent["emit"] += time.perf_counter() - began
            spent["emits"] += 1

    for model in (profile.fast, *profile.decode[:1]):
        if model is None:
            continue
        spec = resolve_model(model.path)
        runtime.load(spec)
        request = probe_request(spec, model.max_tokens, LONG_ANSWER_PROMPT)
        stream_job(runtime.generate(request), StreamView(), interval_s=0.2)  # warm-up
        for key in spent:
            spent[key] = 0 if key.endswith("s") else 0.0
        stepping.Stepper._report, Job.emit = timed_report, timed_emit  # type: ignore[method-assign]  # timed for the probe, put back after
        profiler = cProfile.Profile()
        try:
            began = time.perf_counter()
            profiler.enable()
            outcome = stream_job(runtime.generate(request), StreamView(), interval_s=0.2)
            profiler.disable()
            wall = time.perf_counter() - began
        finally:
            stepping.Stepper._report, Job.emit = original_report, original_emit  # type: ignore[method-assign]  # timed for the probe, put back after
        tokens = outcome.result.stats.generation_tokens
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(12)
        per_token_us = 1e6 * spent["report"] / max(1, tokens)
        say(
            f"{model.label}: {tokens} tokens in {wall:.2f} s "
            f"({outcome.result.stats.generation_tps:.0f} tok/s); runtime thread in "
            f"Stepper._report {per_token_us:.1f} µs per token, then Job.emit "
            f"{1e6 * spent['emit'] / max(1, spent['emits']):.1f} µs per event ({spent['emits']} "
            f"events, put in the job by the runtime's Run); {outcome.flushes} flushes"
        )
        say("reader thread (stream_job), top by own time:\n" + text.getvalue()[-3000:])
        results[model.label] = {
            "tokens": tokens,
            "wall_s": wall,
            "report_us_per_token": per_token_us,
            "emits": spent["emits"],
            "flushes": outcome.flushes,
        }
    return results


def prefill(runtime, profile, reps: int) -> dict:
    """Raw mlx-lm's prefill at three step sizes, and the magic's first two long prompts."""

    from benchmarks.harness import InProcessText, long_document
    from mlx_magic.display.streaming import stream_job
    from mlx_magic.display.views import StreamView
    from mlx_magic.models.resolve import resolve_model

    model = profile.long
    assert model is not None
    baseline = InProcessText(Path(model.path))

    def count(text):
        return len(baseline.tokenizer.encode(text))

    results: dict = {}
    for size in profile.long_tokens:
        document = long_document(count, size - 50)
        ids = baseline.prompt_ids(document + "\n\nSummarise this.")
        row = {}
        for step in (16, 512, 2048):
            if step == 16 and size > 8192:
                continue  # a thousand steps: the 4k row shows the trend
            times = []
            for _ in range(2):
                times.append(raw_first_token_s(baseline, ids, step))
            row[str(step)] = min(times)
            say(
                f"{model.label}, {len(ids)}-token prompt, raw mlx-lm, prefill_step_size {step}: "
                f"TTFT {min(times) * 1000:.0f} ms ({len(ids) / min(times):.0f} tokens/s)"
            )
        results[str(size)] = row
    # The magic on a model it has just loaded: the first long prompt is read in
    # steps of FIRST_PREFILL_STEP, the next one at the measured speed.
    spec = resolve_model(model.path)
    runtime.unload()
    runtime.load(spec)
    for attempt, size in enumerate((profile.long_tokens[0], profile.long_tokens[0]), 1):
        document = long_document(count, size - 50) + f"\n\n(attempt {attempt})"
        request = probe_request(spec, 1, document + "\n\nSummarise this.")
        outcome = stream_job(runtime.generate(request), StreamView(), interval_s=0.2)
        stats = outcome.result.stats
        say(
            f"{model.label}, the magic's long prompt {attempt} after a fresh load: "
            f"{stats.prompt_tokens} tokens, TTFT {stats.ttft_s * 1000:.0f} ms "  # type: ignore[operator]
            f"({stats.prompt_tps:.0f} tokens/s)"
        )
        results[f"magic_{attempt}"] = {"ttft_s": stats.ttft_s, "prompt_tps": stats.prompt_tps}
    return results


PARTS = {
    "decode": decode,
    "switch": switch,
    "report": report,
    "prefill": prefill,
    "jit": jit,
    "questions": questions,
}

if __name__ == "__main__":
    sys.exit(main())
