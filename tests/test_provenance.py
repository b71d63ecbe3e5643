"""Provenance records and %mlx replay: every answer says how it was made, and can be made again."""

import dataclasses
import json
import re

import nbformat
import pytest
from IPython.core.error import UsageError

from conftest import magics_of, make_shell, run

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


def _edited(record, where, value):
    """A deep copy of ``record`` with the value at the path ``where`` replaced."""
    import copy

    edited = copy.deepcopy(record)
    holder = edited
    for key in where[:-1]:
        holder = holder[key]
    holder[where[-1]] = value
    return edited


@pytest.mark.parametrize(
    "where, value, words",
    [
        (("request", "sampling", "temperature"), -5, "temperature must be 0 or more, not -5"),
        (("request", "sampling", "max_tokens"), "x", "max_tokens must be a positive integer"),
        (("request", "sampling", "top_p"), 7, "top_p must be between 0 and 1"),
        (("request", "model", "kind"), "audio", "of no kind mlx_magic knows"),
        (("request", "prompt"), ["not", "text"], "prompt is not text"),
        (("request", "num_draft_tokens"), 0, "num_draft_tokens must be 1 to 64"),
        (("request", "continue_ids"), ["a"], "continue_ids must be token ids"),
        (("request",), "nonsense", "not a provenance record"),
    ],
)
def test_a_hostile_record_is_refused_in_one_line_before_anything_runs(
    replay_shell, where, value, words
):
    run(replay_shell, "%%mlx -m tiny -n 3 -o made\nName a colour.")
    replay_shell.user_ns["made"].provenance = _edited(
        replay_shell.user_ns["made"].provenance, where, value
    )
    generations = len(magics_of(replay_shell).session.rows)
    with pytest.raises(UsageError) as caught:
        run(replay_shell, "%mlx replay made")
    assert type(caught.value) is UsageError and "\n" not in str(caught.value)
    assert words in str(caught.value)
    assert len(magics_of(replay_shell).session.rows) == generations  # nothing ran


def test_a_record_cannot_make_a_text_model_vision_its_own_draft_or_trust_code(
    replay_shell, tiny_llama
):
    run(replay_shell, "%%mlx -m tiny -n 3 -o made\nName a colour.")
    record = replay_shell.user_ns["made"].provenance
    as_vision = _edited(record, ("request", "model", "kind"), "vision")
    own_draft = _edited(record, ("request", "draft"), dict(record["request"]["model"]))
    for edited, words in (
        (as_vision, "is a text model"),
        (own_draft, "its draft is the model itself"),
    ):
        replay_shell.user_ns["made"].provenance = edited
        with pytest.raises(UsageError, match=words):
            run(replay_shell, "%mlx replay made")
    from mlx_magic.magics.provenance import request_from_record

    trusting = _edited(record, ("request", "model", "trust_remote_code"), True)
    assert request_from_record(trusting).model.trust_remote_code is False


def test_a_replay_records_the_thinking_budget_and_a_branch_point(replay_shell):
    from mlx_magic.magics.provenance import request_from_record

    run(replay_shell, "%%mlx -m tiny -n 6 --probs 3 -o made\nName a colour.")
    run(replay_shell, "%mlx branch 3 #2 made")
    record = replay_shell.user_ns["made"].branches[-1].provenance
    again = request_from_record(record)
    assert again.continue_ids == tuple(record["request"]["continue_ids"])
    assert len(again.continue_ids) == 3  # the first 2 tokens and the chosen one
    from mlx_magic.vocabulary.provenance import request_record

    thinking = dataclasses.replace(again, think=True, think_budget=5, continue_ids=())
    back = request_from_record({"request": request_record(thinking)})
    assert (back.think, back.think_budget) == (True, 5)


def test_a_hand_edited_notebook_is_one_line(replay_shell, tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [{"cell_type": "code", "outputs": 5}], "nbformat": 4}')
    with pytest.raises(UsageError) as caught:
        run(replay_shell, f"%mlx replay {broken}:0")
    assert type(caught.value) is UsageError and "\n" not in str(caught.value)
