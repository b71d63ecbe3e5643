"""Execute a notebook headlessly in a real kernel and print what each cell showed.

Usage: python scripts/run_notebook.py notebooks/01-quickstart.ipynb [--save OUT.ipynb]
"""

import argparse
import os
import sys
import tempfile

import nbformat
from jupyter_client import KernelManager
from nbclient import NotebookClient


def cell_text(cell) -> str:
    """The text a reader would see under a code cell."""
    shown = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            shown.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            text = output.get("data", {}).get("text/plain", "")
            if text:
                shown.append(text + "\n")
        elif output.output_type == "error":
            shown.append(f"{output.ename}: {output.evalue}\n")
    return "".join(shown)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebook")
    parser.add_argument("--save", help="write the executed notebook here")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()

    notebook = nbformat.read(args.notebook, as_version=4)
    # IPC transport: the kernel and this client talk over local sockets (no
    # "Kernel is running over TCP without encryption" warning on every run).
    with tempfile.TemporaryDirectory(prefix="mlx_magic-kernel-") as sockets:
        manager = KernelManager(
            kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "ipc")
        )
        NotebookClient(notebook, km=manager, timeout=args.timeout).execute()
    for index, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type != "code":
            continue
        print(f"── In [{index}] " + "─" * 50)
        print(cell.source)
        text = cell_text(cell)
        if text.strip():
            print("── Out " + "─" * 56)
            print(text, end="" if text.endswith("\n") else "\n")
    if args.save:
        nbformat.write(notebook, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
