"""Scenario ``traffic``: the IOPub messages and bytes of one generation against
the answer's length, in the foreground and as a background job (widgets)."""

from __future__ import annotations

from benchmarks.harness import (
    JOBS_EXPRESSION,
    RAW_PROMPT,
    STATS_EXPRESSION,
    Context,
    Kernel,
    cell,
    traffic_of,
)
from benchmarks.harness.errors import BenchError
from benchmarks.metrics import RATIO, Metric, ScenarioResult, median


def traffic(context: Context, result: ScenarioResult) -> None:
    """IOPub messages and bytes per generation, against the answer's length."""
    sizes = (100, 400) if context.quick else (500, 2000, 8000)
    background_size = sizes[-1] if context.quick else 2000
    reps = 1 if context.quick else 2
    profile = context.profile
    fast = profile.fast if profile is not None and profile.fast is not None else None
    model, label = (fast.alias, fast.label) if fast is not None else ("tiny-llama", "tiny llama")
    # With a profile (a fast machine), each size also runs raw mlx-lm next to the
    # cell: does the magic keep up with the model at this speed?
    baseline = context.text_baseline(context.path_of(model)) if profile is not None else None
    result.title = (
        "Output messages (stream, display_data, update_display_data, comm_*) of one `%%mlx` "
        "cell, and their bytes (the JSON content of each message, UTF-8, as sent), at growing "
        f"answer lengths: {label}, `--raw`, greedy, a prompt that does not stop early "
        f"(`{RAW_PROMPT}`). The baseline column is the answer text itself (its UTF-8 bytes): "
        "the least any frontend must receive. Target: bytes < 3 × text + 512 B per output "
        "message (the JSON framing and the status/footer displays are a constant per update). "
        f"The last rows measure a background job (`-b`, ipywidgets) of {background_size} tokens, "
        "counting every comm message until `%mlx wait` returns. Updates per second: the "
        "stream messages of the answer over the time from the first to the last one, as the "
        "client receives them."
        + (
            " Each foreground cell is paired with raw `mlx_lm.stream_generate` of the same "
            "length in the benchmark process (decode rate, ours ÷ raw)."
            if baseline is not None
            else ""
        )
    )
    result.setup = {
        "reps": f"{reps} (1 at 8000 tokens)" if not context.quick else 1,
        "tokens": ", ".join(map(str, sizes)),
        "stream_interval_ms": 200,
    }
    series = result.series
    series.update(tokens=[], bytes=[], text_bytes=[], limit=[], messages=[], updates_per_s=[])
    with Kernel(context.aliases(), f"%mlx load {model}") as kernel:
        kernel.generate(cell("mlx", f"-m {model} -n 20 --raw", RAW_PROMPT))  # warm-up
        if baseline is not None:
            baseline.generate(RAW_PROMPT, 20, raw=True)
        for size in sizes:
            samples = []
            # The longest answer is measured once: its counts barely vary.
            size_reps = 1 if size >= 8000 else reps
            for rep in range(1, size_reps + 1):
                raw = None
                if baseline is not None and rep % 2 == 0:
                    raw = baseline.generate(RAW_PROMPT, size, raw=True)
                ours = kernel.generate(
                    cell("mlx", f"-m {model} -n {size} --raw", RAW_PROMPT), timeout=1800
                )
                if baseline is not None and raw is None:
                    raw = baseline.generate(RAW_PROMPT, size, raw=True)
                counted = ours.traffic()
                counted["text_bytes"] = ours.stats["text_bytes"]
                counted["text_chars"] = ours.stats["text_chars"]
                counted["tokens"] = ours.stats["generation_tokens"]
                counted["generation_tps"] = ours.stats["generation_tps"]
                counted["raw_tps"] = raw["generation_tps"] if raw is not None else None
                counted["updates_per_s"] = _updates_per_s(ours)
                samples.append(counted)
                context.say(
                    f"{size} tokens rep {rep}/{size_reps}: {counted['messages']} messages, "
                    f"{counted['bytes']} B for {counted['text_bytes']} B of text; "
                    f"{counted['generation_tps']:.0f} tok/s"
                    + (f" (raw {counted['raw_tps']:.0f})" if raw is not None else "")
                    + f", {counted['updates_per_s']:.1f} updates/s"
                )
            result.metrics += _traffic_metrics(f"{size} tokens", samples)
            result.metrics += _rate_metrics(f"{size} tokens", samples)
            series["updates_per_s"].append(median([s["updates_per_s"] for s in samples]))
            series["tokens"].append(size)
            series["bytes"].append(median([s["bytes"] for s in samples]))
            series["text_bytes"].append(median([s["text_bytes"] for s in samples]))
            series["limit"].append(
                median([3 * s["text_bytes"] + 512 * s["messages"] for s in samples])
            )
            series["messages"].append(median([s["messages"] for s in samples]))
            detail = samples[-1]["by_type"]
            result.notes.append(
                f"**{size} tokens:** "
                + ", ".join(
                    f"{kind} {count} messages / {size_b} B"
                    for kind, (count, size_b) in sorted(detail.items())
                )
                + f"; {samples[-1]['tokens']} tokens generated, "
                f"{samples[-1]['text_chars']} characters."
            )
        _background_traffic(context, kernel, result, background_size, model)
    per_char = [b / t for b, t in zip(series["bytes"], series["text_bytes"]) if t]
    if len(per_char) >= 2:
        result.notes.append(
            "Bytes per byte of text at "
            + ", ".join(f"{n} tokens: {v:.2f}" for n, v in zip(series["tokens"], per_char))
            + " — flat or falling means the growth is linear (nothing is resent)."
        )


