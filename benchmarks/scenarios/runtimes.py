"""Benchmark scenario ``runtimes``: what the worker process and a server cost per token.

The same ``%%mlx`` cell, the same model and the same greedy settings, in
three real kernels side by side: one with the thread runtime, one with the
worker process (``%mlx runtime process``: JSON-RPC over a pipe, buffered in
the worker), one connected to a loopback ``mlx_lm.server`` (``%mlx
connect``: HTTP and server-sent events). Each repetition runs one cell in
each kernel and a raw ``mlx_lm.stream_generate`` in the benchmark process,
one after the other, so the ratios are paired within a repetition and the
machine's drift between repetitions cancels out.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

from benchmarks.harness import LONG_ANSWER_PROMPT, Context, Kernel, MlxLmServer, cell
from benchmarks.harness.errors import BenchError
from benchmarks.metrics import (
    DIFFERENCE,
    RATIO,
    Metric,
    ScenarioResult,
    describe_ratios,
    median,
    median_of,
    ms,
)

MODES = ("thread", "process", "remote")
#: The issue's target: the worker process within 2 % of thread mode.
PROCESS_TARGET = 0.98


def runtimes(context: Context, result: ScenarioResult) -> None:
    """Decode tokens/s of process mode and of a loopback server against thread mode."""
    result.title = (
        "The same `%%mlx` cell (greedy, same max tokens) in three kernels side by side: one "
        "with the thread runtime, one with the worker process (`%mlx runtime process`), one "
        "connected to a loopback `mlx_lm.server` serving the same model folder "
        "(`%mlx connect`); each repetition runs raw `mlx_lm.stream_generate` in the benchmark "
        "process and one cell in each kernel, in turn (order reversed every other repetition), "
        "so every ratio is paired within a repetition. Decode tok/s: mlx-lm's own "
        "`generation_tps` for thread and process mode (measured where the tokens are "
        "consumed: in the kernel, or in the worker, which buffers and writes the pipe); for "
        "the server, the remote runtime's rate from the arrival of the first to the last "
        "streamed token. Cell time: execute request sent → reply received, as a frontend sees "
        "it. Prompt caches stay on everywhere (the magic's prefix cache, mlx_lm.server's "
        "own), so after the untimed first cell no mode reads the prompt again and cell times "
        "compare the transports, not prefills. The server's own rate is read too: the same "
        "prompt streamed straight from it with httpx, no magic (`server direct`), in the "
        "same order, so remote ÷ server direct is the client's cost alone."
    )
    profile = context.profile
    if profile is not None:
        plans = [(m.label, m.alias, Path(m.path), m.max_tokens, m.reps) for m in profile.runtimes]
    elif context.quick:
        plans = [("tiny llama", "tiny-llama", context.tiny_llama, 60, 1)]
    else:
        plans = [
            ("tiny llama", "tiny-llama", context.tiny_llama, 400, 4 * context.reps),
            ("smollm2", "smollm2", context.smollm2, 32, context.reps),
        ]
    result.setup = {
        "models": ", ".join(
            f"{label} (-n {n}, {reps} reps per mode)" for label, _, _, n, reps in plans
        ),
        "prompt": repr(LONG_ANSWER_PROMPT),
        "order": "raw, thread, process, remote; then reversed",
    }
    series = result.series
    series.update(models=[], modes=list(MODES), tps={mode: [] for mode in MODES})
    for label, name, path, max_tokens, reps in plans:
        with MlxLmServer(path, context.work / "server") as server:
            context.say(f"{label}: mlx_lm.server ready at {server.url}")
            samples = _measure(context, label, name, server, max_tokens, reps)
        process_target = PROCESS_TARGET if profile is None else profile.process_target
        decode_target = None if profile is None else profile.decode_target
        result.metrics += _metrics(label, samples, process_target, decode_target)
        result.notes.append(_note(label, samples))
        series["models"].append(label)
        for mode in MODES:
            series["tps"][mode].append(median(tps(samples, mode)))


def _measure(context, label, name, server, max_tokens, reps) -> dict:
    """Per repetition: the raw run, one cell in each mode's kernel and the
    server streamed directly, in an order that is reversed every other
    repetition (ABCDE EDCBA)."""
    path, url = server.path, server.url
    baseline = context.text_baseline(path)
    baseline.generate("Hello", 2, raw=True)  # first calls allocate
    code = cell("mlx", f"-n {max_tokens}", LONG_ANSWER_PROMPT)
    setup = (context.aliases(), f"%config MLXMagics.default_model = {name!r}")
    samples: dict = {"raw": [], "server": [], **{mode: [] for mode in MODES}}
    with contextlib.ExitStack() as stack:
        kernels = {
            "thread": stack.enter_context(Kernel(*setup, f"%mlx load {name}")),
            "process": stack.enter_context(
                Kernel(*setup, "%mlx runtime process", f"%mlx load {name}")
            ),
            "remote": stack.enter_context(Kernel(*setup, f"%mlx connect {url}")),
        }
        for kernel in kernels.values():
            kernel.generate(code)  # untimed: allocates, and fills the prompt caches
        server.stream_directly(LONG_ANSWER_PROMPT, max_tokens)  # untimed, as the cells
        order = ["raw", *MODES, "server"]
        for rep in range(1, reps + 1):
            for side in order if rep % 2 else order[::-1]:
                if side == "raw":
                    samples["raw"].append(baseline.generate(LONG_ANSWER_PROMPT, max_tokens))
                elif side == "server":
                    samples["server"].append(server.stream_directly(LONG_ANSWER_PROMPT, max_tokens))
                else:
                    samples[side].append(kernels[side].generate(code))
            context.say(
                f"{label} rep {rep}/{reps}: decode {samples['raw'][-1]['generation_tps']:.1f} "
                "(mlx-lm), "
                + ", ".join(
                    f"{mode} {samples[mode][-1].stats['generation_tps']:.1f}" for mode in MODES
                )
                + f", server direct {samples['server'][-1]['generation_tps']:.1f} tok/s"
            )
    for mode in MODES:
        for ours in samples[mode]:
            if not ours.stats.get("generation_tokens"):
                raise BenchError(f"{label} {mode}: a cell generated nothing")
    return samples


def tps(samples: dict, mode: str) -> list:
    return [c.stats["generation_tps"] for c in samples[mode]]


def paired(samples: dict, mode: str, against: str = "raw") -> list:
    """Each repetition's decode rate in ``mode`` divided by the same
    repetition's rate in ``against`` (the raw mlx-lm run, or another mode)."""
    if against == "raw":
        bases = [b["generation_tps"] for b in samples["raw"]]
    else:
        bases = tps(samples, against)
    return [ours / base for ours, base in zip(tps(samples, mode), bases)]


