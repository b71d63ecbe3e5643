"""Downloads in the cell, against a real Hub-compatible server on 127.0.0.1
(tests/hub_server.py: huggingface_hub's own client talks to it over HTTP).

In this process huggingface_hub has read ``HF_ENDPOINT`` and its cache folder
at import, so the ``hub_env`` fixture points its constants at the server and a
fresh cache; a kernel gets them in its environment.
"""

import hashlib
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from conftest import make_shell, one_line, run
from hub_server import LocalHub, fat_tiny_llama

MIB = 1024**2
#: The throttle: slow enough for several progress updates (huggingface_hub
#: reads 10 MiB chunks), fast enough for a short test.
RATE = 8 * MIB


@pytest.fixture(scope="module")
def hub(tiny_llama, tmp_path_factory):
    hub = LocalHub()
    hub.add("tiny/llama", tiny_llama)
    hub.add("tiny/fat", fat_tiny_llama(tmp_path_factory.mktemp("fat") / "fat-llama"))
    huge = tmp_path_factory.mktemp("huge")
    shutil.copy(tiny_llama / "config.json", huge / "config.json")
    with open(huge / "model.safetensors", "wb") as sparse:
        # Twice the free space of this disk (the tests' caches are on it), taking no room.
        sparse.truncate(2 * shutil.disk_usage(huge).free + (1 << 30))
    hub.add("tiny/huge", huge)
    yield hub
    hub.close()


@pytest.fixture
def hub_env(hub, tmp_path, monkeypatch):
    """huggingface_hub of this process (and kernels started with ``os.environ``)
    talking to ``hub``, with an empty cache."""
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        hub.url + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub.rate = None
    hub.reset_count()
    yield cache / "hub"
    hub.rate = None


@pytest.fixture
def hub_shell(hub_env):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")
    shell.clear_instance()


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def partial_file(cache, repo="tiny/fat"):
    blobs = cache / f"models--{repo.replace('/', '--')}" / "blobs"
    return next(iter(blobs.glob("*.incomplete")), None) if blobs.is_dir() else None


def download_threads():
    return [t for t in threading.enumerate() if t.name == "mlx_magic-download"]


def test_first_use_shows_the_files_and_a_bar_then_answers(hub, hub_env, hub_shell, capsys):
    run(hub_shell, "%%mlx -m tiny/llama -n 3 --temp 0\nHello")
    out, err = capsys.readouterr()
    files = len(hub.repos["tiny/llama"].files)
    assert f"Downloading tiny/llama from the Hugging Face Hub: {files} files" in out
    assert re.search(r"model\.safetensors\s+\d+\.\d KiB", out)
    assert "100%" in err and "tiny/llama" in err  # tqdm's text bar, in a terminal
    assert run(hub_shell, "_mlx").text  # it loaded and answered
    served = hub.served
    assert served == sum(f["size"] for f in hub.repos["tiny/llama"].files.values())
    # The second cell finds it here: nothing shown, nothing fetched.
    run(hub_shell, "%%mlx -m tiny/llama -n 2\nAgain")
    out, _ = capsys.readouterr()
    assert "Downloading" not in out and hub.served == served


def test_the_bar_shows_the_throttled_rate(hub, hub_env, hub_shell, capsys):
    hub.rate = RATE
    run(hub_shell, "%mlx pull tiny/fat")
    out, err = capsys.readouterr()
    total = sum(f["size"] for f in hub.repos["tiny/fat"].files.values())
    assert hub.served == total
    pulled = re.search(r"Pulled tiny/fat: ([\d.]+) MiB in ([\d.]+) s \(([\d.]+) MiB/s\)", out)
    assert pulled, out
    rates = [float(r) for r in re.findall(r"([\d.]+)MB/s", err)]  # tqdm: MiB with divisor 1024
    assert rates, err
    sent = hub.measured_rate / MIB  # what the server sent: the throttle, less its own costs
    print(
        f"\nthrottle {RATE / MIB:.1f} MiB/s, server sent {sent:.2f} MiB/s; the bar shows "
        f"{rates[-1]} MiB/s, the pull line {pulled.group(3)} MiB/s"
    )
    assert sent <= RATE / MIB * 1.05
    # tqdm's rate is a moving average of the 10 MiB updates; the pull line
    # also counts the requests before and after the bytes.
    assert 0.65 * sent <= rates[-1] <= 1.35 * sent
    assert 0.5 * sent <= float(pulled.group(3)) <= 1.1 * sent
    assert re.search(r"\d+%\|", err) and "<" in err  # percent, and tqdm's time left


