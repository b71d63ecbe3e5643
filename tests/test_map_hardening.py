"""--map against a hostile new user: every mistake is one line before anything
runs, an item that cannot run is its own row, and an interrupt at any point
ends as the one-line "stopped" outcome with the table in _mlx."""

import threading

import pytest
from IPython.core.error import UsageError
from PIL import Image

from mlx_magic.display.map_result import MLXMapResult
from mlx_magic.errors import GenerationInterrupted

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
        # 1. An --out name code could not read back.
        ("%%mlx --map cities -m tiny -n 2 -o class\nSay {item}.", "not 'class'"),
        ("%%mlx --map cities -m tiny -n 2 -o 1x\nSay {item}.", "not '1x'"),
        # 2. -b: the template and the model are checked in the cell, not in the job.
        (
            "%%mlx --map animals -m tiny -n 2 -b\nSay {row.colour}.",
            "no column 'colour' .it has name, legs",
        ),
        ("%%mlx --map cities -m no_such_model -n 2 -b\nSay {item}.", "No model folder or file"),
        ("%%mlx --map cities -m tiny -n 2 -b\n  ", "The cell is empty"),
        # 3. A generator that raises while it is read.
        (
            "%%mlx --map items_that_fail -m tiny -n 2\nSay {item}.",
            "items_that_fail: reading item 1 raised RuntimeError: the file went away",
        ),
        # 6. --no-interpolate would leave {item} as it is.
        (
            "%%mlx --map cities -m tiny -n 2 --no-interpolate\nSay {item}.",
            "--map fills {item} into the prompt and --no-interpolate",
        ),
        # 7. %%mlx_vision --map without -i: the items would never be images.
        ("%%mlx_vision --map cities -n 2\nDescribe {item}.", "add -i {item}"),
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


def test_a_template_error_says_nothing_of_no_interpolate_which_map_refuses(map_shell):
    with pytest.raises(UsageError) as raised:
        run(map_shell, "%%mlx --map cities -m tiny -n 2\nSay {item} in {nowhere}.")
    assert "{nowhere} in the prompt names no variable" in str(raised.value)
    assert "--no-interpolate" not in str(raised.value)


def test_a_background_map_reads_a_generator_once(map_shell):
    # The cell checks the items; the job must not read the generator again (it is used up).
    run(map_shell, "squares = (n * n for n in range(3))")
    run(map_shell, "%%mlx --map squares -m tiny -n 2 -b -o squared\nWhat is {item}?")
    run(map_shell, "%mlx wait")
    table = map_shell.user_ns["squared"]
    assert [r.prompt for r in table.results] == ["What is 0?", "What is 1?", "What is 4?"]


def test_resume_after_a_finished_run_says_nothing_is_left(map_shell, capsys):
    run(map_shell, "%%mlx --map cities -m tiny -n 2 -o finished\nSay {item}.")
    finished = map_shell.user_ns["finished"]
    run(map_shell, "%%mlx -m tiny -n 2\nHello")
    capsys.readouterr()
    run(map_shell, "%%mlx --map cities -m tiny -n 2 -o finished --resume\nSay {item}.")
    assert "nothing left to run" in capsys.readouterr().out
    assert map_shell.user_ns["finished"] is finished
    assert map_shell.user_ns["_mlx"] is finished
    jobs = len(magics_of(map_shell).session.jobs.all())
    run(map_shell, "%%mlx --map cities -m tiny -n 2 -o finished --resume -b\nSay {item}.")
    assert "nothing left to run" in capsys.readouterr().out
    assert len(magics_of(map_shell).session.jobs.all()) == jobs  # no job for nothing


def test_a_lone_surrogate_fails_its_own_row_and_the_table_still_shows(map_shell):
    # The first item's too: the flags and the model are fine, only its text is not.
    map_shell.user_ns["broken"] = ["x\ud800", "Rome", "y\udcffz"]
    run(map_shell, "%%mlx --map broken -m tiny -n 2\nSay {item}.")
    result = map_shell.user_ns["_mlx"]
    reasons = [row["finish_reason"] for row in result.rows]
    assert reasons[0] == reasons[2] == "failed" and reasons[1] in ("stop", "length")
    assert "lone surrogate" in result.rows[0]["error"]
    assert "'\\ud800' at character 5" in result.rows[0]["error"]
    table = result.table  # pandas refuses a lone surrogate: the row keeps it escaped
    assert list(table["item"]) == ["x\\ud800", "Rome", "y\\udcffz"]
    for shown in (result._repr_html_(), map_shell.display_formatter.format(result)[0]):
        str(shown).encode("utf-8")  # what a notebook's message must carry


