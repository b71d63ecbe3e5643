"""The command line: ``python -m mlx_magic.testing.tiny_models vlm|llama|sam3 FOLDER [--seed N]``."""

from __future__ import annotations

import argparse

from mlx_magic.testing.tiny_models.llama import build_tiny_llama
from mlx_magic.testing.tiny_models.sam3 import build_tiny_sam3
from mlx_magic.testing.tiny_models.vlm import build_tiny_vlm


def main(argv: list[str] | None = None) -> int:
    """``python -m mlx_magic.testing.tiny_models vlm|llama|sam3 FOLDER``: build, print the folder."""
    parser = argparse.ArgumentParser(
        prog="python -m mlx_magic.testing.tiny_models",
        description="Build a tiny random model folder (idempotent).",
    )
    parser.add_argument("kind", choices=["vlm", "llama", "sam3"])
    parser.add_argument("folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build = {"vlm": build_tiny_vlm, "llama": build_tiny_llama, "sam3": build_tiny_sam3}[args.kind]
    print(build(args.folder, seed=args.seed))
    return 0