def test_an_interrupt_stops_at_once_and_the_next_run_resumes(hub, hub_env, hub_shell, capsys):
    hub.rate = RATE
    main = threading.get_ident()
    stopped = {}

    def interrupt_after_the_first_chunk():
        # huggingface_hub writes 10 MiB chunks: wait until one is on disk.
        while (partial := partial_file(hub_env)) is None or partial.stat().st_size < 10 * MIB:
            time.sleep(0.02)
        stopped["at"] = time.monotonic()
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt_after_the_first_chunk, daemon=True).start()
    result = hub_shell.run_cell("%mlx pull tiny/fat")
    took = time.monotonic() - stopped["at"]
    error = result.error_in_exec
    assert isinstance(error, KeyboardInterrupt) and "\n" not in str(error)
    assert re.fullmatch(
        r"stopped downloading tiny/fat at [\d.]+ MiB of 37\.6 MiB; run it again to resume",
        str(error),
    )
    assert took < 1.0, took  # the cell is back at once
    for thread in download_threads():  # the download itself ends at its next chunk
        thread.join(30)
    kept = partial_file(hub_env).stat().st_size
    assert kept >= 10 * MIB
    capsys.readouterr()
    run(hub_shell, "%mlx models --local")  # the stopped download is listed, with its size
    listed = capsys.readouterr().out
    assert re.search(
        rf"tiny/fat\s+\?\s+-\s+{kept / MIB:.1f} MiB\s+just now\s+Hub \(partial: pull resumes\)",
        listed,
    ), listed

    hub.rate = None
    hub.reset_count()
    run(hub_shell, "%mlx pull tiny/fat")
    out, _ = capsys.readouterr()
    total = sum(f["size"] for f in hub.repos["tiny/fat"].files.values())
    assert f"{kept / MIB:.1f} MiB already here: resuming" in out
    print(
        f"\ninterrupt → cell back in {took:.2f} s; resume fetched {hub.served} of {total} "
        f"bytes ({kept} were on disk)"
    )
    # Only what was missing came: the weights' rest (continued with a Range
    # request) and the small files, fetched after the weights.
    assert hub.served == total - kept
    snapshot = next((hub_env / "models--tiny--fat" / "snapshots").iterdir())
    source = hub.repos["tiny/fat"].folder
    assert sha256(snapshot / "model.safetensors") == sha256(source / "model.safetensors")
    assert partial_file(hub_env) is None


def test_a_background_pull_is_a_job_that_cancel_stops(hub, hub_env, hub_shell, capsys):
    hub.rate = RATE
    run(hub_shell, "%mlx pull -b tiny/fat")
    assert "Pulling in the background as job 1" in capsys.readouterr().out
    run(hub_shell, "%mlx jobs")
    assert re.search(r"1\s+running\s+pull tiny/fat", capsys.readouterr().out)
    while (partial := partial_file(hub_env)) is None or partial.stat().st_size < 10 * MIB:
        time.sleep(0.02)  # the kernel thread is free meanwhile: this test runs
    run(hub_shell, "%mlx cancel 1")
    run(hub_shell, "%mlx wait 1")
    out = capsys.readouterr().out
    assert re.search(
        r"job 1: cancelled · stopped at [\d.]+ MiB of 37\.6 MiB; %mlx pull again resumes", out
    ), out
    assert partial_file(hub_env).stat().st_size >= 10 * MIB


