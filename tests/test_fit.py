"""Models that fit (issue 26): a model whose weights exceed what the machine can
give is refused before it loads, in one line naming both sizes; the default
``memory_budget_gb`` follows the machine. ``MLX_MAGIC_MACHINE_BYTES`` plays a
machine of that size (the tests' hook)."""

import os
import shutil

import pytest
from IPython.core.error import UsageError

from mlx_magic.engine.fit import MachineRoom, check_fits, machine_room, weights_bytes
from mlx_magic.errors import ModelTooLarge, UserError
from mlx_magic.units import GIB, gib_to_bytes
from mlx_magic.vocabulary.machine import MACHINE_BYTES_ENV, default_memory_budget_gb
from mlx_magic.vocabulary.values import ModelSpec

from conftest import magics_of, make_shell, run


@pytest.fixture
def two_llamas(tiny_llama, tmp_path):
    """The tiny llama, and a copy of it in another folder (another warm model)."""
    copy = shutil.copytree(tiny_llama, tmp_path / "tiny-llama-copy")
    return str(tiny_llama), str(copy)


@pytest.fixture
def llama_shell(two_llamas):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    first, second = two_llamas
    run(shell, f"%config MLXMagics.aliases = {{'warm': {first!r}, 'tiny': {second!r}}}")
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


def test_the_weights_are_measured_on_disk_before_loading(tiny_llama):
    spec = ModelSpec(name="tiny", key=str(tiny_llama), path=str(tiny_llama))
    assert weights_bytes(spec) == (tiny_llama / "model.safetensors").stat().st_size
    assert weights_bytes(ModelSpec(name="none", key="/no/such", path="/no/such")) is None


