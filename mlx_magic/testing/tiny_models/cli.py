"""The command line: ``python -m mlx_magic.testing.tiny_models vlm|llama FOLDER [--seed N]``."""

from __future__ import annotations

import argparse

from mlx_magic.testing.tiny_models.llama import build_tiny_llama
from mlx_magic.testing.tiny_models.vlm import build_tiny_vlm


def main(argv: list[str] | None = None) -> int:
    """``python -m mlx_magic.testing.tiny_models vlm|llama FOLDER``: build, print the folder."""
    parser = argparse.ArgumentParser(
        prog="python -m mlx_magic.testing.tiny_models",
        description="Build a tiny random model folder (idempotent).",
    )
    parser.add_argument("kind", choices=["vlm", "llama"])
    parser.add_argument("folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build = build_tiny_vlm if args.kind == "vlm" else build_tiny_llama
    print(build(args.folder, seed=args.seed))
    return 0