def test_a_download_that_breaks_off_is_one_line_and_resumes_later(hub, hub_env, hub_shell):
    hub.cut_after = 5 * MIB  # every response of a file drops after 5 MiB
    try:
        with pytest.raises(UsageError) as caught:
            run(hub_shell, "%mlx pull tiny/fat")  # huggingface_hub retries 5 times first
    finally:
        hub.cut_after = None
    message = one_line(caught)
    assert message.startswith("Downloading 'tiny/fat' failed (") and message.endswith(
        "): run it again to resume"
    ), message
    run(hub_shell, "%mlx pull tiny/fat")
    snapshot = next((hub_env / "models--tiny--fat" / "snapshots").iterdir())
    source = hub.repos["tiny/fat"].folder
    assert sha256(snapshot / "model.safetensors") == sha256(source / "model.safetensors")


def test_a_download_the_disk_cannot_hold_is_refused_first(hub, hub_env, hub_shell):
    with pytest.raises(UsageError) as caught:
        run(hub_shell, "%mlx pull tiny/huge")
    message = one_line(caught)
    assert re.fullmatch(
        r"Not enough disk for 'tiny/huge': it needs ([\d.]+) GiB, ([\d.]+) GiB free in "
        + re.escape(str(hub_env))
        + r" \(free some space, %mlx rm a model, or set HF_HOME to a larger disk\)",
        message,
    ), message
    needs, free = re.match(r".*needs ([\d.]+) GiB, ([\d.]+) GiB", message).groups()
    assert float(needs) > float(free) > 0
    assert hub.served == 0 and not (hub_env / "models--tiny--huge" / "blobs").exists()
    with pytest.raises(UsageError) as caught:  # the same refusal as a cell's model
        run(hub_shell, "%%mlx -m tiny/huge\nHi")
    assert one_line(caught).startswith("Not enough disk for 'tiny/huge'")


def closed_port_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_mistakes_are_one_line(hub_env, hub_shell, monkeypatch):
    def refused(line):
        with pytest.raises(UsageError) as caught:
            run(hub_shell, line)
        return one_line(caught)

    assert refused("%mlx pull nobody/nothing").startswith(
        "No model 'nobody/nothing' on the Hugging Face Hub: check the name"
    )
    assert refused("%%mlx -m nobody/nothing\nHi").startswith("No model 'nobody/nothing'")
    assert refused("%mlx rm tiny/llama").startswith("'tiny/llama' is not in the Hugging Face cache")
    assert "not a Hugging Face Hub id" in refused("%mlx pull ./some/folder")
    assert refused("%mlx pull") == "Usage: %mlx pull [-b] owner/name"
    assert (
        refused("%mlx status --local") == "--local is an option of %mlx models, not of %mlx status"
    )
    assert refused("%mlx pull -y tiny/llama") == "-y is an option of %mlx rm, not of %mlx pull"
    point_at(monkeypatch, closed_port_url())
    assert refused("%mlx pull tiny/llama").startswith(
        "Could not fetch 'tiny/llama' from the Hugging Face Hub (no network?)"
    )


def point_at(monkeypatch, url):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
    )


def test_outside_the_magics_quietly_and_without_the_hub_from_the_cache(
    hub, hub_env, hub_shell, capsys, monkeypatch
):
    from mlx_magic.models.resolve import resolve_model

    spec = resolve_model("tiny/llama")  # scripts, benchmarks: no plan shown, no bar
    assert capsys.readouterr() == ("", "")
    assert spec.source == "hub" and spec.kind == "text" and spec.key == "tiny/llama"
    assert hub.served == sum(f["size"] for f in hub.repos["tiny/llama"].files.values())
    point_at(monkeypatch, closed_port_url())  # the network is gone: the cache serves
    assert resolve_model("tiny/llama").path == spec.path
    run(hub_shell, "%mlx pull tiny/llama")
    assert capsys.readouterr().out == f"tiny/llama is here: {spec.path}\n"


