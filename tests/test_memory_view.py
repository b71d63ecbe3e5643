"""``%mlx memory``: MLX memory across generations, and each warm model's share."""

import pytest
from IPython.core.error import UsageError

from conftest import make_shell, run


@pytest.fixture(scope="module")
def memory_shell(tiny_llama):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%mlx load {tiny_llama}")
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


def test_a_longer_context_shows_a_bigger_kv_cache(memory_shell, tiny_llama, capsys):
    run(memory_shell, f"%%mlx -m {tiny_llama} -n 4\nHi")
    short = memory_shell.user_ns["_mlx"].stats
    long_prompt = "Tell me a story about the sea. " * 100  # the cache grows 256 at a time
    run(memory_shell, f"%%mlx -m {tiny_llama} -n 4\n{long_prompt}")
    long = memory_shell.user_ns["_mlx"].stats
    assert long.kv_cache_bytes > 3 * short.kv_cache_bytes > 0
    capsys.readouterr()
    run(memory_shell, "%mlx memory")
    out = capsys.readouterr().out
    assert out.startswith("MLX memory now: active ")
    generations, models = out.split("Generations:\n")[1].split("Warm models:\n")
    lines = generations.strip().splitlines()
    assert lines[0].split()[:3] == ["generation", "model", "active_gib"]
    assert len(lines) >= 3  # a header and both generations
    (model,) = [line for line in models.strip().splitlines()[1:] if "tiny-llama" in line]
    last_kv_mib = float(model.split()[3])
    assert last_kv_mib == pytest.approx(long.kv_cache_bytes / 1024**2, abs=0.01)


def test_the_figure_plots_both_views(memory_shell, tiny_llama):
    from mlx_magic.display.memory_view import memory_figure

    run(memory_shell, f"%%mlx -m {tiny_llama} -n 3\nHello")
    status = memory_shell.magics_manager.registry["MLXMagics"].session.runtime.status()
    figure = memory_figure(status)
    titled = {axis.get_title(): axis for axis in figure.axes if axis.get_title()}
    over_time, per_model = titled["MLX memory after each generation"], titled["Warm models"]
    assert len(figure.axes) == 3  # and the KV caches' bars on a second scale
    assert [line.get_label() for line in over_time.get_lines()] == ["active", "cache", "peak"]
    assert len(over_time.get_lines()[0].get_xdata()) == len(status.memory_log) >= 1
    weights = per_model.patches[0].get_height()  # the first stacked bar: the weights
    assert weights == pytest.approx(status.models[0].memory_bytes / 1024**2, rel=0.01)


def test_mistakes_are_one_line_and_change_nothing(memory_shell):
    before = memory_shell.user_ns["_mlx"]
    with pytest.raises(UsageError, match=r"Usage: %mlx memory \(no arguments\)"):
        run(memory_shell, "%mlx memory now")
    assert memory_shell.user_ns["_mlx"] is before


def test_the_remote_runtime_says_the_memory_is_the_servers():
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        run(shell, "%config MLXMagics.runtime = 'remote'")
        with pytest.raises(UsageError, match="the remote runtime's models live in the servers'"):
            run(shell, "%mlx memory")
    finally:
        shell.extension_manager.unload_extension("mlx_magic")