def _updates_per_s(ours) -> float:
    """Updates of the answer per second, first to last, as they arrived: stream
    messages of plain text, display and display-update messages of an answer
    rendered as Markdown (the default in a notebook)."""
    times = [
        arrived
        for arrived, message in ours.messages
        if (message["msg_type"] == "stream" and message["content"].get("name") == "stdout")
        or message["msg_type"] in ("display_data", "update_display_data")
    ]
    if len(times) < 2 or times[-1] <= times[0]:
        return float(len(times))
    return (len(times) - 1) / (times[-1] - times[0])


def _rate_metrics(label: str, samples: list) -> list:
    """Updates per second to the frontend and, paired with raw mlx-lm where it ran,
    the decode rate the cell kept."""
    rows = [
        Metric(
            "traffic",
            f"updates per second, {label} (%%mlx)",
            "/s",
            [],
            [s["updates_per_s"] for s in samples],
            "",
            "stream messages ÷ their time span",
            RATIO,
        )
    ]
    paired = [s["generation_tps"] / s["raw_tps"] for s in samples if s.get("raw_tps")]
    if paired:
        rows.append(
            Metric(
                "traffic",
                f"decode, {label}: %%mlx ÷ raw, per repetition",
                "×",
                [1.0] * len(paired),
                paired,
                "mlx_lm.stream_generate",
                "%%mlx (_mlx.stats)",
                RATIO,
            )
        )
    return rows


def _traffic_metrics(label: str, samples: list, what: str = "%%mlx") -> list:
    passed = all(s["bytes"] < 3 * s["text_bytes"] + 512 * s["messages"] for s in samples)
    return [
        Metric(
            "traffic",
            f"IOPub bytes, {label} ({what})",
            "B",
            [s["text_bytes"] for s in samples],
            [s["bytes"] for s in samples],
            "the answer text",
            "all output messages",
            RATIO,
            "< 3 × text + 512 B/update",
            passed,
        ),
        Metric(
            "traffic",
            f"IOPub messages, {label} ({what})",
            "msgs",
            [],
            [s["messages"] for s in samples],
            "",
            "",
            RATIO,
            "",
            None,
        ),
    ]


def _background_traffic(context, kernel, result, size, model) -> None:
    kernel.drain(0.1)
    kernel.others.clear()
    code = cell("mlx", f"-b -m {model} -n {size} --raw", RAW_PROMPT)
    started = kernel.execute(code)
    waited = kernel.execute("%mlx wait all")
    kernel.drain(0.5)
    # Widget updates go out with whichever request is current: the job's cell,
    # the wait cell, or none; the wait cell's own printed line is not counted.
    messages = (
        [m for _, m in started.messages]
        + [m for _, m in kernel.others]
        + [m for _, m in waited.messages if m["msg_type"].startswith("comm")]
    )
    counted = traffic_of(messages)
    values = kernel.execute(
        "pass",
        expressions={
            "stats": STATS_EXPRESSION.replace("_mlx", f"{JOBS_EXPRESSION}.all()[-1].result")
        },
    )
    stats = values.stats
    if "error" in stats:
        raise BenchError(f"could not read the background job's result: {stats['error']}")
    counted["text_bytes"] = stats.get("text_bytes", 0)
    counted["tokens"] = stats.get("generation_tokens", 0)
    context.say(
        f"-b {size} tokens: {counted['messages']} messages, {counted['bytes']} B "
        f"for {counted['text_bytes']} B of text"
    )
    if counted["text_bytes"]:
        result.metrics += _traffic_metrics(f"{size} tokens", [counted], "-b, widgets")
        result.series["background_tokens"] = [size]
        result.series["background_bytes"] = [counted["bytes"]]
        result.notes.append(
            f"**-b, {size} tokens:** "
            + ", ".join(
                f"{kind} {count} messages / {size_b} B"
                for kind, (count, size_b) in sorted(counted["by_type"].items())
            )
            + f" for {counted['text_bytes']} B of text. Widget state is sent whole: every update "
            "resends the current text segment of `widget_view.WidgetStreamView` (its size is "
            "bounded), however little text it adds, and every new segment opens a widget."
        )