def test_a_lone_surrogate_in_a_dict_key_is_kept_escaped_in_the_index(map_shell):
    map_shell.user_ns["keyed"] = {"fine": "Paris", "bad\ud800": "Rome"}
    run(map_shell, "%%mlx --map keyed -m tiny -n 2\nIs {item} in {key}?")
    result = map_shell.user_ns["_mlx"]
    assert result.rows[1]["finish_reason"] == "failed"
    assert list(result.table.index) == ["fine", "bad\\ud800"]


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


class InterruptsOn:
    """An item whose ``{item}`` is interrupted (as the stop button would) at one position."""

    def __init__(self, position, at):
        self.position, self.at = position, at

    def __format__(self, spec):
        if self.position == self.at:
            raise KeyboardInterrupt
        return f"number {self.position}"


def _stopped(shell, cell):
    """Run ``cell``; the GenerationInterrupted it ended with."""
    result = shell.run_cell(cell)
    error = result.error_in_exec
    assert isinstance(error, GenerationInterrupted), repr(error)
    assert len(error._render_traceback_()) == 1  # one line, no traceback
    return error


def test_an_interrupt_while_ten_thousand_prompts_are_filled_in_keeps_the_table(map_shell):
    map_shell.user_ns["numbers"] = [InterruptsOn(i, at=5_000) for i in range(10_000)]
    error = _stopped(map_shell, "%%mlx --map numbers -m tiny -n 2 -o numbered\nSay {item}.")
    assert "--map stopped: 0 of 10000 items done; the table is in _mlx" in str(error)
    table = map_shell.user_ns["_mlx"]
    assert isinstance(table, MLXMapResult) and map_shell.user_ns["numbered"] is table
    assert len(table) == 10_000 and len(table.unfinished()) == 10_000
    assert {row["finish_reason"] for row in table.rows} == {"not run"}


def test_an_interrupt_while_the_items_are_prepared_keeps_the_table_and_resumes(
    map_shell, monkeypatch
):
    from mlx_magic.magics import map_run

    original = map_run.prepare

    def interrupted_at_rome(session, options, text, *args, **kwargs):
        if text.strip() == "Say Rome.":
            raise KeyboardInterrupt  # as the stop button, while item 1 is prepared
        return original(session, options, text, *args, **kwargs)

    monkeypatch.setattr(map_run, "prepare", interrupted_at_rome)
    error = _stopped(map_shell, "%%mlx --map cities -m tiny -n 2 -o halfway\nSay {item}.")
    assert "--map stopped: 0 of 3 items done" in str(error)
    table = map_shell.user_ns["halfway"]
    assert map_shell.user_ns["_mlx"] is table
    assert [row["finish_reason"] for row in table.rows] == ["not run"] * 3
    monkeypatch.setattr(map_run, "prepare", original)
    run(map_shell, "%%mlx --map cities -m tiny -n 2 -o halfway --resume\nSay {item}.")
    resumed = map_shell.user_ns["halfway"]
    assert all(row["finish_reason"] in ("stop", "length") for row in resumed.rows)


def test_cancelling_a_background_map_while_its_items_are_prepared(map_shell, monkeypatch):
    from mlx_magic.magics import map_run

    original = map_run.prepare
    preparing, cancelled = threading.Event(), threading.Event()
    prepared = []

    def held_at_rome(session, options, text, *args, **kwargs):
        prepared.append(text.strip())
        if text.strip() == "Say Rome.":  # on the job's thread
            preparing.set()
            assert cancelled.wait(60)
        return original(session, options, text, *args, **kwargs)

    monkeypatch.setattr(map_run, "prepare", held_at_rome)
    run(map_shell, "%%mlx --map cities -m tiny -n 2 -b -o held\nSay {item}.")
    entry = magics_of(map_shell).session.jobs.all()[-1]
    assert preparing.wait(60)
    run(map_shell, f"%mlx cancel {entry.id}")
    cancelled.set()
    run(map_shell, f"%mlx wait {entry.id}")
    assert entry.state == "cancelled"
    table = map_shell.user_ns["held"]
    # Nothing is sent before every item is prepared: all three are left for --resume.
    assert [row["finish_reason"] for row in table.rows] == ["not run"] * 3
    assert len(table.unfinished()) == 3
    # The cancel stops the preparing too (10,000 images are not all read first).
    assert "Say Berlin." not in prepared


