"""Bad input gets exactly one UsageError line and changes nothing.

These tests need no model: everything is refused before the runtime starts.
"""

import pytest
from IPython.core.error import UsageError

from conftest import run, runtime_threads

BAD_CELLS = {
    "unknown flag": "%%mlx --bogus\nhi",
    "zero max tokens": "%%mlx -n 0\nhi",
    "negative max tokens": "%%mlx -n -5\nhi",
    "max tokens not a number": "%%mlx -n lots\nhi",
    "negative temperature": "%%mlx --temp -0.5\nhi",
    "temperature not a number": "%%mlx --temp warm\nhi",
    "top-p above 1": "%%mlx --top-p 1.5\nhi",
    "top-p below 0": "%%mlx --top-p -0.1\nhi",
    "negative top-k": "%%mlx --top-k -1\nhi",
    "min-p above 1": "%%mlx --min-p 2\nhi",
    "zero repetition penalty": "%%mlx --repetition-penalty 0\nhi",
    "negative seed": "%%mlx --seed -1\nhi",
    "bad out name": "%%mlx -o 1abc\nhi",
    "empty prompt": "%%mlx\n   \n\n",
    "missing path": "%%mlx -m /no/such/model\nhi",
    "relative missing path": "%%mlx -m ./no_such_folder\nhi",
}


@pytest.mark.parametrize("cell", BAD_CELLS.values(), ids=BAD_CELLS.keys())
def test_bad_cell_is_one_usage_error_and_starts_nothing(shell, cell):
    with pytest.raises(UsageError) as caught:
        run(shell, cell)
    assert type(caught.value) is UsageError
    message = str(caught.value)
    assert message and "\n" not in message
    assert "_mlx" not in shell.user_ns
    assert runtime_threads() == []


def test_a_document_pasted_into_the_flags_is_a_short_line(shell):
    # IPython fills {…} into the magic's line: 120,000 characters of words the
    # parser cannot read, which it used to echo whole.
    shell.user_ns["document"] = "word " * 24_000
    with pytest.raises(UsageError) as caught:
        run(shell, "%%mlx -s {document}\nhi")
    message = str(caught.value)
    assert type(caught.value) is UsageError
    assert "unrecognized arguments: word word" in message
    assert len(message) <= 600 and "\n" not in message
    with pytest.raises(UsageError) as caught:
        run(shell, "%mlx load {document}")
    assert len(str(caught.value)) <= 600
    assert "_mlx" not in shell.user_ns


def test_folder_without_config_is_not_a_model(shell, tmp_path):
    with pytest.raises(UsageError, match="no config.json"):
        run(shell, f"%%mlx -m {tmp_path}\nhi")


def test_broken_config_json_is_named(shell, tmp_path):
    (tmp_path / "config.json").write_text("{ not json")
    with pytest.raises(UsageError, match="config.json .* is broken"):
        run(shell, f"%%mlx -m {tmp_path}\nhi")


def test_plain_file_is_not_a_model(shell, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UsageError, match="is a file, not a model"):
        run(shell, f"%%mlx -m {path}\nhi")


def test_hub_id_offline_names_the_id_and_the_setting(shell, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UsageError) as caught:
        run(shell, "%%mlx -m someone/not-downloaded-model\nhi")
    message = str(caught.value)
    assert "someone/not-downloaded-model" in message and "HF_HUB_OFFLINE" in message
    assert type(caught.value) is UsageError


def test_alias_loop_is_refused(shell):
    run(shell, "%config MLXMagics.aliases = {'a': 'b', 'b': 'a'}")
    with pytest.raises(UsageError, match="loop"):
        run(shell, "%%mlx -m a\nhi")


def test_unknown_mlx_command_is_a_usage_error(shell):
    with pytest.raises(UsageError, match="invalid choice"):
        run(shell, "%mlx frobnicate")


def test_load_without_a_model_name(shell):
    with pytest.raises(UsageError, match="needs a model"):
        run(shell, "%mlx load")


@pytest.mark.parametrize(
    "setting",
    [
        "max_tokens = 0",
        "temperature = -1.0",
        "top_p = 3.0",
        "memory_budget_gb = 0.0",
        "stream_interval_ms = 1",
    ],
)
def test_invalid_settings_are_refused_and_keep_the_old_value(shell, setting):
    magics = shell.magics_manager.registry["MLXMagics"]
    name = setting.split()[0]
    before = getattr(magics, name)
    run(shell, f"%config MLXMagics.{setting}")
    assert getattr(magics, name) == before


def test_valid_settings_apply(shell):
    run(shell, "%config MLXMagics.max_tokens = 7")
    run(shell, "%config MLXMagics.aliases = {'tiny': 'smollm2'}")
    magics = shell.magics_manager.registry["MLXMagics"]
    assert magics.max_tokens == 7
    assert magics.aliases == {"tiny": "smollm2"}


def test_help_is_the_manual(shell):
    magics = shell.magics_manager.registry["MLXMagics"]
    doc = magics.mlx_cell.__doc__
    for flag in [
        "--model",
        "--max-tokens",
        "--temp",
        "--top-p",
        "--top-k",
        "--min-p",
        "--repetition-penalty",
        "--seed",
        "--system",
        "--raw",
        "--out",
    ]:
        assert flag in doc
    assert "%%mlx" in doc


def test_bench_command_names_the_command_to_run_from_a_clone(shell):
    # The benchmark is not in the package (benchmarks/ in the repository):
    # %mlx bench only says, in one UsageError line, which command runs it.
    for line, command in [
        ("%mlx bench", "python -m benchmarks"),
        (
            "%mlx bench quick overhead prefix",
            "python -m benchmarks --quick --scenarios overhead,prefix",
        ),
    ]:
        with pytest.raises(UsageError) as raised:
            run(shell, line)
        message = str(raised.value)
        assert type(raised.value) is UsageError
        assert "\n" not in message and message.endswith(f"run {command}"), message
        assert "clone of the repository" in message


def test_without_ipywidgets_one_warning_and_plain_text(monkeypatch):
    import sys
    import warnings

    from mlx_magic.display import views

    class FakeKernelShell:
        kernel = object()

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import fails, as if not installed
    monkeypatch.setattr(views, "_warned_about_widgets", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert views.widgets_usable(FakeKernelShell()) is False
        assert views.widgets_usable(FakeKernelShell()) is False
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "pip install ipywidgets" in messages[0]
    assert isinstance(views.view_for(FakeKernelShell()), views.NotebookView)


def test_panel_without_ipywidgets_says_what_to_install(shell, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(UsageError, match="pip install ipywidgets"):
        run(shell, "%mlx panel")
