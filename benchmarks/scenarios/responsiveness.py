"""Scenario ``responsiveness``: the round trip of a trivial cell in an idle
kernel and while a background job streams."""

from __future__ import annotations

import time

from benchmarks.harness import JOBS_EXPRESSION, RAW_PROMPT, Context, Kernel, cell
from benchmarks.harness.errors import BenchError
from benchmarks.metrics import DIFFERENCE, Metric, ScenarioResult, median, median_of, ms


def responsiveness(context: Context, result: ScenarioResult) -> None:
    """Latency of a trivial cell while a background job streams."""
    pings = 4 if context.quick else 10
    profile = context.profile
    if profile is not None:
        jobs = [(m.label, m.alias, m.max_tokens) for m in (profile.fast, *profile.responsive) if m]
    else:
        jobs = [("tiny llama", "tiny-llama", 1000 if context.quick else 3000)]
        if not context.quick:
            jobs.append(("smollm2", "smollm2", 60))
    result.title = (
        "Round trip of a `1+1` cell (execute request sent → execute reply received) in an idle "
        "kernel (baseline) and while a `%%mlx -b` background job streams (ours), interleaved: "
        f"{pings} pings idle, then {pings} pings during the job, for "
        + (
            "a fast model (tiny llama: the runtime thread is busy in Python most of the time) "
            "and a slow one (SmolLM2: mostly inside MLX)"
            if profile is None
            else ", ".join(label for label, _, _ in jobs)
        )
        + ". Target: median < 100 ms while streaming."
    )
    result.setup = {"pings per side": pings, "jobs": ", ".join(f"{j[0]} -n {j[2]}" for j in jobs)}
    with Kernel(context.aliases(), *(f"%mlx load {model}" for _, model, _ in jobs)) as kernel:
        for label, model, tokens in jobs:
            kernel.generate(cell("mlx", f"-m {model} -n 2 --raw", RAW_PROMPT))  # warm-up
            idle = [_ping(kernel)[0] for _ in range(pings)]
            kernel.execute(cell("mlx", f"-b -m {model} -n {tokens} --raw", RAW_PROMPT))
            busy: list[float] = []
            late = 0
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
            context.say(
                f"{label}: idle median {ms(median(idle))}, during -b median "
                f"{ms(median(busy))} (max {ms(max(busy))}; {len(busy)} pings while "
                f"the job ran)"
            )
            result.series[f"{label}_idle"] = idle
            result.series[f"{label}_busy"] = busy
            result.metrics.append(
                Metric(
                    "responsiveness",
                    f"`1+1` latency during -b, {label}",
                    "s",
                    idle,
                    busy,
                    "idle kernel",
                    f"-b job streaming ({tokens} tokens)",
                    DIFFERENCE,
                    "< 100 ms",
                    median_of(busy) < 0.100,
                )
            )
            result.notes.append(
                f"**{label}:** during the job: max {ms(max(busy))} over {len(busy)} pings; "
                f"idle: max {ms(max(idle))}."
            )


_RUNNING = f"len({JOBS_EXPRESSION}.running())"


def _ping(kernel: Kernel) -> tuple[float, bool]:
    """The round trip of ``1+1``, and whether a background job was running at its end."""
    ping = kernel.execute("1+1", reply_first=True, expressions={"running": _RUNNING})
    running = ping.values.get("running")
    if not isinstance(running, int):
        raise BenchError(f"could not read the running jobs: {running}")
    return ping.replied - ping.sent, running > 0
