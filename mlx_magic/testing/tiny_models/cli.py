"""The command line: ``python -m mlx_magic.testing.tiny_models vlm|llama|sam3|sam3.1 FOLDER [--seed N]``."""

from __future__ import annotations

import argparse

from mlx_magic.testing.tiny_models.llama import build_tiny_llama
from mlx_magic.testing.tiny_models.sam3 import build_tiny_sam3, build_tiny_sam31
from mlx_magic.testing.tiny_models.vlm import build_tiny_vlm


def main(argv: list[str] | None = None) -> int:
    """``python -m mlx_magic.testing.tiny_models vlm|llama|sam3|sam3.1 FOLDER``: build, print the folder."""
    parser = argparse.ArgumentParser(
        prog="python -m mlx_magic.testing.tiny_models",
        description="Build a tiny random model folder (idempotent).",
    )
    builders = {
        "vlm": build_tiny_vlm,
        "llama": build_tiny_llama,
        "sam3": build_tiny_sam3,
        "sam3.1": build_tiny_sam31,
    }
    parser.add_argument("kind", choices=list(builders))
    parser.add_argument("folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(builders[args.kind](args.folder, seed=args.seed))
    return 0
