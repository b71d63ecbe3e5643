"""The prefix cache's tier on disk: long prompts' KV state kept in mlx-lm's
prompt-cache files, found again after a restart by the longest shared beginning,
keyed by model, weights and KV form, bounded by bytes (least recently used out)."""

import os

import pytest

from mlx_magic.vocabulary.caching import KVCacheSettings, PrefixCacheSettings
from mlx_magic.vocabulary.values import GenerationRequest, ModelSpec

from conftest import magics_of, make_shell, one_line, run
from kernel_helpers import execute, printed, running_kernel, stream_text

DOCUMENT = " ".join(f"line {n}: the lighthouse keeper counted ships." for n in range(30))


def filled(tokens, layers=2, seed=0):
    """Real mlx-lm KV caches holding ``tokens`` positions of random keys and values."""
    import mlx.core as mx
    from mlx_lm.models.cache import KVCache

    mx.random.seed(seed)
    cache = []
    for _ in range(layers):
        layer = KVCache()
        keys = mx.random.normal((1, 2, tokens, 16))
        layer.update_and_fetch(keys, keys * 2)
        cache.append(layer)
    mx.eval([layer.state for layer in cache])
    return cache


def tier(folder, key="model-a", weights="w1", bits=None, max_bytes=1 << 30, min_tokens=4):
    from mlx_magic.engine.disk_cache import disk_tier

    request = GenerationRequest(
        model=ModelSpec(name=key, key=key, path=key),
        prompt="x",
        prefix_cache=PrefixCacheSettings(
            disk_folder=str(folder), disk_max_bytes=max_bytes, disk_min_tokens=min_tokens
        ),
        kv_cache=KVCacheSettings(bits=bits),
    )
    return disk_tier({"name": key, "key": key, "weights_sha256": weights}, request)


def test_an_entry_is_found_by_prompts_sharing_its_beginning_and_by_no_other_key(tmp_path):
    import mlx.core as mx

    disk = tier(tmp_path)
    tokens = list(range(100, 110))
    cache = filled(len(tokens))
    assert disk.write(tokens, cache) is not None
    entry, usable = disk.nearest(tokens + [1, 2, 3])  # the entry is a prefix of the prompt
    assert entry is not None and entry.tokens == tuple(tokens) and usable == 10
    assert disk.nearest(tokens[:6])[1] == 5  # a prompt inside the entry: trimmed, one left to read
    assert disk.nearest(tokens[:4] + [7, 7, 7])[1] == 4  # they part ways after 4 tokens
    assert disk.nearest([1, 2, 3, 4])[1] == 0  # other tokens
    for other in (
        tier(tmp_path, key="model-b"),  # another model
        tier(tmp_path, weights="w2"),  # the same name with other weights
        tier(tmp_path, bits=8),  # another form of KV cache
    ):
        assert other.entries() == [] and other.nearest(tokens + [1])[0] is None
    loaded = disk.load(entry)
    assert [layer.offset for layer in loaded] == [10, 10]
    # Written as the 10 positions it holds, not mlx-lm's 256-position buffer.
    assert loaded[1].state[0].shape[2] == 10
    assert mx.array_equal(loaded[1].state[0], cache[1].state[0][..., :10, :]).item()


