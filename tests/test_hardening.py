"""What a hostile new user tried, one cause at a time: each mistake is one
UsageError line naming the fix, nothing else reaches the cell, and nothing
else changes."""

import io
import logging
import shutil
import warnings

import pytest
from IPython.core.error import UsageError
from PIL import Image

from conftest import magics_of, run


def corrupt_exif_jpeg() -> bytes:
    buffer = io.BytesIO()
    broken_exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03\x00"
    Image.new("RGB", (8, 8), "red").save(buffer, "JPEG", exif=broken_exif)
    return buffer.getvalue()


def test_a_corrupt_exif_block_is_no_warning(tmp_path):
    from mlx_magic.images import load_images

    path = tmp_path / "broken-exif.jpg"
    path.write_bytes(corrupt_exif_jpeg())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [loaded] = load_images([str(path)], {})
    assert loaded.image.size == (8, 8)
    assert not [w for w in caught if "EXIF" in str(w.message)]


def test_an_empty_image_is_one_line(shell):
    run(shell, "from PIL import Image; empty = Image.new('RGB', (0, 0))")
    with pytest.raises(UsageError, match=r"is empty \(0×0 pixels\)"):
        run(shell, "%%mlx_vision -m x -i empty\nWhat is it?")


@pytest.mark.vision
def test_a_vision_folder_without_weights_is_one_line_and_nothing_else(
    shell, tiny_vlm, tmp_path, capsys, caplog
):
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_vlm, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    run(shell, "from PIL import Image; red = Image.new('RGB', (32, 24), 'red')")
    capsys.readouterr()
    with caplog.at_level(logging.WARNING), pytest.raises(UsageError) as caught:
        run(shell, f"%%mlx_vision -m {folder} -i red\nWhat is it?")
    assert type(caught.value) is UsageError
    assert "has no weights" in str(caught.value) and "\n" not in str(caught.value)
    assert "ERROR" not in capsys.readouterr().err
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert magics_of(shell).session.runtime.models() == []


class Exploding:
    @property
    def prop(self):
        raise RuntimeError("boom in a property")

    def __format__(self, spec):
        raise RuntimeError("boom in __format__")


@pytest.mark.parametrize(
    "cell, words",
    [
        ("%%mlx\nSay {b}", "boom in __format__"),
        ("%%mlx\nSay {b.prop}", "boom in a property"),
        ("%%mlx\nSay {five:abc}", "Invalid format specifier"),
        ("%%mlx -m a/b..c\nHi", "not a valid Hugging Face Hub id"),
        ("%mlx chat load {tmp}/list.json", "not an mlx_magic conversation"),
        ("%mlx chat save {tmp} default", "is a folder"),
        ("%mlx chat save {tmp}/missing/x.json default", "does its folder exist?"),
        ("%%mlx_vision -m x -i {tmp}/pipe\nWhat?", "not a regular file"),
        (
            "%%mlx --repetition-penalty inf\nHi",
            "--repetition-penalty must be more than 0 and finite",
        ),
        (
            "%%mlx --repetition-penalty nan\nHi",
            "--repetition-penalty must be more than 0 and finite",
        ),
    ],
)
def test_each_mistake_is_one_line_not_a_traceback(shell, tmp_path, cell, words):
    import os

    shell.user_ns.update(b=Exploding(), five=5)
    (tmp_path / "list.json").write_text("[]")
    os.mkfifo(tmp_path / "pipe")
    conversations = magics_of(shell).session.conversations
    conversations.start_or_continue("default", "k", "m", None)
    shell.user_ns["_mlx"] = "before"
    with pytest.raises(UsageError) as caught:
        run(shell, cell.replace("{tmp}", str(tmp_path)))
    assert type(caught.value) is UsageError
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert shell.user_ns["_mlx"] == "before"
    assert not magics_of(shell).session.runtime_started


@pytest.mark.parametrize("setting", ["prefix_cache_gb", "memory_budget_gb", "temperature"])
def test_an_infinite_setting_is_refused_and_forgotten(shell, caplog, setting):
    before = getattr(magics_of(shell), setting)
    run(shell, f"%config MLXMagics.{setting} = float('inf')")
    assert "finite" in caplog.text
    assert getattr(magics_of(shell), setting) == before
    assert setting not in shell.config.get("MLXMagics", {})


