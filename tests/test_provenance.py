"""Provenance records and %mlx replay: every answer says how it was made, and can be made again."""

import json
import re

import nbformat
import pytest
from IPython.core.error import UsageError

from conftest import make_shell, run

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def replay_shell(tiny_llama):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%config MLXMagics.aliases = {{'tiny': {str(tiny_llama)!r}}}")
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


def test_the_record_names_model_versions_sampler_and_prompt(replay_shell, tiny_llama):
    run(replay_shell, "%%mlx -m tiny -n 8 -s 'Be brief.'\nName a colour.")
    record = replay_shell.user_ns["_mlx"].provenance
    json.dumps(record)  # JSON-ready, for the saved notebook
    assert record["model"]["path"] == str(tiny_llama)
    assert len(record["model"]["weights_sha256"]) == 64
    assert set(record["versions"]) >= {"mlx", "mlx-lm", "mlx-vlm", "mlx_magic", "python"}
    assert record["request"]["prompt"] == "Name a colour."
    assert record["request"]["system"] == "Be brief."
    assert record["request"]["sampling"]["max_tokens"] == 8
    assert len(record["prompt_token_ids_sha256"]) == 64 and record["prompt_tokens"] > 5
    assert len(record["chat_template_sha256"]) == 64
    assert record["answer"]["token_ids"] == [t.id for t in replay_shell.user_ns["_mlx"].tokens]


def test_a_sampled_answer_without_a_seed_gets_one_and_replays_exactly(replay_shell, capsys):
    run(replay_shell, "%%mlx -m tiny -n 24 --temp 1.0\nOnce upon a time")
    first = replay_shell.user_ns["_mlx"]
    seed = first.provenance["request"]["sampling"]["seed"]
    assert isinstance(seed, int)
    capsys.readouterr()
    run(replay_shell, "%mlx replay")
    assert "Reproduced token for token (24 tokens)." in capsys.readouterr().out
    assert [t.id for t in replay_shell.user_ns["_mlx_replay"].tokens] == [
        t.id for t in first.tokens
    ]
    assert replay_shell.user_ns["_mlx"] is first  # replay leaves _mlx alone


def test_a_greedy_answer_replays_from_a_named_variable(replay_shell, capsys):
    run(replay_shell, "%%mlx -m tiny -n 16 -o story\nOnce upon a time")
    capsys.readouterr()
    run(replay_shell, "%mlx replay story")
    assert "Reproduced token for token (16 tokens)." in capsys.readouterr().out


def test_replay_says_where_two_answers_part(replay_shell, capsys):
    run(replay_shell, "%%mlx -m tiny -n 20 --temp 1.0 -o varied\nOnce upon a time")
    record = replay_shell.user_ns["varied"].provenance
    record["request"]["sampling"]["seed"] += 1  # another seed: another story
    capsys.readouterr()
    run(replay_shell, "%mlx replay varied")
    out = capsys.readouterr().out
    assert "Parted at token " in out and " the replay " in out


def saved_cell(source, result):
    """A code cell as a notebook saves it: the streamed answer, and the footer
    with the record as the footer's metadata keeps it."""
    from mlx_magic.vocabulary.provenance import record_to_save

    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=result.text),
        nbformat.v4.new_output(
            "display_data",
            data={"text/plain": "[footer]"},
            metadata={"mlx_magic": {"provenance": record_to_save(result.provenance)}},
        ),
    ]
    return cell


def test_replay_from_a_saved_notebook(replay_shell, tmp_path, capsys):
    source = "%%mlx -m tiny -n 10 --temp 1.0\nOnce upon a time"
    run(replay_shell, source)
    result = replay_shell.user_ns["_mlx"]
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("%load_ext mlx_magic"), saved_cell(source, result)]
    saved = notebook.cells[1].outputs[1].metadata["mlx_magic"]["provenance"]["answer"]
    assert "token_ids" not in saved and "text" not in saved  # hashes, not the answer again
    path = tmp_path / "saved.ipynb"
    nbformat.write(notebook, path)
    capsys.readouterr()
    run(replay_shell, f"%mlx replay {path}:1")
    assert "Reproduced token for token (10 tokens)." in capsys.readouterr().out
    # Another seed in the saved record: the replay parts from the saved text.
    notebook.cells[1].outputs[1].metadata["mlx_magic"]["provenance"]["request"]["sampling"][
        "seed"
    ] += 1
    nbformat.write(notebook, path)
    run(replay_shell, f"%mlx replay {path}:1")
    out = capsys.readouterr().out
    assert re.search(r"Parted at 10 vs \d+ tokens: after", out) and " the replay " in out


@pytest.mark.parametrize(
    "target, message",
    [
        ("nothing_here", "holds no answer with a provenance record"),
        ("/no/such.ipynb:0", "%mlx replay /no/such.ipynb:0: "),
        ("a b", "Usage: %mlx replay"),
    ],
)
def test_replay_mistakes_are_one_line(replay_shell, target, message):
    with pytest.raises(UsageError, match=message):
        run(replay_shell, f"%mlx replay {target}")


def test_map_rows_carry_provenance(replay_shell):
    run(replay_shell, "words = ['sun', 'moon']")
    run(replay_shell, "%%mlx --map words -m tiny -n 4\nSay {item}.")
    table = replay_shell.user_ns["_mlx"]
    assert [r.provenance["request"]["prompt"] for r in table.results] == ["Say sun.", "Say moon."]
