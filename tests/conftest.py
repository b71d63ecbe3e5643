"""Shared fixtures: fresh IPython shells with the extension, and the embedded model."""

import os
import threading

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config


@pytest.fixture(scope="session", autouse=True)
def model_cache_dir(tmp_path_factory):
    """Converted models go to a per-run folder unless MLX_MAGIC_CACHE is set."""
    if not os.environ.get("MLX_MAGIC_CACHE"):
        os.environ["MLX_MAGIC_CACHE"] = str(tmp_path_factory.mktemp("mlx_magic_cache"))
    # Never reach for the network in tests.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return os.environ["MLX_MAGIC_CACHE"]


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory):
    """A tiny random Qwen2-VL in a hub-style folder (built once per run)."""
    from mlx_magic.tiny_models import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("models") / "tiny-qwen2-vl")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """A tiny random llama text model (fast) in a hub-style folder."""
    from mlx_magic.tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


def make_shell(config=None):
    """A fresh shell (not the singleton) with history off."""
    cfg = Config(config or {})
    cfg.HistoryManager.enabled = False
    shell = InteractiveShell(config=cfg)
    return shell


def run(shell, source):
    """Run a cell and raise what it raised, as a test wants."""
    result = shell.run_cell(source)
    result.raise_error()
    return result.result


@pytest.fixture
def shell():
    """A fresh shell with mlx_magic loaded; the extension is unloaded afterwards."""
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")
    shell.clear_instance()


@pytest.fixture(scope="module")
def model_shell():
    """One shell per test module with the embedded model warm (loaded once)."""
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, "%mlx load smollm2")
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


def runtime_threads():
    return [t for t in threading.enumerate() if t.name == "mlx_magic-runtime"]


@pytest.fixture(scope="module")
def kernel():
    """A real kernel (manager, client) per test module, with the extension
    loaded and the embedded model warm."""
    from kernel_helpers import running_kernel

    with running_kernel("%load_ext mlx_magic", "%mlx load smollm2") as started:
        yield started
