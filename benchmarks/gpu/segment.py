"""``python -m benchmarks.gpu.segment``: SAM 3 per image, as ``--segment`` runs it.

A random SAM 3 of the real shape (mlx-vlm's ``ModelConfig`` defaults: a
1008-pixel ViT, 200 queries; bfloat16, as the hub's conversions) is built once
into ``--work``, then timed through the thread runtime (``Runtime.segment``,
the path ``%%mlx_vision --segment`` takes): the first call (load and
segment), then warm calls on 1-megapixel pictures with one text prompt, three
prompts (the backbone runs once) and three box prompts. The time includes
encoding the masks (COCO RLE); random weights give noise masks, so the
count of masks kept is printed beside each time. ``--mini`` uses the tiny
test model: a check of the path on a CPU in seconds.

::

    python -m benchmarks.gpu.segment [--mini] [--work DIR] [--repeats N] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

#: The pictures timed: 1152 × 864 (one megapixel, the max_image_pixels default).
PICTURE_SIZE = (1152, 864)


def build_full_sam3(folder: Path, seed: int = 0) -> Path:
    """A random SAM 3 of the real shape in ``folder`` (reused when built), bfloat16."""
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten
    from mlx_vlm.models import sam3

    from mlx_magic.testing.tiny_models.folders import atomic_build, write_json
    from mlx_magic.testing.tiny_models.sam3 import write_clip_tokenizer

    def fill(tmp: Path) -> None:
        write_clip_tokenizer(tmp)  # prompts use its ids only: the real vocabulary stays
        config = {"architectures": ["Sam3VideoModel"], "model_type": "sam3_video"}
        write_json(tmp / "config.json", config)
        write_json(
            tmp / "processor_config.json",
            {"image_processor": {"size": {"height": 1008, "width": 1008}}},
        )
        model = sam3.Model(sam3.ModelConfig.from_dict(dict(config)))
        rng = np.random.default_rng(seed)
        weights = {}
        for name, param in tree_flatten(model.parameters()):
            if name.endswith("bias"):
                value = np.zeros(param.shape, np.float32)
            elif param.ndim == 1:
                value = np.ones(param.shape, np.float32)
            else:
                value = rng.standard_normal(param.shape, dtype=np.float32)
                value /= np.sqrt(int(np.prod(param.shape[1:])))
            weights[name] = mx.array(value).astype(mx.bfloat16)
        mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "mlx"})

    return atomic_build(folder, {"kind": "sam3-full", "seed": seed}, fill)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.segment")
    parser.add_argument("--mini", action="store_true", help="the tiny test model (CPU check)")
    parser.add_argument("--work", default="/tmp/mlx-magic-gpu", help="where the model is built")
    parser.add_argument("--repeats", type=int, default=5, help="warm calls timed per case")
    parser.add_argument("--out", help="also write the results here (JSON)")
    args = parser.parse_args(argv)
    from mlx_magic.testing.tiny_models import build_tiny_sam3

    work = Path(args.work).expanduser()
    if args.mini:
        folder = build_tiny_sam3(work / "sam3-mini")
    else:
        started = time.perf_counter()
        folder = build_full_sam3(work / "sam3")
        print(f"built {folder} in {time.perf_counter() - started:.0f} s", flush=True)
    results = measure(folder, args.repeats)
    for row in results["cases"]:
        print(
            f"| {results['shape']} | {row['case']} | {row['median_s'] * 1000:.0f} ms | "
            f"{row['masks']} masks |"
        )
    print(f"first call (load + segment): {results['cold_s']:.2f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


def measure(folder: Path, repeats: int) -> dict[str, Any]:
    """The first call and the warm cases' median seconds per picture."""
    import numpy as np
    from PIL import Image

    from mlx_magic.models.resolve import resolve_model
    from mlx_magic.runtime.thread import ThreadRuntime
    from mlx_magic.vocabulary.masks import BoxPrompt, SegmentRequest

    spec = resolve_model(str(folder))
    rng = np.random.default_rng(0)
    width, height = PICTURE_SIZE
    picture = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    boxes = tuple(BoxPrompt("object", 100 + 300 * i, 200, 350 + 300 * i, 600) for i in range(3))
    cases: list[tuple[str, Callable[[], SegmentRequest]]] = [
        ("1 text prompt", lambda: SegmentRequest(spec, (picture,), ("car",))),
        ("3 text prompts", lambda: SegmentRequest(spec, (picture,), ("car", "person", "cup"))),
        ("3 box prompts", lambda: SegmentRequest(spec, (picture,), (), boxes)),
    ]
    runtime = ThreadRuntime(64 << 30)
    try:
        started = time.perf_counter()
        runtime.segment(cases[0][1]())
        cold = time.perf_counter() - started
        rows = []
        for name, request in cases:
            times, found = [], None
            for _ in range(repeats):
                started = time.perf_counter()
                found = runtime.segment(request())
                times.append(time.perf_counter() - started)
            rows.append(
                {
                    "case": name,
                    "median_s": statistics.median(times),
                    "masks": len(found.masks) if found else 0,
                }
            )
    finally:
        runtime.stop()
    shape = "tiny SAM 3 (112 px)" if "mini" in folder.name else "SAM 3 (1008 px, bf16)"
    return {"shape": shape, "picture": list(PICTURE_SIZE), "cold_s": cold, "cases": rows}


if __name__ == "__main__":
    raise SystemExit(main())
