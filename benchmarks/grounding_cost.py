"""What finding and drawing boxes costs a vision answer, in a real kernel.

The tiny Qwen2-VL is made to answer a known text with many boxes (a scripted
logits processor: mlx-vlm's real generation runs every step), so every
repetition decodes the same tokens. The same cell runs with the
``grounding`` setting on and off, alternated, in one kernel; each pair gives
a ratio of decode speed (tokens/s, as measured on the runtime side, where a
busy kernel thread would slow it), of wall time, and of output traffic.

    python benchmarks/grounding_cost.py [--repetitions 10] [--boxes 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as `python benchmarks/NAME.py`: import from the repository's root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.harness import Kernel


def scripted_answer(boxes: int) -> str:
    parts = ["Here is what I found."]
    for index in range(boxes):
        x = 20 + (index * 37) % 900
        y = 30 + (index * 53) % 900
        parts.append(
            f" The object {index} is <|object_ref_start|>object {index}<|object_ref_end|>"
            f"<|box_start|>({x},{y}),({x + 60},{y + 50})<|box_end|>, next to the others."
        )
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--boxes", type=int, default=20)
    args = parser.parse_args()

    from mlx_magic.testing.tiny_models import build_tiny_vlm

    work = Path(tempfile.mkdtemp(prefix="grounding-cost-"))
    vlm = build_tiny_vlm(work / "vlm")
    answer = scripted_answer(args.boxes)
    setup = (
        f"%config MLXMagics.default_vision_model = {str(vlm)!r}",
        "from PIL import Image; photo = Image.new('RGB', (640, 480), 'white')",
        "from mlx_magic.testing.scripted import forced_vision_answer",
        f"ANSWER = {answer!r}",
    )
    code = (
        "with forced_vision_answer(ANSWER):\n"
        "    get_ipython().run_cell_magic('mlx_vision', '-i photo -n 2000', 'Find everything.')"
    )
    stats_of = (
        "__import__('json').dumps(dict(tps=_mlx.stats.generation_tps, "
        "tokens=_mlx.stats.generation_tokens, boxes=len(_mlx.boxes)))"
    )
    rows = {True: [], False: []}
    with Kernel(*setup) as kernel:
        for setting in (True, False):  # warm-up: model load, first drawing
            kernel.execute(f"%config MLXMagics.grounding = {setting}")
            kernel.execute(code)
        for repetition in range(args.repetitions):
            order = (True, False) if repetition % 2 == 0 else (False, True)
            for setting in order:
                kernel.execute(f"%config MLXMagics.grounding = {setting}")
                started = time.perf_counter()
                cell = kernel.execute(code, expressions={"stats": stats_of})
                wall = time.perf_counter() - started
                values = cell.values["stats"]  # the harness parses it
                rows[setting].append(dict(wall=wall, traffic=cell.traffic()["bytes"], **values))
    on, off = rows[True], rows[False]
    assert all(r["boxes"] == args.boxes for r in on) and all(r["boxes"] == 0 for r in off)
    tps_ratios = [a["tps"] / b["tps"] for a, b in zip(on, off)]
    wall_ratios = [a["wall"] / b["wall"] for a, b in zip(on, off)]
    print(f"{on[0]['tokens']} tokens, {args.boxes} boxes, {args.repetitions} pairs (alternated)")
    print(
        f"decode tok/s  on {statistics.median(r['tps'] for r in on):7.1f}   "
        f"off {statistics.median(r['tps'] for r in off):7.1f}   "
        f"on/off median {statistics.median(tps_ratios):.3f} "
        f"(range {min(tps_ratios):.3f}–{max(tps_ratios):.3f})"
    )
    print(
        f"wall s        on {statistics.median(r['wall'] for r in on):7.3f}   "
        f"off {statistics.median(r['wall'] for r in off):7.3f}   "
        f"on/off median {statistics.median(wall_ratios):.3f} "
        f"(range {min(wall_ratios):.3f}–{max(wall_ratios):.3f})"
    )
    print(
        f"traffic bytes on {statistics.median(r['traffic'] for r in on):9.0f}   "
        f"off {statistics.median(r['traffic'] for r in off):9.0f}"
    )
    print("per-pair decode ratios:", " ".join(f"{r:.3f}" for r in tps_ratios))


if __name__ == "__main__":
    main()
