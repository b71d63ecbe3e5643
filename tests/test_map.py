"""--map: one prompt over many items, batched with mlx-lm's BatchGenerator, as a table."""

import _thread

import numpy as np
import pytest
from IPython.core.error import UsageError
from PIL import Image

from conftest import make_shell, run

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def map_shell(tiny_llama):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%config MLXMagics.aliases = {{'tiny': {str(tiny_llama)!r}}}")
    run(shell, "import pandas as pd")
    run(shell, "cities = ['Paris', 'Rome', 'Berlin', 'Madrid', 'Lisbon', 'Vienna']")
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


def test_batched_greedy_answers_are_those_of_one_at_a_time(map_shell):
    cell = "Which country is {item} in? Answer in one word."
    run(map_shell, f"%%mlx --map cities -n 6 --batch-size 4 -o batched\n{cell}")
    run(map_shell, f"%%mlx --map cities -n 6 --batch-size 1 -o alone\n{cell}")
    batched, alone = map_shell.user_ns["batched"], map_shell.user_ns["alone"]
    assert batched.batch_size == 4 and alone.batch_size == 1
    for a, b in zip(batched.results, alone.results):
        assert [t.id for t in a.tokens] == [t.id for t in b.tokens]
        assert a.stats.batch_size == 4 and b.stats.batch_size == 1
    table = batched.table
    assert list(table["item"]) == ["Paris", "Rome", "Berlin", "Madrid", "Lisbon", "Vienna"]
    assert list(table.columns) == [
        "item",
        "answer",
        "tokens",
        "time_s",
        "finish_reason",
        "error",
        "provenance",
    ]
    # The template's shared beginning was read once for all of them.
    assert all(r.stats.cached_prompt_tokens > 10 for r in batched.results)
    assert map_shell.user_ns["_mlx"] is alone


def test_a_dataframe_gives_its_rows_and_columns(map_shell):
    run(
        map_shell,
        "animals = pd.DataFrame({'name': ['ant', 'owl'], 'legs': [6, 2]}, index=['a', 'o'])",
    )
    run(
        map_shell,
        "%%mlx --map animals -m tiny -n 3\nA {row.name} has {row.legs} legs; {item[name]}.",
    )
    result = map_shell.user_ns["_mlx"]
    table = result.table
    assert list(table.index) == ["a", "o"]
    assert list(table["name"]) == ["ant", "owl"] and list(table["legs"]) == [6, 2]
    assert result.results[0].prompt == "A ant has 6 legs; ant."
    run(map_shell, "squares = (n * n for n in range(3))")
    run(map_shell, "%%mlx --map squares -m tiny -n 2\nWhat is {item}?")
    assert [r.prompt for r in map_shell.user_ns["_mlx"].results] == [
        "What is 0?",
        "What is 1?",
        "What is 4?",
    ]
    run(map_shell, "capitals = {'France': 'Paris', 'Italy': 'Rome'}")
    run(map_shell, "%%mlx --map capitals -m tiny -n 2\nIs {item} the capital of {key}?")
    table = map_shell.user_ns["_mlx"].table
    assert list(table["key"]) == ["France", "Italy"]
    assert map_shell.user_ns["_mlx"].results[1].prompt == "Is Rome the capital of Italy?"


@pytest.mark.parametrize(
    "cell, message",
    [
        ("%%mlx --map nowhere -m tiny\nSay {item}.", "no variable named 'nowhere'"),
        ("%%mlx --map number -m tiny\nSay {item}.", "a int cannot be iterated"),
        ("%%mlx --map word -m tiny\nSay {item}.", "is a str, not a collection"),
        ("%%mlx --map animals -m tiny\nSay {row.colour}.", "no column 'colour' .it has name, legs"),
        ("%%mlx --map cities -m tiny --batch-size 0\nSay {item}.", "--batch-size must be 1"),
        ("%%mlx --map empty -m tiny\nSay {item}.", "it is empty"),
        ("%%mlx --batch-size 4 -m tiny\nSay hi.", "are for --map ITEMS"),
        ("%%mlx --map cities --resume -m tiny -o fresh\nSay {item}.", "holds no --map table"),
        ("%%mlx --map cities -m tiny --probs\nSay {item}.", "--probs shows one answer"),
    ],
)
def test_bad_map_input_is_one_line_and_changes_nothing(map_shell, cell, message):
    run(map_shell, "number = 3; word = 'abc'; empty = []; fresh = None")
    run(map_shell, "animals = pd.DataFrame({'name': ['ant', 'owl'], 'legs': [6, 2]})")
    run(map_shell, "%%mlx -m tiny -n 2\nHello")
    before = map_shell.user_ns["_mlx"]
    with pytest.raises(UsageError, match=message):
        run(map_shell, cell)
    assert map_shell.user_ns["_mlx"] is before