def test_an_alias_loop_in_remote_mode_is_one_line(shell):
    run(shell, '%config MLXMagics.aliases = {"a": "b", "b": "a"}')
    run(shell, '%config MLXMagics.endpoints = ["http://127.0.0.1:9"]')
    run(shell, '%config MLXMagics.runtime = "remote"')
    with pytest.raises(UsageError, match="aliases form a loop"):
        run(shell, "%%mlx -m a\nHi")


def test_remote_stops_at_max_tokens_when_the_server_does_not(shell):
    from fake_openai import Recorder

    server = Recorder("endless")
    try:
        run(shell, f"%mlx connect {server.url}")
        run(shell, "%%mlx -n 4\nCount for ever.")
        result = shell.user_ns["_mlx"]
        assert result.finish_reason == "length"
        assert result.text == " w0 w1 w2 w3"
        assert result.stats.server == server.url.replace("127.0.0.1", "127.0.0.1")
    finally:
        run(shell, "%mlx disconnect")
        server.close()


def test_the_key_never_reaches_the_cell_even_echoed_in_pieces(shell, monkeypatch, capsys):
    from fake_openai import Recorder

    key = "sk-echo-0123456789abcdef"
    monkeypatch.setenv("MLX_MAGIC_TEST_ECHO_KEY", key)
    server = Recorder("echo-auth")
    try:
        run(shell, '%config MLXMagics.api_key_env = "MLX_MAGIC_TEST_ECHO_KEY"')
        run(shell, f"%mlx connect {server.url}")
        run(shell, "%%mlx -n 64\nWhat did I send?")
        result = shell.user_ns["_mlx"]
        assert result.text.startswith("You sent: Bearer ***")
        assert key not in result.text and key not in capsys.readouterr().out
        assert key[:10] not in result.text  # no piece of it either
    finally:
        run(shell, "%mlx disconnect")
        server.close()


def test_connect_checks_the_url_before_switching(shell, tiny_llama):
    run(shell, f"%mlx load {tiny_llama}")
    runtime = magics_of(shell).session.runtime
    for url in ("not-a-url", "http://127.0.0.1:9", "ftp://example.com"):
        with pytest.raises(UsageError) as caught:
            run(shell, f"%mlx connect {url}")
        assert type(caught.value) is UsageError and "\n" not in str(caught.value)
    assert magics_of(shell).runtime == "thread"
    assert magics_of(shell).session.runtime is runtime
    assert [info.key for info in runtime.models()] == [str(tiny_llama)]


def test_a_lone_surrogate_in_a_variable_is_one_line(shell):
    shell.user_ns["broken"] = "caf\udce9"
    with pytest.raises(UsageError, match="lone surrogate"):
        run(shell, "%%mlx\nTranslate {broken}")
    assert not magics_of(shell).session.runtime_started


def test_top_k_beyond_the_vocabulary_keeps_every_token(shell, tiny_llama):
    run(shell, f"%%mlx -n 3 -m {tiny_llama} --top-k 10000000 --temp 0.7 --seed 1\nHi")
    assert shell.user_ns["_mlx"].stats.generation_tokens == 3


def test_conversations_survive_a_reload(shell, tiny_llama):
    run(shell, f"%%mlx -n 2 -m {tiny_llama} -c kept\nHi")
    run(shell, "%reload_ext mlx_magic")
    conversation = magics_of(shell).session.conversations.get("kept")
    assert conversation is not None and len(conversation.turns) == 1


def test_remote_names_the_model_the_server_says_answered(shell):
    from fake_openai import Recorder

    server = Recorder()
    try:
        run(shell, f"%mlx connect {server.url}")
        run(shell, "%%mlx -n 8\nHi")
        assert shell.user_ns["_mlx"].text == "Hello, wörld 🚀"
        assert shell.user_ns["_mlx"].model == "fake-model"
    finally:
        run(shell, "%mlx disconnect")
        server.close()


