"""``python -m mlx_magic``: command-line tools.

python -m mlx_magic install-kernel [--user | --sys-prefix | --prefix P] [--name mlx]
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional


def _install_kernel(args: argparse.Namespace) -> int:
    from mlx_magic.kernelspec import install

    prefix = sys.prefix if args.sys_prefix else args.prefix
    try:
        path = install(
            args.name, user=prefix is None, prefix=prefix, display_name=args.display_name
        )
    except (ValueError, OSError) as error:
        print(f"python -m mlx_magic install-kernel: {error}", file=sys.stderr)
        return 1
    print(f"Installed kernelspec {args.name} in {path}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlx_magic", description="mlx_magic command-line tools."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    kernel = commands.add_parser(
        "install-kernel",
        help='install the "Python 3 (MLX)" Jupyter kernel (mlx_magic preloaded)',
        description='Install the Jupyter kernelspec "Python 3 (MLX)": an IPython kernel '
        "that starts with mlx_magic loaded, so %%mlx works without %load_ext.",
    )
    where = kernel.add_mutually_exclusive_group()
    where.add_argument(
        "--user", action="store_true", help="install for the current user (the default)"
    )
    where.add_argument(
        "--sys-prefix",
        action="store_true",
        help=f"install into this environment ({sys.prefix})".replace("%", "%%"),
    )
    where.add_argument("--prefix", metavar="P", help="install into P/share/jupyter/kernels")
    kernel.add_argument("--name", default="mlx", help="kernel name (default: mlx)")
    kernel.add_argument("--display-name", help='name shown in Jupyter (default: "Python 3 (MLX)")')
    kernel.set_defaults(run=_install_kernel)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
