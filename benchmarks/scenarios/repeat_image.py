"""Scenario ``repeat_image``: time to first token of the first and the second
question about the same (new) image."""

from __future__ import annotations

import json
import os
import re
from typing import Optional

from benchmarks.harness import VISION_PROMPTS, Cell, Context, Kernel, cell
from benchmarks.metrics import RATIO, Metric, ScenarioResult, median, median_of, ms


def repeat_image(context: Context, result: ScenarioResult) -> None:
    """TTFT of the first and second question about the same (new) image."""
    reps = context.reps
    profile = context.profile
    label, model, size = "tiny Qwen2-VL", "tiny-vlm", 224
    if profile is not None and profile.vision is not None:
        label, model, size = profile.vision.label, profile.vision.alias, profile.image_size
        reps = profile.vision.reps
    result.title = (
        f"Two questions about the same image in a row (`%%mlx_vision -m {model} -n 1 -i IMG`), "
        f"each repetition with a new random {size}×{size} PNG (so every cache is cold for the first "
        "question). The second question reuses the decoded image (kernel side) and the vision "
        "features (runtime side). TTFT is `_mlx.stats.ttft_s` (job start to first token); the "
        "frontend's view (request sent → text received) also counts reading and decoding the "
        "file. The raw `mlx_vlm.stream_generate` in this process, on the same image and prompt, "
        "is shown for reference."
    )
    result.setup = {"reps": reps, "model": label, "image": f"{size}×{size} random PNG"}
    baseline = context.vision_baseline(context.path_of(model))
    first, second, first_visible, second_visible, raw, previews = [], [], [], [], [], []
    tokens = []
    with Kernel(context.aliases(), f"%mlx load {model}") as kernel:
        warm = context.fresh_image(size)
        kernel.generate(cell("mlx_vision", f"-m {model} -n 1 -i {warm}", VISION_PROMPTS[0]))
        baseline.generate(VISION_PROMPTS[0], warm, 1)
        for rep in range(reps):
            image = context.fresh_image(size)
            raw_run = baseline.generate(VISION_PROMPTS[0], image, 1)
            raw.append(raw_run["ttft_s"])
            one = kernel.generate(
                cell("mlx_vision", f"-m {model} -n 1 -i {image}", VISION_PROMPTS[0])
            )
            two = kernel.generate(
                cell("mlx_vision", f"-m {model} -n 1 -i {image}", VISION_PROMPTS[1])
            )
            tokens.append((raw_run["prompt_tokens"], one.stats["prompt_tokens"]))
            previews.append(_preview_of(one))
            first.append(one.stats["ttft_s"])
            second.append(two.stats["ttft_s"])
            first_visible.append(one.first_text_s)
            second_visible.append(two.first_text_s)
            context.say(
                f"rep {rep + 1}/{reps}: first {ms(first[-1])}, second {ms(second[-1])} "
                f"(frontend {ms(first_visible[-1])} → {ms(second_visible[-1])}; raw "
                f"mlx_vlm {ms(raw[-1])})"
            )
        status = kernel.execute("%mlx status")
    result.series.update(first=first, second=second, raw=raw)
    result.metrics += [
        Metric(
            "repeat_image",
            "TTFT, second question ÷ first (runtime side)",
            "s",
            first,
            second,
            "first question",
            "second, same image",
            RATIO,
            "≤ 0.6×",
            median_of(second) <= 0.6 * median_of(first),
        ),
        Metric(
            "repeat_image",
            "TTFT, second ÷ first (as the frontend sees it)",
            "s",
            first_visible,
            second_visible,
            "first question",
            "second, same image",
            RATIO,
            "≤ 0.6×",
            median_of(second_visible) <= 0.6 * median_of(first_visible),
        ),
        Metric(
            "repeat_image",
            "TTFT, first question vs raw mlx_vlm",
            "s",
            raw,
            first,
            "mlx_vlm.stream_generate",
            "%%mlx_vision (runtime side)",
            RATIO,
            "",
            None,
        ),
    ]
    text = "".join(
        m["content"].get("text", "") for _, m in status.messages if m["msg_type"] == "stream"
    )
    lines = [line for line in text.splitlines() if "Vision features" in line or "Decoded" in line]
    result.notes.append("`%mlx status` after the run: " + "; ".join(lines))
    result.notes.append(
        "Prompt tokens (image tokens included), raw mlx-vlm / %%mlx_vision, per repetition: "
        + ", ".join(f"{a}/{b}" for a, b in tokens)
        + f"; raw mlx-vlm TTFT {', '.join(ms(r) for r in raw)}; the magic's first question "
        f"{', '.join(ms(f) for f in first)}, second {', '.join(ms(t) for t in second)} "
        "(runtime side)."
    )
    if previews and previews[0]:
        sizes = [p["bytes"] for p in previews if p]
        result.notes.append(
            f"Every vision cell first shows the image preview: one display_data of "
            f"{median_of(sizes) / 1e3:.0f} kB here (the thumbnail as image/png, and base64 in the "
            f"HTML as the smaller of PNG and JPEG; the image file is "
            f"{median_of([p['file'] for p in previews if p]) / 1e3:.0f} kB), "
            f"received {ms(median([p['at'] for p in previews if p]))} after the request. That "
            "part of the frontend's wait (reading the file, making and sending the preview) is "
            "the same for both questions, so the frontend sees a smaller relative gain than the "
            "runtime."
        )


def _preview_of(vision_cell: Cell) -> Optional[dict]:
    """Size and arrival of the image preview (the display_data with an image/png)."""
    for arrived, message in vision_cell.messages:
        data = message["content"].get("data", {}) if message["msg_type"] == "display_data" else {}
        if "image/png" in data:
            named = re.search(r"-i (\S+)", vision_cell.code)
            assert named is not None  # every vision cell of this scenario passes -i IMAGE
            path = named.group(1)
            return {
                "bytes": len(json.dumps(message["content"]).encode()),
                "at": arrived - vision_cell.sent,
                "file": os.path.getsize(path),
            }
    return None