def test_an_interrupt_keeps_the_finished_rows_and_resume_finishes_the_rest(map_shell):
    run(map_shell, "many = list(range(24))")
    finished = []

    # Interrupt once the first rows are in (the tiny model answers ~1,000 tok/s).
    from mlx_magic.display import map_view

    original = map_view.MapProgress.item_done

    def counting(self, row, label):
        original(self, row, label)
        finished.append(label)
        if len(finished) == 5:
            _thread.interrupt_main()

    map_view.MapProgress.item_done = counting
    try:
        with pytest.raises(KeyboardInterrupt):
            run(
                map_shell,
                "%%mlx --map many -m tiny -n 200 --batch-size 2 -o partial\nCount to {item}.",
            )
    finally:
        map_view.MapProgress.item_done = original
    partial = map_shell.user_ns["partial"]
    assert map_shell.user_ns["_mlx"] is partial
    reasons = [row["finish_reason"] for row in partial.rows]
    done = [r for r in reasons if r in ("stop", "length")]
    assert 5 <= len(done) < 24
    assert "not run" in reasons
    assert set(reasons) <= {"stop", "length", "cancelled", "not run"}
    assert "not run" in partial.summary
    kept = {i: partial.rows[i]["answer"] for i, r in enumerate(reasons) if r in ("stop", "length")}
    run(
        map_shell,
        "%%mlx --map many -m tiny -n 200 --batch-size 2 -o partial --resume\nCount to {item}.",
    )
    resumed = map_shell.user_ns["partial"]
    assert all(row["finish_reason"] in ("stop", "length") for row in resumed.rows)
    assert {i: resumed.rows[i]["answer"] for i in kept} == kept  # not run again


def test_without_pandas_the_table_is_a_list_of_dicts(map_shell, monkeypatch):
    run(map_shell, "%%mlx --map cities -m tiny -n 2\nSay {item}.")
    result = map_shell.user_ns["_mlx"]
    monkeypatch.setitem(__import__("sys").modules, "pandas", None)
    table = result.table
    assert isinstance(table, list) and table[0]["item"] == "Paris" and "answer" in table[0]


@pytest.mark.vision
def test_vision_map_over_images_with_a_failing_item(tiny_vlm, tmp_path):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        run(shell, f"%config MLXMagics.default_vision_model = {str(tiny_vlm)!r}")
        for index, colour in enumerate(["red", "green", "blue"]):
            Image.new("RGB", (64, 48), colour).save(tmp_path / f"shot{index}.png")
        (tmp_path / "shot3.png").write_bytes(b"not an image")
        Image.new("RGB", (96, 80), "white").save(tmp_path / "shot4.png")  # another size
        cell = f"%%mlx_vision --map {tmp_path}/shot*.png -i {{item}} -n 6"
        run(shell, f"{cell} --batch-size 3 -o batched\nWhat colour?")
        result = shell.user_ns["batched"]
        assert len(result) == 5
        assert [row["finish_reason"] for row in result.rows[:3]] != ["failed"] * 3
        bad = result.rows[3]
        assert bad["finish_reason"] == "failed" and "not an image" in bad["error"]
        assert "1 failed" in result.summary
        # mlx-vlm's batch: greedy answers token for token those of one at a time.
        run(shell, f"{cell} --batch-size 1 -o alone\nWhat colour?")
        alone = shell.user_ns["alone"]
        assert result.batch_size == 3 and alone.batch_size == 1
        for position in (0, 1, 2, 4):
            batched_answer, single = result.results[position], alone.results[position]
            assert [t.id for t in batched_answer.tokens] == [t.id for t in single.tokens]
            assert batched_answer.stats.generation_tokens == 6
            assert batched_answer.stats.image_tokens == single.stats.image_tokens > 0
        assert result.results[4].stats.prompt_tokens > result.results[0].stats.prompt_tokens
        shell.user_ns["pictures"] = [
            Image.new("RGB", (40, 40), "red"),
            (np.random.default_rng(0).random((30, 50, 3)) * 255).astype("uint8"),
        ]
        run(shell, "%%mlx_vision --map pictures -i {item} -n 2\nDescribe.")
        table = shell.user_ns["_mlx"].table
        assert list(table["item"]) == ["<Image>", "<ndarray>"]
        assert all(r.stats.prompt_tokens > 10 for r in shell.user_ns["_mlx"].results)
    finally:
        shell.extension_manager.unload_extension("mlx_magic")


