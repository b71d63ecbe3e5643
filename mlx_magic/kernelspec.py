"""Install the "Python 3 (MLX)" kernelspec: an IPython kernel with mlx_magic loaded.

The spec is ``jupyter-config/kernels/mlx/kernel.json`` with its bare
``python`` replaced by the interpreter running this code (the one that has
mlx_magic installed). A wheel does not carry ``jupyter-config/``, so the same
spec is also written out below; the tests check that the two agree.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

DEFAULT_NAME = "mlx"
DISPLAY_NAME = "Python 3 (MLX)"
TEMPLATE = (
    Path(__file__).resolve().parent.parent / "jupyter-config" / "kernels" / "mlx" / "kernel.json"
)

# ``--ext`` is ipykernel's alias for InteractiveShellApp.extra_extensions: the
# extension is loaded when the kernel starts, before the first cell.
BUILTIN_SPEC = {
    "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}", "--ext=mlx_magic"],
    "display_name": DISPLAY_NAME,
    "language": "python",
    "metadata": {"debugger": True},
    "kernel_protocol_version": "5.5",
}


def template_spec() -> dict:
    """The spec as shipped: the jupyter-config file if present, else the built-in copy."""
    if TEMPLATE.is_file():
        return json.loads(TEMPLATE.read_text(encoding="utf-8"))
    return copy.deepcopy(BUILTIN_SPEC)


def kernel_spec(executable: Optional[str] = None, display_name: Optional[str] = None) -> dict:
    """The kernel.json to install, running ``executable`` (default: this Python).

    What the installed ipykernel declares in its own spec (debugger support,
    transport encryption, protocol version) is kept, as ``ipykernel install``
    would write it.
    """
    spec = template_spec()
    if spec["argv"][0] == "python":
        spec["argv"][0] = executable or sys.executable
    if display_name:
        spec["display_name"] = display_name
    try:
        from ipykernel.kernelspec import get_kernel_dict
    except ImportError:  # pragma: no cover - ipykernel is a dependency
        return spec
    stock = get_kernel_dict()
    spec["metadata"] = {**stock.get("metadata", {}), **spec.get("metadata", {})}
    if "kernel_protocol_version" in stock:
        spec["kernel_protocol_version"] = stock["kernel_protocol_version"]
    return spec


def install(
    name: str = DEFAULT_NAME,
    *,
    user: bool = False,
    prefix: Optional[str] = None,
    display_name: Optional[str] = None,
) -> str:
    """Install the kernelspec; return the folder it was installed to.

    ``user`` installs for this user, ``prefix`` into ``PREFIX/share/jupyter/kernels``
    (``sys.prefix`` for this environment only); neither installs system-wide.
    An existing spec of the same name is replaced.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as staging:
        folder = Path(staging) / name
        folder.mkdir()
        _copy_logos(folder)
        spec = kernel_spec(display_name=display_name)
        (folder / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
        return KernelSpecManager().install_kernel_spec(
            str(folder), kernel_name=name, user=user, prefix=prefix
        )


def _copy_logos(folder: Path) -> None:
    """ipykernel's Python logos, so the launcher shows the usual icon."""
    try:
        from ipykernel.kernelspec import RESOURCES
    except ImportError:  # pragma: no cover - ipykernel is a dependency
        return
    for logo in Path(RESOURCES).glob("logo-*"):
        shutil.copy(logo, folder / logo.name)
