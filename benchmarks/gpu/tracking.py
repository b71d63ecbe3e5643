"""``python -m benchmarks.gpu.tracking``: ``-v --segment``'s tracking on SAM 3's real shape.

The random SAM 3 of :mod:`benchmarks.gpu.segment` (bfloat16, built once into
``--work``), timed through the thread runtime (``Runtime.segment``): detection
frame by frame against mlx-vlm's video predictor (``Sam3VideoPredictor``)
tracking one and four objects from the first frame. Random weights find
noise, so the first frame's masks are scripted (``forced_masks``) and the
count of masks and tracks is printed beside each time. One call per case,
after two warm-up calls (load, kernels). ``--mini`` uses the tiny
tracking-shaped test model: a check of the path on a CPU.

::

    python -m benchmarks.gpu.tracking [--mini] [--work DIR] [--frames N] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Optional, Sequence

#: The frames timed: 640 × 480, a common video size.
FRAME_SIZE = (640, 480)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.tracking")
    parser.add_argument("--work", default="/tmp/mlx-magic-gpu", help="where the model is built")
    parser.add_argument("--mini", action="store_true", help="the tiny test model (CPU check)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--out", help="also write the results here (JSON)")
    args = parser.parse_args(argv)

    import mlx.core as mx
    import numpy as np
    from PIL import Image

    from benchmarks.gpu.segment import build_full_sam3
    from mlx_magic.models.resolve import resolve_model
    from mlx_magic.runtime.thread import ThreadRuntime
    from mlx_magic.testing.scripted import forced_masks
    from mlx_magic.vocabulary.masks import SegmentRequest

    print("mlx", mx.__version__, mx.default_device(), flush=True)
    if args.mini:
        from mlx_magic.testing.tiny_models import build_tiny_sam3

        folder = build_tiny_sam3(Path(args.work) / "tiny-sam3-video", video=True)
    else:
        folder = build_full_sam3(Path(args.work) / "sam3")
    spec = resolve_model(str(folder))
    width, height = FRAME_SIZE
    rng = np.random.default_rng(0)
    frames = tuple(
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        for _ in range(args.frames)
    )

    def objects(count: int) -> np.ndarray:
        masks = np.zeros((count, height, width), bool)
        for i in range(count):
            masks[i, 100:200, 20 + 150 * i : 120 + 150 * i] = True
        return masks

    runtime = ThreadRuntime(64 << 30)
    rows = []

    def timed(case: str, request: SegmentRequest, count: int) -> None:
        started = time.perf_counter()
        with forced_masks(objects(count)):
            found = runtime.segment(request)
        took = time.perf_counter() - started
        tracks = {mask.track for mask in found.masks}
        rows.append({"case": case, "s": round(took, 3), "masks": len(found.masks)})
        rows[-1]["tracks"] = len(tracks)
        print(rows[-1], flush=True)

    try:
        timed("warm-up: 1 image (load, kernels)", SegmentRequest(spec, frames[:1], ("car",)), 1)
        timed(
            "warm-up: 2 frames tracked, 1 object",
            SegmentRequest(spec, frames[:2], ("car",), track=True),
            1,
        )
        n = len(frames)
        timed(f"detect each of {n} frames", SegmentRequest(spec, frames, ("car",)), 1)
        for count in (1, 4):
            timed(
                f"track {n} frames, {count} object(s)",
                SegmentRequest(spec, frames, ("car",), track=True),
                count,
            )
    finally:
        runtime.stop()
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