def test_a_background_map_is_a_job_that_waits_and_lists(map_shell, capsys):
    run(map_shell, "%%mlx --map cities -m tiny -n 6 -b -o in_back\nSay {item}.")
    assert "[background job " in capsys.readouterr().out
    run(map_shell, "%mlx wait")
    run(map_shell, "%mlx jobs")
    listing = capsys.readouterr().out.splitlines()[-1].split()
    assert listing[1:3] == ["done", "--map"]
    table = map_shell.user_ns["in_back"]
    assert len(table.rows) == 6 and not table.unfinished()
    assert int(listing[4]) == sum(r.stats.generation_tokens for r in table.results)


def test_cancelling_a_background_map_keeps_its_finished_rows(map_shell, capsys):
    run(map_shell, "many = list(range(24))")
    run(map_shell, "%%mlx --map many -m tiny -n 200 --batch-size 2 -b -o stopped\nCount to {item}.")
    job_id = capsys.readouterr().out.split("[background job ")[1].split(":")[0]
    run(map_shell, f"%mlx cancel {job_id}")
    run(map_shell, f"%mlx wait {job_id}")
    run(map_shell, "%mlx jobs")
    line = [row for row in capsys.readouterr().out.splitlines() if row.split()[:1] == [job_id]]
    assert line and line[0].split()[1] == "cancelled"
    table = map_shell.user_ns["stopped"]
    assert 0 < len(table.unfinished()) <= 24  # the rest is marked not run, for --resume


@pytest.mark.vision
def test_an_interrupted_vision_map_keeps_its_rows_and_the_model_answers_after(tiny_vlm):
    from mlx_magic.display import map_view

    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    original = map_view.MapProgress.item_done
    finished = []

    def counting(self, row, label):
        original(self, row, label)
        finished.append(label)
        if len(finished) == 2:
            _thread.interrupt_main()

    try:
        run(shell, f"%config MLXMagics.default_vision_model = {str(tiny_vlm)!r}")
        shell.user_ns["shots"] = [Image.new("RGB", (40 + 8 * i, 40), "red") for i in range(10)]
        map_view.MapProgress.item_done = counting
        try:
            with pytest.raises(KeyboardInterrupt):
                # Different lengths: the first two end early, the rest run long.
                run(shell, "%%mlx_vision --map shots -i {item} -n 200 --batch-size 2\nSay.")
        finally:
            map_view.MapProgress.item_done = original
        table = shell.user_ns["_mlx"]
        assert table.seconds < 20  # the interrupt is not held up by the finished items
        reasons = [row["finish_reason"] for row in table.rows]
        assert 2 <= sum(r in ("stop", "length") for r in reasons) < 10
        assert "not run" in reasons
        run(shell, "first = shots[0]")
        run(shell, "%%mlx_vision -i first -n 3\nSay.")
        assert shell.user_ns["_mlx"].stats.generation_tokens == 3
    finally:
        shell.extension_manager.unload_extension("mlx_magic")


@pytest.mark.vision
def test_a_picture_the_vision_tower_rejects_is_one_failed_row(tiny_vlm, monkeypatch):
    from mlx_vlm.models.qwen2_vl import Model

    original = Model.get_input_embeddings

    def blue_fails(self, input_ids=None, pixel_values=None, **kwargs):
        # Qwen2-VL's patches hold the red channel first: a blue picture's is low.
        red = pixel_values[:, : pixel_values.shape[1] // 3].mean(axis=1)
        if (red < 0).any().item():
            raise ValueError("cannot take these pixels")
        return original(self, input_ids, pixel_values, **kwargs)

    monkeypatch.setattr(Model, "get_input_embeddings", blue_fails)
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        run(shell, f"%config MLXMagics.default_vision_model = {str(tiny_vlm)!r}")
        # The blue one shares the vision tower's call with the first: that call
        # fails, and the items are then embedded one by one.
        colours = ["red", "blue", "red", "red"]
        shell.user_ns["shots"] = [Image.new("RGB", (40, 40), colour) for colour in colours]
        run(shell, "%%mlx_vision --map shots -i {item} -n 3 --batch-size 2\nSay.")
        rows = shell.user_ns["_mlx"].rows
        assert [row["finish_reason"] == "failed" for row in rows] == [False, True, False, False]
        assert "cannot take these pixels" in rows[1]["error"]
    finally:
        shell.extension_manager.unload_extension("mlx_magic")