def test_a_model_larger_than_the_machine_is_one_line_and_nothing_loads(
    llama_shell, two_llamas, monkeypatch
):
    weights = os.path.getsize(os.path.join(two_llamas[1], "model.safetensors"))
    monkeypatch.setenv(MACHINE_BYTES_ENV, str(10 * GIB))
    run(llama_shell, "%%mlx -m warm -n 2\nHello")
    magics = magics_of(llama_shell)
    warm_before = [info.key for info in magics.session.runtime.models()]
    answer_before = llama_shell.user_ns["_mlx"]
    settings_before = (magics.memory_budget_gb, magics.default_model, dict(magics.aliases))
    assert warm_before == [two_llamas[0]]

    monkeypatch.setenv(MACHINE_BYTES_ENV, str(weights // 2))
    with pytest.raises(UsageError) as caught:
        run(llama_shell, "%%mlx -m tiny -n 2\nHello")
    message = str(caught.value)
    assert type(caught.value) is UsageError and "\n" not in message, message
    assert isinstance(caught.value.__cause__, UserError)
    assert "'tiny' does not fit this machine" in message
    assert 1e-4 < weights / 2 / GIB < weights / GIB < 1e-3  # shown with 5 decimals
    assert f"its weights are {weights / GIB:.5f} GiB" in message
    assert f"the machine can give a model {weights // 2 / GIB:.5f} GiB" in message
    assert "(MLX_MAGIC_MACHINE_BYTES)" in message
    assert "4-bit quantization" in message
    assert [info.key for info in magics.session.runtime.models()] == warm_before
    assert llama_shell.user_ns["_mlx"] is answer_before
    assert (magics.memory_budget_gb, magics.default_model, dict(magics.aliases)) == (
        settings_before
    )

    monkeypatch.setenv(MACHINE_BYTES_ENV, str(weights * 2))
    run(llama_shell, "%%mlx -m tiny -n 2\nHello")
    assert sorted(info.key for info in magics.session.runtime.models()) == sorted(two_llamas)
    assert llama_shell.user_ns["_mlx"] is not answer_before


def test_the_machine_is_read_on_this_cpu(monkeypatch):
    monkeypatch.delenv(MACHINE_BYTES_ENV, raising=False)
    room = machine_room()
    assert room is not None and room.bytes > GIB, room
    # MLX's CPU build names no memory of its own: the RAM counts.
    import mlx.core as mx

    if "memory_size" not in mx.device_info() and "total_memory" not in mx.device_info():
        assert room.source == "the RAM"


def test_what_mlx_says_of_a_gpu_comes_first(monkeypatch):
    monkeypatch.delenv(MACHINE_BYTES_ENV, raising=False)
    metal = {"memory_size": 64 * GIB, "max_recommended_working_set_size": 48 * GIB}
    assert machine_room(metal).bytes == 48 * GIB
    cuda = {"total_memory": 80 * GIB, "free_memory": 70 * GIB}
    assert machine_room(cuda).bytes == 70 * GIB
    assert machine_room({"total_memory": 80 * GIB}).bytes == 80 * GIB
    monkeypatch.setenv(MACHINE_BYTES_ENV, str(3 * GIB))
    assert machine_room(metal).bytes == 3 * GIB


@pytest.mark.parametrize("machine_gib, budget_gb", [(24, 12.0), (6, 3.0), (1, 1.0)])
def test_the_default_budget_follows_the_machine(monkeypatch, machine_gib, budget_gb):
    monkeypatch.setenv(MACHINE_BYTES_ENV, str(machine_gib * GIB))
    assert default_memory_budget_gb() == budget_gb
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        magics = magics_of(shell)
        assert magics.memory_budget_gb == budget_gb
        assert magics.session.runtime.status().memory_budget_bytes == gib_to_bytes(budget_gb)
    finally:
        shell.extension_manager.unload_extension("mlx_magic")


def test_a_budget_that_is_set_is_kept_whatever_the_machine(monkeypatch):
    monkeypatch.setenv(MACHINE_BYTES_ENV, str(6 * GIB))
    shell = make_shell({"MLXMagics": {"memory_budget_gb": 5.0}})
    shell.extension_manager.load_extension("mlx_magic")
    try:
        assert magics_of(shell).memory_budget_gb == 5.0
    finally:
        shell.extension_manager.unload_extension("mlx_magic")


def test_the_hint_follows_the_quantization(two_llamas):
    import json

    folder = two_llamas[1]
    spec = ModelSpec(name="tiny", key=folder, path=folder)
    with pytest.raises(ModelTooLarge, match="a 4-bit quantization of it needs about a quarter"):
        check_fits(spec, MachineRoom(1, "a test"))
    config_path = os.path.join(folder, "config.json")
    with open(config_path) as config_file:
        config = json.load(config_file)
    for bits, hint in ((8, "about 50% of this 8-bit one"), (4, "it is already 4-bit")):
        config["quantization"] = {"group_size": 64, "bits": bits}
        with open(config_path, "w") as config_file:
            json.dump(config, config_file)
        with pytest.raises(ModelTooLarge, match=hint):
            check_fits(spec, MachineRoom(1, "a test"))
    check_fits(spec, MachineRoom(GIB, "a test"))  # fits: nothing raised


def test_a_worker_refuses_it_in_the_same_line(tiny_llama, monkeypatch):
    # The hook reaches the worker process through its environment.
    monkeypatch.setenv(MACHINE_BYTES_ENV, "1000")
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        run(shell, "%config MLXMagics.runtime = 'process'")
        assert type(magics_of(shell).session.runtime).__name__ == "ProcessRuntime"
        with pytest.raises(UsageError) as caught:
            run(shell, f"%%mlx -m {tiny_llama} -n 2\nHello")
        message = str(caught.value)
        assert "\n" not in message and "does not fit this machine" in message, message
        assert "0.00000093 GiB (MLX_MAGIC_MACHINE_BYTES)" in message
        assert magics_of(shell).session.runtime.models() == []
    finally:
        shell.extension_manager.unload_extension("mlx_magic")