def _metrics(
    label: str, samples: dict, process_target: float, decode_target: Optional[float]
) -> list:
    def cell_s(mode):
        return [c.replied - c.sent for c in samples[mode]]

    metrics = []
    raw = [b["generation_tps"] for b in samples["raw"]]
    for mode in MODES:
        metrics.append(
            Metric(
                "runtimes",
                f"decode tok/s, {label}, {mode} mode",
                "tok/s",
                raw,
                tps(samples, mode),
                "mlx_lm.stream_generate",
                f"%%mlx, {mode}",
                RATIO,
            )
        )
        if decode_target is not None:
            # Judged on the ratios paired within each repetition.
            ratios = paired(samples, mode)
            metrics.append(
                Metric(
                    "runtimes",
                    f"decode, {label}: {mode} ÷ raw, per repetition",
                    "×",
                    [1.0] * len(ratios),
                    ratios,
                    "mlx_lm.stream_generate",
                    f"%%mlx, {mode}",
                    RATIO,
                    f"≥ {decode_target}×",
                    median_of(ratios) >= decode_target,
                )
            )
    # The judged ratio is paired within each repetition (minutes apart, the
    # machine's speed drifts more than the effect measured).
    process = paired(samples, "process", "thread")
    metrics.append(
        Metric(
            "runtimes",
            f"decode, {label}: process ÷ thread, per repetition",
            "×",
            [1.0] * len(process),
            process,
            "thread mode",
            "process mode",
            RATIO,
            f"≥ {process_target}×",
            median_of(process) >= process_target,
        )
    )
    remote = paired(samples, "remote", "thread")
    metrics.append(
        Metric(
            "runtimes",
            f"decode, {label}: loopback server ÷ thread, per repetition",
            "×",
            [1.0] * len(remote),
            remote,
            "thread mode",
            "mlx_lm.server",
            RATIO,
        )
    )
    direct = [s["generation_tps"] for s in samples["server"]]
    if direct:
        by_server = [ours / base for ours, base in zip(tps(samples, "remote"), direct)]
        metrics.append(
            Metric(
                "runtimes",
                f"decode, {label}: remote ÷ the server streamed directly, per repetition",
                "×",
                [1.0] * len(by_server),
                by_server,
                "mlx_lm.server, httpx",
                "%%mlx, remote",
                RATIO,
            )
        )
        server_by_raw = [s / b["generation_tps"] for s, b in zip(direct, samples["raw"])]
        metrics.append(
            Metric(
                "runtimes",
                f"decode, {label}: the server streamed directly ÷ raw, per repetition",
                "×",
                [1.0] * len(server_by_raw),
                server_by_raw,
                "mlx_lm.stream_generate",
                "mlx_lm.server, httpx",
                RATIO,
            )
        )
    for mode in ("process", "remote"):
        metrics.append(
            Metric(
                "runtimes",
                f"cell time, {label}: {mode} against thread",
                "s",
                cell_s("thread"),
                cell_s(mode),
                "thread mode",
                f"{mode} mode",
                DIFFERENCE,
            )
        )
    return metrics


def _note(label: str, samples: dict) -> str:
    parts = []
    thread_tps = median_of(tps(samples, "thread"))
    raw_ids = {tuple(b["token_ids"]) for b in samples["raw"]}
    for mode in MODES:
        cells = samples[mode]
        per_token_ms = 1000 / median_of(tps(samples, mode)) - 1000 / thread_tps
        tokens = sorted({c.stats["generation_tokens"] for c in cells})
        same = raw_ids | {tuple(c.stats["token_ids"]) for c in cells}
        text = (
            f"{mode}: {'/'.join(map(str, tokens))} tokens, ÷ the raw run of the same "
            f"repetition {describe_ratios(paired(samples, mode))}"
        )
        if mode != "thread":
            text += (
                f", ÷ thread mode {describe_ratios(paired(samples, mode, 'thread'))}"
                f" ({per_token_ms:+.2f} ms per token)"
            )
        text += f"; TTFT {ms(median([c.stats['ttft_s'] for c in cells]))}"
        if mode != "remote":  # a server sends text, not token ids
            text += f"; {'the same' if len(same) == 1 else 'DIFFERENT'} token ids as mlx-lm"
        parts.append(text)
    return f"**{label}:** " + "; ".join(parts) + "."
