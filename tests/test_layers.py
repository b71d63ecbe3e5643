"""The layers keep to their rooms: in process and remote modes the kernel never
imports MLX, for every kind of model name, checked in a real kernel after cells
that answered."""

import os
import shutil

import pytest
from PIL import Image

from mlx_magic.models.embedded import embedded_gguf_path

from fake_openai import Recorder
from kernel_helpers import execute, printed, running_kernel

pytestmark = [pytest.mark.kernel, pytest.mark.model]

MLX_MODULES = "sorted(m for m in __import__('sys').modules if m.split('.')[0] in ('mlx', 'mlx_lm', 'mlx_vlm'))"


@pytest.fixture(scope="module")
def hub_cache(tiny_llama, tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf-cache")
    owner_repo = cache / "models--tester--tiny-llama"
    shutil.copytree(tiny_llama, owner_repo / "snapshots" / "abc123")
    (owner_repo / "refs").mkdir()
    (owner_repo / "refs" / "main").write_text("abc123")
    return cache


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "red-square.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(path)
    return path


def cells_for_every_kind_of_name(tiny_llama, tiny_vlm, picture):
    """(what it is, cell) for each kind of model name the magics resolve."""
    return [
        ("the embedded default", "%%mlx -n 1\nHi"),
        ("a .gguf file", f"%%mlx -n 1 -m {embedded_gguf_path()}\nHi"),
        ("a folder", f"%%mlx -n 1 -m {tiny_llama}\nHi"),
        ("a Hub id", "%%mlx -n 1 -m tester/tiny-llama\nHi"),
        ("a vision model", f"%%mlx_vision -n 1 -m {tiny_vlm} -i {picture}\nWhat is it?"),
    ]


def test_process_mode_kernel_never_imports_mlx(tiny_llama, tiny_vlm, hub_cache, picture):
    env = dict(os.environ, HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1")
    with running_kernel("%load_ext mlx_magic", "%mlx runtime process", extra_env=env) as (
        _,
        client,
    ):
        for what, cell in cells_for_every_kind_of_name(tiny_llama, tiny_vlm, picture):
            reply, _ = execute(client, cell, timeout=300)
            assert reply["status"] == "ok", (what, reply)
            assert printed(client, "_mlx.stats.generation_tokens") == "1", what
            assert printed(client, MLX_MODULES) == "[]", f"{what} imported MLX in the kernel"


def test_remote_mode_kernel_never_imports_mlx(tiny_llama, tiny_vlm, hub_cache, picture):
    server = Recorder()
    env = dict(os.environ, HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1")
    try:
        with running_kernel("%load_ext mlx_magic", f"%mlx connect {server.url}", extra_env=env) as (
            _,
            client,
        ):
            for what, cell in cells_for_every_kind_of_name(tiny_llama, tiny_vlm, picture):
                reply, _ = execute(client, cell.replace("-n 1", "-n 8"), timeout=120)
                assert reply["status"] == "ok", (what, reply)
                assert printed(client, "_mlx.text") == "Hello, wörld 🚀", what
                assert printed(client, MLX_MODULES) == "[]", f"{what} imported MLX in the kernel"
    finally:
        server.close()
    assert len([r for r in server.requests if r[0] == "POST"]) == 5