@pytest.mark.vision
def test_a_region_outside_an_items_image_fails_that_row_in_one_line(tiny_vlm):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        run(shell, f"%config MLXMagics.default_vision_model = {str(tiny_vlm)!r}")
        shell.user_ns["shots"] = [Image.new("RGB", (40, 40), "red"), Image.new("RGB", (200, 200))]
        run(shell, "%%mlx_vision --map shots -i {item} -n 2 --region 0,0,100,100\nSay.")
        rows = shell.user_ns["_mlx"].rows
        assert rows[0]["finish_reason"] == "failed" and rows[1]["finish_reason"] != "failed"
        assert rows[0]["error"] == (
            "--region 0,0,100,100 is outside '{item}', which is 40×40: keep 0 ≤ x ≤ 40 and "
            "0 ≤ y ≤ 40"
        )
        # Outside every item's image: every row says so, and nothing is sent.
        run(shell, "%%mlx_vision --map shots -i {item} -n 2 --region 0,0,500,500\nSay.")
        result = shell.user_ns["_mlx"]
        assert [row["finish_reason"] for row in result.rows] == ["failed", "failed"]
        assert all("is outside '{item}'" in row["error"] for row in result.rows)
        assert "2 failed" in result.summary
    finally:
        shell.extension_manager.unload_extension("mlx_magic")


def test_map_answers_count_in_mlx_stats(map_shell, capsys):
    rows = magics_of(map_shell).session.rows
    before = len(rows)
    run(map_shell, "%%mlx -m tiny --map cities -n 3\nSay {item}.")
    assert len(rows) == before + 3
    assert [row["finish"] for row in rows[-3:]] == ["length"] * 3
    capsys.readouterr()
    run(map_shell, "%mlx stats")
    assert f"{before + 3} generations" in capsys.readouterr().out


def test_a_finished_map_run_keeps_no_job_alive(map_shell):
    # The table keeps the answers; the runtime kept every job of the run (their
    # queues and events: ~100 MB for 10,000 items) until the next request came.
    import gc

    from mlx_magic.vocabulary.job import Job

    run(map_shell, "marked = [f'kept-or-freed {i}' for i in range(24)]")
    run(map_shell, "%%mlx -m tiny --map marked -n 2\nSay {item}.")
    gc.collect()
    alive = [
        job
        for job in gc.get_objects()
        if isinstance(job, Job) and "kept-or-freed" in job.request.prompt
    ]
    assert alive == []


def test_items_are_prepared_a_chunk_at_a_time_and_answer_as_in_one_chunk(map_shell, monkeypatch):
    # 10,000 items showed their first row after 35 s when every item was
    # prepared before the first was sent; now rows come chunk by chunk.
    from mlx_magic.magics import map_run

    map_shell.user_ns["five"] = ["Paris", "Rome", "Berlin", "Oslo", "Lima"]
    cell = "%%mlx --map five -m tiny -n 3 --seed 7 -o {name}\nSay {{item}}."
    run(map_shell, cell.format(name="whole"))
    original, done_before = map_run._prepare_items, []

    def watched(session, plan, positions, *args, **kwargs):
        done = sum(row["finish_reason"] != "not run" for row in plan.result.rows)
        done_before.append((positions, done))
        return original(session, plan, positions, *args, **kwargs)

    monkeypatch.setattr(map_run, "_prepare_items", watched)
    monkeypatch.setattr(map_run, "PREPARED_AT_ONCE", 2)
    run(map_shell, cell.format(name="chunked"))
    chunked, whole = map_shell.user_ns["chunked"], map_shell.user_ns["whole"]
    assert [r["answer"] for r in chunked.rows] == [r["answer"] for r in whole.rows]
    # Each chunk is prepared once the one before it has answered.
    assert done_before == [([0, 1], 0), ([2, 3], 2), ([4], 4)]
