"""Shared fixtures: fresh IPython shells with the extension, and the embedded model."""

import contextlib
import functools
import os
import threading

import pytest
from IPython.core.error import UsageError
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
    from mlx_magic.testing.tiny_models import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("models") / "tiny-qwen2-vl")


@pytest.fixture(scope="session")
def tiny_sam3(tmp_path_factory):
    """A tiny random SAM 3 (mlx-vlm's segmenter) in a hub-style folder (built once per run)."""
    from mlx_magic.testing.tiny_models import build_tiny_sam3

    return build_tiny_sam3(tmp_path_factory.mktemp("models") / "tiny-sam3")


@pytest.fixture(scope="session")
def tiny_sam31(tmp_path_factory):
    """A tiny random SAM 3.1 (mlx-vlm's ``sam3_1``) in a hub-style folder (built once per run)."""
    from mlx_magic.testing.tiny_models import build_tiny_sam31

    return build_tiny_sam31(tmp_path_factory.mktemp("models") / "tiny-sam31")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """A tiny random llama text model (fast) in a hub-style folder."""
    from mlx_magic.testing.tiny_models import build_tiny_llama

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


@pytest.fixture(scope="module")
def vlm_shell(tiny_vlm):
    """A shell whose default vision model is the tiny Qwen2-VL, with images
    ``red`` (PIL, 120×80) and ``noise`` (numpy, 96×64) in its namespace."""
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%config MLXMagics.default_vision_model = {str(tiny_vlm)!r}")
    run(shell, "from PIL import Image; import numpy as np")
    run(shell, "red = Image.new('RGB', (120, 80), 'red')")
    run(shell, "noise = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype('uint8')")
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


@pytest.fixture(scope="module")
def llama_shell(tiny_llama):
    """A shell (one per test module) whose default model is the tiny llama (greedy: temperature 0)."""
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%config MLXMagics.default_model = {str(tiny_llama)!r}")
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


def one_line(caught):
    """The message of a caught error, checked to be exactly one UsageError line."""
    message = str(caught.value)
    assert type(caught.value) is UsageError and "\n" not in message
    return message


def magics_of(shell):
    return shell.magics_manager.registry["MLXMagics"]


def runtime_threads():
    return [t for t in threading.enumerate() if t.name == "mlx_magic-runtime"]


@pytest.fixture(scope="module")
def kernel():
    """A real kernel (manager, client) per test module, with the extension
    loaded and the embedded model warm. Answers stream as plain text there
    (``default_format = 'text'``): these tests read the stdout stream; the
    rendered stream has its own (tests/test_markdown_stream.py, with ``-f markdown``)."""
    from kernel_helpers import running_kernel

    with running_kernel(
        "%load_ext mlx_magic",
        "%config MLXMagics.default_format = 'text'",
        "%mlx load smollm2",
    ) as started:
        yield started


@pytest.fixture(scope="module", autouse=True)
def no_runtime_left_behind(request):
    """A module that leaves a runtime thread running (a shell never unloaded)
    would make later modules' thread counts wrong: fail it here, by name."""
    before = set(runtime_threads())
    yield
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and set(runtime_threads()) - before:
        time.sleep(0.1)
    left = set(runtime_threads()) - before
    if left:
        import sys
        import traceback

        frames = sys._current_frames()
        where = "".join(
            "".join(traceback.format_stack(frames[thread.ident]))
            for thread in left
            if thread.ident in frames
        )
        pytest.fail(
            f"{request.module.__name__} left {len(left)} runtime thread(s) running:\n{where}"
        )


@contextlib.contextmanager
def forced_batch_answers(answer_for):
    """Within the block, every text request decoded together with mlx-lm's
    ``BatchGenerator`` (a ``--map`` run, side-by-side columns) answers
    ``answer_for(request)``: each item (and each model) its own scripted answer.

    The model still runs every step, in its batch; only the choice of each
    token is fixed (after a ``--schema`` constraint: script an answer that
    follows the schema). The runtime must be the thread runtime (in-process).
    Only batched requests are scripted: a lone one (one item left, or
    ``--batch-size 1``) decodes with ``stream_generate`` (:func:`forced_answer`).

        answers = {"Paris": "France", "Rome": "Italy"}
        with forced_batch_answers(lambda request: answers[request.prompt.split()[-1]]):
            get_ipython().run_cell_magic("mlx", "--map cities", "Country of {item}")
    """
    from mlx_magic.engine import batch_generation
    from mlx_magic.testing import scripted

    original = batch_generation.extra_logits_processors
    active = [True]

    @functools.wraps(original)
    def forced(warm, request):
        processors = list(original(warm, request))
        # A module imported inside the block keeps this function: after the
        # block, and for vision requests, it is the original.
        if not active[0] or request.model.kind != "text":
            return processors
        tokenizer = warm.tokenizer
        ids = tokenizer.encode(answer_for(request), add_special_tokens=False)
        processors.append(scripted.scripted_logits_processor(ids, tokenizer.eos_token_id))
        return processors

    batch_generation.extra_logits_processors = forced
    try:
        yield
    finally:
        active[0] = False
        batch_generation.extra_logits_processors = original