def test_models_on_disk_and_rm(hub, hub_env, hub_shell, tiny_vlm, capsys, monkeypatch):
    import io

    from mlx_magic.engine.gguf_conversion import convert_gguf
    from mlx_magic.models.embedded import cache_root, embedded_gguf_path

    hub.add("tiny/vlm", tiny_vlm)
    convert_gguf(embedded_gguf_path(), cache_root() / "gguf" / "smollm2-listing")
    run(hub_shell, "%mlx pull tiny/llama")
    run(hub_shell, "%mlx pull tiny/vlm")
    capsys.readouterr()
    run(hub_shell, "%mlx models --local")
    out, _ = capsys.readouterr()
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["tiny/llama"][1:3] == ["text", "-"]
    assert rows["tiny/vlm"][1:3] == ["vision", "-"]
    gguf = rows["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert gguf[1:3] == ["text", "4-bit"] and gguf[-1] == "GGUF"
    assert rows["tiny/llama"][5:7] == ["just", "now"] and rows["tiny/llama"][-1] == "Hub"

    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    run(hub_shell, "%mlx rm tiny/llama")
    assert "Kept tiny/llama" in capsys.readouterr().out
    assert (hub_env / "models--tiny--llama").is_dir()
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    run(hub_shell, "%mlx rm tiny/llama")
    out, _ = capsys.readouterr()
    assert re.search(r"Deleted tiny/llama: [\d.]+ KiB freed", out)
    assert not (hub_env / "models--tiny--llama").exists()
    run(hub_shell, "%mlx rm -y tiny/vlm")
    assert "Deleted tiny/vlm" in capsys.readouterr().out
    run(hub_shell, "%mlx models --local")
    out, _ = capsys.readouterr()
    assert "tiny/" not in out and "SmolLM2" in out


@pytest.mark.kernel
def test_in_a_real_kernel_bar_interrupt_background_pull_and_rm(hub, hub_env):
    from kernel_helpers import displays, execute, running_kernel, stream_text

    hub.rate = RATE
    with running_kernel("%load_ext mlx_magic", extra_env=dict(os.environ)) as (manager, client):
        stopped = {}

        def interrupt_after_the_first_chunk(message):
            partial = partial_file(hub_env)
            if "at" not in stopped and partial is not None and partial.stat().st_size >= 10 * MIB:
                stopped["at"] = time.monotonic()
                manager.interrupt_kernel()

        # iopub messages arrive with the bar's updates: check the file on each.
        reply, messages = execute(
            client, "%mlx pull tiny/fat", on_message=interrupt_after_the_first_chunk, timeout=120
        )
        took = time.monotonic() - stopped["at"]
        print(f"\nkernel: interrupt → reply in {took:.2f} s")
        assert took < 2.0
        assert reply["status"] == "error" and reply["ename"] == "GenerationInterrupted"
        assert (
            reply["traceback"] == [reply["traceback"][0]]
            and "stopped downloading tiny/fat" in reply["traceback"][0]
        )
        assert any("application/vnd.jupyter.widget-view+json" in d for d in displays(messages))
        assert "Downloading tiny/fat from the Hugging Face Hub" in stream_text(messages)

        hub.reset_count()
        reply, messages = execute(client, "%mlx pull -b tiny/fat")
        assert "job 1" in stream_text(messages)
        reply, messages = execute(client, "%mlx wait", timeout=120)
        done = stream_text(messages)
        assert re.search(r"job 1: done · Pulled tiny/fat: [\d.]+ MiB", done), done
        total = sum(f["size"] for f in hub.repos["tiny/fat"].files.values())
        assert 0 < hub.served < total - 9 * MIB  # resumed: the first 10 MiB stayed

        # %mlx rm asks through the frontend (stdin), as input() does in a kernel.
        content = {"code": "%mlx rm tiny/fat", "allow_stdin": True, "silent": False}
        request = client.session.msg("execute_request", content)
        client.shell_channel.send(request)
        prompt = client.get_stdin_msg(timeout=60)
        assert "Delete tiny/fat (37.6 MiB)" in prompt["content"]["prompt"]
        client.input("y")
        while True:
            message = client.get_iopub_msg(timeout=60)
            if message["parent_header"].get("msg_id") != request["header"]["msg_id"]:
                continue
            if message["msg_type"] == "stream":
                assert "Deleted tiny/fat" in message["content"]["text"]
                break
        assert not (hub_env / "models--tiny--fat").exists()


def test_an_embedders_module_weights_come_and_other_folders_weights_do_not():
    from huggingface_hub.utils import filter_repo_objects

    from mlx_magic.models.downloads import FETCHED

    names = ["model.safetensors", "2_Dense/model.safetensors", "onnx/model.safetensors"]
    assert list(filter_repo_objects(names, allow_patterns=FETCHED)) == names[:2]