def test_truncated_weights_are_one_line_naming_the_fix(shell, tiny_llama, tmp_path):
    folder = tmp_path / "truncated"
    shutil.copytree(tiny_llama, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(UsageError) as caught:
        run(shell, f"%%mlx -n 2 -m {folder}\nHi")
    assert type(caught.value) is UsageError
    assert "are damaged" in str(caught.value) and "again" in str(caught.value)
    assert "Generation failed" not in str(caught.value)


def test_config_listing_hides_a_urls_password(shell, capsys):
    run(shell, '%config MLXMagics.endpoints = ["http://alice:s3cr3t-pw@127.0.0.1:9/v1"]')
    capsys.readouterr()
    run(shell, "%config MLXMagics")
    listing = capsys.readouterr().out
    assert "endpoints" in listing and "s3cr3t-pw" not in listing and "alice:***@" in listing


def test_status_in_remote_mode_shows_no_local_gpu_lines(shell, capsys):
    from fake_openai import Recorder

    server = Recorder()
    try:
        run(shell, f"%mlx connect {server.url}")
        capsys.readouterr()
        run(shell, "%mlx status")
        status = capsys.readouterr().out
        assert "remote" in status and "GPU lock" not in status and "MLX memory" not in status
    finally:
        run(shell, "%mlx disconnect")
        server.close()


@pytest.mark.vision
def test_transformers_processor_kwargs_warning_stays_out_of_the_cell(vlm_shell):
    run(vlm_shell, "%%mlx_vision -n 1 -i red\nWhat is it?")  # loads the vision model
    logger = logging.getLogger("transformers.processing_utils")
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.WARNING)  # transformers' verbosity may hide warnings here
    try:
        logger.warning(
            "Kwargs passed to `processor.__call__` have to be in `processor_kwargs` dict, "
            "not in `**kwargs`"
        )
        logger.warning("another warning")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert seen == ["another warning"]


@pytest.mark.parametrize(
    "placeholder",
    [
        "{get_ipython.__globals__[os].environ[MLX_MAGIC_TEST_SECRET]}",
        "{helper.__globals__}",
        "{numbers[0].__class__.__mro__}",
        "{numbers:{helper.__globals__}}",
    ],
)
def test_a_placeholder_never_follows_private_attributes(shell, monkeypatch, capsys, placeholder):
    secret = "sk-secret-0123456789"
    monkeypatch.setenv("MLX_MAGIC_TEST_SECRET", secret)
    run(shell, "import os\ndef helper(): pass\nnumbers = [1, 2]")
    shell.user_ns["_mlx"] = "before"
    with pytest.raises(UsageError) as caught:
        run(shell, f"%%mlx -n 2\nTell me {placeholder}")
    message = str(caught.value)
    assert type(caught.value) is UsageError and "\n" not in message
    assert "private attribute" in message and "--no-interpolate" in message
    out = capsys.readouterr()
    assert secret not in message + out.out + out.err
    assert shell.user_ns["_mlx"] == "before"


def test_a_placeholder_still_reads_public_attributes_and_items(shell):
    from mlx_magic.magics.templating import fill_template

    namespace = {"shape": (3, 4), "row": {"name": "Ada"}, "pi": 3.14159, "s": "text"}
    filled = fill_template("{shape[0]} {row[name]} {pi:.2f} {s.upper} {s!r}", namespace)
    assert filled.startswith("3 Ada 3.14 <built-in method upper") and filled.endswith("'text'")


def test_a_prompt_over_the_context_is_one_line_and_nothing_on_stderr(shell, tiny_llama, tmp_path):
    # A model with a short context (64 tokens): the refusal comes before
    # prefill, for the system prompt as for the cell's text, as exactly one
    # line; transformers' own "Token indices sequence length" warning (a
    # second line on stderr) stays out.
    import json
    import logging
    import shutil

    short = tmp_path / "short-llama"
    shutil.copytree(tiny_llama, short)
    for name, key in (
        ("config.json", "max_position_embeddings"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        config = json.loads((short / name).read_text())
        config[key] = 64
        (short / name).write_text(json.dumps(config))
    shell.user_ns["long_text"] = "word " * 400
    # transformers logs to a handler of its own (it does not propagate).
    warnings: list = []
    listener = logging.Handler()
    listener.emit = warnings.append  # type: ignore[method-assign]
    logging.getLogger("transformers").addHandler(listener)
    try:
        for cell in (
            f"%%mlx -m {short} -n 2 -s '{{long_text}}'\nHi",
            f"%%mlx -m {short} -n 2\n{{long_text}}",
        ):
            with pytest.raises(UsageError) as caught:
                run(shell, cell)
            message = str(caught.value)
            assert type(caught.value) is UsageError and "\n" not in message
            assert "reads at most 64 (its context)" in message
    finally:
        logging.getLogger("transformers").removeHandler(listener)
    assert not [r for r in warnings if "Token indices" in r.getMessage()]
