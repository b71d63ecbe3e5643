"""`python -m mlx_magic install-kernel`: a kernel with mlx_magic loaded before the first cell."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import start_new_kernel

from mlx_magic import __main__ as cli
from mlx_magic import kernelspec

REPO = Path(__file__).resolve().parent.parent


def install_kernel(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "mlx_magic", "install-kernel", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )


def test_jupyter_config_template_is_the_spec_that_gets_installed():
    template = json.loads((REPO / "jupyter-config/kernels/mlx/kernel.json").read_text())
    # A wheel has no jupyter-config/: the built-in copy must say the same.
    assert template == kernelspec.BUILTIN_SPEC
    assert kernelspec.template_spec() == template
    spec = kernelspec.kernel_spec()
    assert spec["argv"][0] == sys.executable
    assert spec["argv"][1:] == template["argv"][1:]
    assert "--ext=mlx_magic" in spec["argv"] and "{connection_file}" in spec["argv"]
    assert spec["display_name"] == "Python 3 (MLX)"
    # Otherwise the spec ipykernel itself would install (debugger, encryption, protocol).
    from ipykernel.kernelspec import get_kernel_dict

    stock = get_kernel_dict()
    assert spec["metadata"] == {**stock["metadata"], **template["metadata"]}
    assert spec["language"] == stock["language"]
    assert spec["kernel_protocol_version"] == stock.get("kernel_protocol_version", "5.5")


def test_install_into_a_prefix_and_for_the_user(tmp_path):
    done = install_kernel("--prefix", str(tmp_path / "env"), "--name", "mlx-test")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "env/share/jupyter/kernels/mlx-test"
    assert str(folder) in done.stdout
    assert json.loads((folder / "kernel.json").read_text()) == kernelspec.kernel_spec()
    assert (folder / "logo-64x64.png").is_file()

    env = dict(os.environ, JUPYTER_DATA_DIR=str(tmp_path / "data"))
    done = install_kernel(env=env)  # --user is the default
    assert done.returncode == 0, done.stderr
    installed = json.loads((tmp_path / "data/kernels/mlx/kernel.json").read_text())
    assert installed["display_name"] == "Python 3 (MLX)"

    done = install_kernel("--user", "--prefix", str(tmp_path), env=env)
    assert done.returncode == 2 and "not allowed with" in done.stderr
    done = install_kernel("--prefix", str(tmp_path), "--name", "no spaces please", env=env)
    assert done.returncode == 1 and "Invalid kernel name" in done.stderr


def test_sys_prefix_means_this_environment(monkeypatch):
    calls = []
    monkeypatch.setattr(kernelspec, "install", lambda name, **kw: calls.append((name, kw)) or "x")
    assert cli.main(["install-kernel", "--sys-prefix", "--name", "m2"]) == 0
    assert calls == [("m2", {"user": False, "prefix": sys.prefix, "display_name": None})]


@pytest.mark.model
@pytest.mark.kernel
def test_installed_kernel_runs_mlx_without_load_ext(tmp_path, monkeypatch):
    done = install_kernel("--prefix", str(tmp_path), "--name", "mlx-test")
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share/jupyter"))
    spec = KernelSpecManager().get_kernel_spec("mlx-test")
    assert spec.display_name == "Python 3 (MLX)"

    manager, client = start_new_kernel(kernel_name="mlx-test")
    try:
        msg_id = client.execute("%%mlx -n 8\nWhat is the capital of France?")
        streams, displays = [], []
        deadline = time.monotonic() + 300
        while True:
            message = client.get_iopub_msg(timeout=max(1.0, deadline - time.monotonic()))
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind = message["msg_type"]
            if kind == "stream":
                streams.append(message["content"]["text"])
            elif kind in ("display_data", "update_display_data"):
                displays.append(message["content"]["data"])
            elif kind == "error":
                pytest.fail("\n".join(message["content"]["traceback"]))
            elif kind == "status" and message["content"]["execution_state"] == "idle":
                break
        reply = client.get_shell_msg(timeout=60)
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    # A notebook kernel renders the answer as Markdown (display outputs).
    rendered = [d.get("text/markdown", "") for d in displays]
    assert "Paris" in "".join(streams + rendered)
    footers = [d["text/plain"] for d in displays if "tok/s" in d.get("text/plain", "")]
    assert len(footers) == 1 and "smollm2" in footers[0]