def test_the_folder_keeps_within_its_bytes_least_recently_used_out(tmp_path):
    from mlx_magic.engine.disk_cache import clear, summary

    first, second, third = ([n] * 8 for n in (1, 2, 3))
    path_first = tier(tmp_path).write(first, filled(8))
    one = path_first.stat().st_size
    disk = tier(tmp_path, max_bytes=int(one * 2.5))  # room for two entries
    path_second = disk.write(second, filled(8))
    os.utime(path_first, (1_000, 1_000))
    os.utime(path_second, (2_000, 2_000))
    entry, _ = disk.nearest(first + [9])
    assert disk.load(entry) is not None  # reading it makes it the most recently used
    disk.write(third, filled(8))
    assert {e.tokens[0] for e in disk.entries()} == {1, 3}
    assert not path_second.exists()
    assert tier(tmp_path, max_bytes=one // 4).write([5] * 8, filled(8)) is None  # over the bound
    held = summary(tmp_path)
    assert (held.entries, held.models, held.bytes) == (2, 1, 2 * one)
    assert clear(tmp_path).entries == 2 and summary(tmp_path).entries == 0


def test_only_prompts_that_read_enough_new_tokens_are_worth_writing(tmp_path):
    disk = tier(tmp_path, min_tokens=8)
    assert not disk.worth_writing(list(range(7)))
    assert disk.worth_writing(list(range(20)))
    disk.write(list(range(20)), filled(20))
    assert not disk.worth_writing(list(range(20)) + [1, 2, 3])  # the disk has all but 3 of it
    assert disk.worth_writing(list(range(20)) + list(range(50, 60)))


@pytest.fixture
def disk_shell(tiny_llama, tmp_path):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    for line in (
        f"%config MLXMagics.default_model = {str(tiny_llama)!r}",
        f"%config MLXMagics.disk_cache_dir = {str(tmp_path / 'prompts')!r}",
        "%config MLXMagics.disk_cache_min_tokens = 64",
        "%config MLXMagics.default_format = 'text'",
    ):
        run(shell, line)
    yield shell, tmp_path / "prompts"
    shell.extension_manager.unload_extension("mlx_magic")


def entries(folder):
    return sorted(folder.glob("*/*.safetensors"))


def test_a_long_prompt_is_read_from_disk_once_memory_is_gone(disk_shell, capsys):
    shell, folder = disk_shell
    cell = f"%%mlx -n 6\n{DOCUMENT}\n\nHow many ships?"
    run(shell, cell)
    first = shell.user_ns["_mlx"]
    assert first.stats.disk_prompt_tokens == 0
    # The state is written after the answer, on the runtime's thread: a
    # command that runs there comes after it.
    run(shell, "%mlx unload all")  # the in-memory prefix cache goes with the model
    assert len(entries(folder)) == 1
    run(shell, cell)
    again = shell.user_ns["_mlx"]
    assert again.stats.disk_prompt_tokens == again.stats.prompt_tokens - 1
    assert again.stats.cached_prompt_tokens == again.stats.disk_prompt_tokens
    assert f"{again.stats.disk_prompt_tokens} from disk" in again.footer
    assert [t.id for t in again.tokens] == [t.id for t in first.tokens]  # greedy: the same
    run(shell, "%mlx unload all")
    run(shell, "%%mlx -n 2\nHi")  # shares only the template's beginning: not worth a file
    assert shell.user_ns["_mlx"].stats.disk_prompt_tokens == 0
    run(shell, f"%%mlx -n 6\n{DOCUMENT}\n\nWho counted them?")
    other = shell.user_ns["_mlx"]
    assert 0 < other.stats.disk_prompt_tokens < other.stats.prompt_tokens - 1
    assert len(entries(folder)) == 1  # the document was on disk already: nothing new written
    capsys.readouterr()
    run(shell, "%mlx status")
    status = capsys.readouterr().out
    assert "Disk cache: 1 prompt states of 1 model(s)" in status and str(folder) in status
    assert "1 read from disk" in status
    run(shell, "%mlx cache clear --disk")
    assert "Emptied the disk cache: 1 prompt states" in capsys.readouterr().out
    assert entries(folder) == []
    with pytest.raises(Exception) as caught:
        run(shell, "%mlx status --disk")
    assert "--disk is an option of %mlx cache clear" in one_line(caught)


def test_nothing_is_written_when_the_tier_or_the_cache_is_off(disk_shell, capsys):
    shell, folder = disk_shell
    run(shell, "%config MLXMagics.disk_cache_gb = 0")
    run(shell, f"%%mlx -n 2\n{DOCUMENT}\n\nOne?")
    capsys.readouterr()
    run(shell, "%mlx status")
    assert "Disk cache: off (disk_cache_gb is 0;" in capsys.readouterr().out
    run(shell, "%config MLXMagics.disk_cache_gb = 1.0")
    run(shell, "%config MLXMagics.prefix_cache = False")
    run(shell, f"%%mlx -n 2\n{DOCUMENT}\n\nTwo?")
    run(shell, "%config MLXMagics.prefix_cache = True")
    run(shell, "%%mlx -n 2\nA short prompt.")  # under disk_cache_min_tokens
    assert entries(folder) == []
    run(shell, "%config MLXMagics.disk_cache_gb = -1")  # refused: the old value stays
    assert magics_of(shell).disk_cache_gb == 1.0


def test_a_restarted_worker_process_reads_the_prompt_from_disk(disk_shell, tiny_llama):
    shell, folder = disk_shell
    run(shell, "%mlx runtime process")
    try:
        cell = f"%%mlx -n 6\n{DOCUMENT}\n\nHow many ships?"
        run(shell, cell)
        first = shell.user_ns["_mlx"]
        run(shell, f"%mlx load {tiny_llama}")  # after the write, on the worker's runtime thread
        assert len(entries(folder)) == 1
        run(shell, "%mlx restart")  # a new worker: nothing of the old one's memory
        run(shell, cell)
        again = shell.user_ns["_mlx"]
        assert (
            not again.stats.warm and again.stats.disk_prompt_tokens == first.stats.prompt_tokens - 1
        )
        assert [t.id for t in again.tokens] == [t.id for t in first.tokens]
    finally:
        run(shell, "%mlx runtime thread")


@pytest.mark.kernel
@pytest.mark.model
def test_restart_and_run_all_reads_the_document_from_disk(tmp_path):
    """A real kernel answers a long cell with the embedded SmolLM2, restarts,
    and answers the same cell again from the disk: the same tokens, the
    prompt read from the files, not from scratch."""
    setup = (
        "%load_ext mlx_magic",
        "%config MLXMagics.default_format = 'text'",
        f"%config MLXMagics.disk_cache_dir = {str(tmp_path / 'prompts')!r}",
        "%config MLXMagics.disk_cache_min_tokens = 64",
    )
    cell = f"%%mlx -n 8\n{DOCUMENT[:600]}\n\nWhat did the keeper count?"
    stats = (
        "(_mlx.stats.prompt_tokens, _mlx.stats.cached_prompt_tokens, "
        "_mlx.stats.disk_prompt_tokens, [t.id for t in _mlx.tokens])"
    )
    with running_kernel(*setup) as (manager, client):
        reply, _ = execute(client, cell, timeout=600)
        assert reply["status"] == "ok", reply
        prompt, cached, from_disk, cold_tokens = eval(printed(client, stats))
        assert (cached, from_disk) == (0, 0) and prompt > 64
        # Written after the answer on the runtime's thread, where this load runs next.
        assert execute(client, "%mlx load smollm2", timeout=120)[0]["status"] == "ok"
        assert len(entries(tmp_path / "prompts")) == 1
        manager.restart_kernel(now=True)
        client.wait_for_ready(timeout=120)
        for line in setup:
            assert execute(client, line, timeout=120)[0]["status"] == "ok", line
        reply, messages = execute(client, cell, timeout=600)
        assert reply["status"] == "ok", reply
        assert stream_text(messages).strip() and f"{prompt - 1} from disk" in printed(
            client, "_mlx.footer"
        )
        again = eval(printed(client, stats))
        assert again == (prompt, prompt - 1, prompt - 1, cold_tokens)


def test_a_process_that_exits_right_after_the_answer_waits_for_the_write(tiny_llama, tmp_path):
    """A kernel restarted just after a long answer exits while the runtime's
    (daemon) thread may still be writing: the exit waits for it."""
    import subprocess
    import sys

    from mlx_magic.engine import disk_cache

    assert disk_cache._pending.wait(0)  # nothing promised in this process now
    pending = disk_cache._Pending()
    pending.add()  # a state promised to the disk: an exit would wait for it
    assert not pending.wait(0.01)
    pending.done()
    assert pending.wait(0)
    folder = tmp_path / "prompts"
    cells = [
        f"%config MLXMagics.default_model = {str(tiny_llama)!r}",
        f"%config MLXMagics.disk_cache_dir = {str(folder)!r}",
        "%config MLXMagics.disk_cache_min_tokens = 64",
        "%%mlx -n 2 -f text\n" + DOCUMENT,
    ]
    script = "\n".join(
        [
            "from IPython.core.interactiveshell import InteractiveShell",
            "from traitlets.config import Config",
            "config = Config()",
            "config.HistoryManager.enabled = False",
            "shell = InteractiveShell(config=config)",
            "shell.extension_manager.load_extension('mlx_magic')",
            f"for cell in {cells!r}:",
            "    assert shell.run_cell(cell).success, cell",
            "assert shell.user_ns['_mlx'].stats.prompt_tokens > 64",
            # and the process ends at once, without unloading anything
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert len(entries(folder)) == 1


def test_a_damaged_entry_is_removed_and_another_format_left_alone(tmp_path):
    import mlx.core as mx

    disk = tier(tmp_path)
    path = disk.write(list(range(10)), filled(10))
    with open(path, "r+b") as damaged:  # cut short, as by a full disk
        damaged.truncate(path.stat().st_size - 100)
    assert disk.nearest(list(range(12))) == (None, 0)
    assert not path.exists()  # removed, not left to take room
    newer = disk.folder / ("f" * 32 + ".safetensors")  # a later mlx_magic's entry
    mx.save_safetensors(str(newer), {"a": mx.zeros((2,))}, {"0.format": "mlx_magic.prompt_cache/2"})
    assert disk.nearest(list(range(12))) == (None, 0) and newer.exists()


def test_a_folder_that_cannot_be_written_keeps_nothing_and_breaks_nothing(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    disk = tier(blocked)  # its model folder cannot be made under a file
    write = disk.write_later(list(range(10)), list(range(12)), filled(12))
    assert write is not None
    write()  # no exception: the answer has been given already
    assert disk.entries() == []
