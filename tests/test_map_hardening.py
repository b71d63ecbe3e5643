"""--map against a hostile new user: every mistake is one line before anything
runs, and an item that cannot run is its own row."""

import pytest
from IPython.core.error import UsageError

from conftest import magics_of, make_shell, run

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def map_shell(tiny_llama):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%config MLXMagics.aliases = {{'tiny': {str(tiny_llama)!r}}}")
    run(shell, "import pandas as pd")
    run(shell, "cities = ['Paris', 'Rome', 'Berlin']")
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


GENERATOR_THAT_RAISES = """
def failing():
    yield 'Paris'
    raise RuntimeError('the file went away')
items_that_fail = failing()
"""


@pytest.mark.parametrize(
    "cell, message",
    [
        # 3. A generator that raises while it is read.
        (
            "%%mlx --map items_that_fail -m tiny -n 2\nSay {item}.",
            "items_that_fail: reading item 1 raised RuntimeError: the file went away",
        ),
    ],
)
def test_a_map_mistake_is_one_line_before_anything_runs(map_shell, cell, message):
    run(map_shell, "animals = pd.DataFrame({'name': ['ant', 'owl'], 'legs': [6, 2]})")
    run(map_shell, GENERATOR_THAT_RAISES)
    run(map_shell, "%%mlx -m tiny -n 2\nHello")
    before = map_shell.user_ns["_mlx"]
    jobs = len(magics_of(map_shell).session.jobs.all())
    result = map_shell.run_cell(cell)
    # Exactly IPython's UsageError (one line), nothing else changed.
    assert type(result.error_in_exec) is UsageError
    with pytest.raises(UsageError, match=message):
        result.raise_error()
    assert "\n" not in str(result.error_in_exec)
    assert map_shell.user_ns["_mlx"] is before
    assert len(magics_of(map_shell).session.jobs.all()) == jobs
    assert "1x" not in map_shell.user_ns and "class" not in map_shell.user_ns


@pytest.mark.kernel
def test_a_lone_surrogate_in_a_later_item_is_a_row_in_a_notebook(tiny_llama):
    # In a kernel the live rows are sent as JSON, which refuses a lone surrogate.
    from kernel_helpers import execute, running_kernel, stream_text

    with running_kernel(
        "%load_ext mlx_magic", f"%config MLXMagics.aliases = {{'tiny': {str(tiny_llama)!r}}}"
    ) as (_, client):
        execute(client, "broken = ['Paris', 'x\\ud800']")
        reply, messages = execute(client, "%%mlx --map broken -m tiny -n 2\nSay {item}.")
        assert reply["status"] == "ok", reply.get("evalue")
        reply, messages = execute(
            client,
            "print(_mlx.rows[1]['finish_reason'], 'lone surrogate' in _mlx.rows[1]['error'])",
        )
        assert stream_text(messages).strip() == "failed True"
