"""What drawing boxes and labels costs: supervision's annotators against the
hand-written Pillow drawing they replaced, per redraw, alternated.

Two kinds of redraw, each at 1 MP (1000×1000) and 12 MP (4000×3000), with N
labelled boxes (and N / 4 labelled points) spread over the picture:

* ``whole``: the boxes drawn on the whole image (what ``--marks`` sends the
  model, and the most a drawing can cost);
* ``preview``: what a streaming answer redraws at every completed box: the
  previews' thumbnails drawn on and the bundle encoded (PNG and JPEG), as
  :class:`~mlx_magic.display.preview_output.PreviewOutput` does.

The Pillow side is the drawing of commit 2b46984 (read with ``git show``, so
this runs in a clone of the repository). Each repetition runs both sides, in
alternating order; per-pair ratios say how much slower supervision is. CPU
time (the process's, OpenCV's threads included) is the measure: on a shared,
busy machine wall time mostly measures the neighbours; wall time is printed too.

    python benchmarks/drawing_cost.py [--repetitions 15] [--boxes 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable

if not __package__:  # run as `python benchmarks/NAME.py`: import from the repository's root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

ROOT = Path(__file__).resolve().parent.parent
#: The last commit with the hand-written Pillow drawing.
PIL_COMMIT = "2b46984"


def pil_drawing() -> Callable[..., Any]:
    """``draw_grounding`` as it was at :data:`PIL_COMMIT`."""
    source = subprocess.run(
        ["git", "show", f"{PIL_COMMIT}:mlx_magic/grounding/drawing.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType("pil_drawing")
    exec(compile(source, "pil_drawing.py", "exec"), module.__dict__)
    return module.draw_grounding


def grounding(boxes: int, size: tuple[int, int]) -> Any:
    from mlx_magic.grounding import Box, Grounding, Point

    width, height = size
    found = [
        Box(
            f"object {i % 8}",
            (i * 0.137 % 0.8) * width,
            (i * 0.291 % 0.8) * height,
            (i * 0.137 % 0.8 + 0.15) * width,
            (i * 0.291 % 0.8 + 0.12) * height,
        )
        for i in range(boxes)
    ]
    points = [
        Point(f"spot {i % 3}", (i * 0.23 % 0.9 + 0.05) * width, (i * 0.41 % 0.9 + 0.05) * height)
        for i in range(boxes // 4)
    ]
    return Grounding(tuple(found), tuple(points))


def photo(size: tuple[int, int]) -> Any:
    """A noisy picture (a photo's encodings, not a flat colour's)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=15)
    parser.add_argument("--boxes", type=int, default=20)
    args = parser.parse_args()

    import mlx_magic.grounding as package
    from mlx_magic.display.preview_output import PreviewOutput
    from mlx_magic.grounding.drawing import draw_grounding as sv_draw
    from mlx_magic.images import LoadedImage

    started = time.perf_counter()
    import supervision  # noqa: F401  (its first import, timed: the first drawing pays it)

    first_import = time.perf_counter() - started
    sides = {"Pillow": pil_drawing(), "supervision": sv_draw}

    def whole(draw: Callable[..., Any], image: Any, found: Any) -> Callable[[], Any]:
        return lambda: draw(image, found)

    def preview(draw: Callable[..., Any], image: Any, found: Any) -> Callable[[], Any]:
        loaded = LoadedImage(image, "photo", image.size, "key")
        output = PreviewOutput([loaded], drawable=False)
        output.grounding = found

        def redraw() -> Any:
            package.draw_grounding = draw  # what PreviewOutput._drawn_tile calls
            try:
                return output.bundle()
            finally:
                package.draw_grounding = sv_draw

        return redraw

    cases = []
    for megapixels, size in (("1 MP", (1000, 1000)), ("12 MP", (4000, 3000))):
        image = photo(size)
        found = grounding(args.boxes, size)
        for kind, make in (("whole", whole), ("preview", preview)):
            runs = {name: make(draw, image, found) for name, draw in sides.items()}
            cases.append((f"{kind:7} {megapixels:5}", runs))

    cpu: dict[str, dict[str, list[float]]] = {label: {n: [] for n in sides} for label, _ in cases}
    wall: dict[str, dict[str, list[float]]] = {label: {n: [] for n in sides} for label, _ in cases}
    for _, runs in cases:  # warm-up: fonts, annotators, caches
        for run in runs.values():
            run()
    for repetition in range(args.repetitions):
        for label, runs in cases:
            order = list(sides) if repetition % 2 == 0 else list(reversed(sides))
            for name in order:
                started, used = time.perf_counter(), time.process_time()
                runs[name]()
                cpu[label][name].append(time.process_time() - used)
                wall[label][name].append(time.perf_counter() - started)

    print(
        f"{args.boxes} labelled boxes and {args.boxes // 4} labelled points, "
        f"{args.repetitions} alternated repetitions; first `import supervision` "
        f"{first_import * 1000:.0f} ms"
    )
    for measure, times in (("CPU", cpu), ("wall", wall)):
        print(
            f"{'redraw, ' + measure:14} {'Pillow ms':>10} {'supervision ms':>15}"
            "  sv ÷ Pillow per pair (median, range)"
        )
        for label, _ in cases:
            pil, sv = times[label]["Pillow"], times[label]["supervision"]
            ratios = [b / a for a, b in zip(pil, sv) if a > 0]
            print(
                f"{label:14} {statistics.median(pil) * 1000:10.2f} "
                f"{statistics.median(sv) * 1000:15.2f}"
                f"  {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
            )


if __name__ == "__main__":
    main()
