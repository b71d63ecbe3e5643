"""``python -m benchmarks.gpu.vlm_to_sam``: a VLM finds, SAM 3 outlines, timed end to end.

Two cells in an IPython shell with the extension loaded, as a notebook runs them:
``%%mlx_vision -i picture`` asks a vision model where the cars are, and its answer
(forced through mlx-vlm's real generation path to name three boxes in Qwen2-VL's
grounding syntax: random weights find nothing) gives ``_mlx.boxes``; then
``%mlx segment @boxes`` outlines each box with SAM 3. Both models are warm (a
first round loads them and is reported apart); each timed round is the two cells
from submit to return, on a new 1-megapixel picture (so the VLM reads it).

    python -m benchmarks.gpu.vlm_to_sam --vlm FOLDER --sam FOLDER [--repeats 5]
    python -m benchmarks.gpu.vlm_to_sam --mini     # the tiny test models: a CPU check
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from benchmarks.gpu.segment import PICTURE_SIZE

#: Qwen2-VL's grounding answer: three boxes on the 0–1000 grid.
ANSWER = "".join(
    f"<|object_ref_start|>car<|object_ref_end|><|box_start|>({100 + 300 * i},200),"
    f"({330 + 300 * i},700)<|box_end|>"
    for i in range(3)
)


def measure(vlm: Path, sam: Path, repeats: int) -> dict:
    """Seconds of the first round and medians of the warm ones: the VLM's cell, the
    segment cell, and both."""
    import numpy as np
    from IPython.core.interactiveshell import InteractiveShell
    from PIL import Image
    from traitlets.config import Config

    from mlx_magic.testing.scripted import forced_vision_answer

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell(config=config)
    shell.extension_manager.load_extension("mlx_magic")
    width, height = PICTURE_SIZE
    rng = np.random.default_rng(0)

    def cell(source: str) -> float:
        started = time.perf_counter()
        shell.run_cell(source).raise_error()
        return time.perf_counter() - started

    cell(f"%config MLXMagics.default_segment_model = {str(sam)!r}")

    def one_round() -> tuple[float, float, int, int]:
        # A new picture each round: the VLM reads it (no prefix cache), as a first question does.
        pixels = rng.integers(0, 256, (height, width, 3), np.uint8)
        shell.user_ns["picture"] = Image.fromarray(pixels)
        with forced_vision_answer(ANSWER):
            found = cell(f"%%mlx_vision -m {vlm} -i picture -n 120\nWhere are the cars?")
        boxes = len(shell.user_ns["_mlx"].boxes)
        outlined = cell("%mlx segment @boxes")
        return found, outlined, boxes, len(shell.user_ns["_mlx"].masks)

    try:
        first = one_round()
        rounds = [one_round() for _ in range(repeats)]
    finally:
        shell.extension_manager.unload_extension("mlx_magic")
    return {
        "picture": list(PICTURE_SIZE),
        "first_round_s": first[0] + first[1],
        "boxes": rounds[-1][2],
        "masks": rounds[-1][3],
        "vlm_median_s": statistics.median(r[0] for r in rounds),
        "segment_median_s": statistics.median(r[1] for r in rounds),
        "both_median_s": statistics.median(r[0] + r[1] for r in rounds),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.vlm_to_sam")
    parser.add_argument("--vlm", help="a vision model's folder (Qwen2-VL's grounding syntax)")
    parser.add_argument("--sam", help="a SAM 3 folder")
    parser.add_argument("--mini", action="store_true", help="the tiny test models (CPU check)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="also write the results here (JSON)")
    args = parser.parse_args(argv)
    if args.mini:
        from mlx_magic.testing.tiny_models import build_tiny_sam3, build_tiny_vlm

        work = Path(tempfile.mkdtemp(prefix="vlm-to-sam-"))
        vlm, sam = build_tiny_vlm(work / "vlm"), build_tiny_sam3(work / "sam3")
    elif args.vlm and args.sam:
        vlm, sam = Path(args.vlm), Path(args.sam)
    else:
        parser.error("give --vlm and --sam, or --mini")
    results = measure(vlm, sam, args.repeats)
    print(
        f"VLM {vlm.name} → SAM 3 {sam.name}, {results['boxes']} boxes → {results['masks']} masks "
        f"on {PICTURE_SIZE[0]}×{PICTURE_SIZE[1]}: VLM cell {results['vlm_median_s'] * 1000:.0f} ms, "
        f"segment cell {results['segment_median_s'] * 1000:.0f} ms, both "
        f"{results['both_median_s'] * 1000:.0f} ms (median of {args.repeats}); first round "
        f"(loads both) {results['first_round_s']:.2f} s"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
