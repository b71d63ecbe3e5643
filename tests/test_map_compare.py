"""--map with several models: every item through every model, one table,
scores side by side; on the real batched path with two tiny models.

The answers are scripted per model and item (``forced_batch_answers``), so
the table, the scores and the disagreements are known.
"""

import pytest
from IPython.core.error import UsageError

from mlx_magic.display.compare_result import MLXCompareResult
from mlx_magic.errors import GenerationInterrupted
from mlx_magic.testing.tiny_models import build_tiny_llama

from conftest import forced_batch_answers, make_shell, run

pytestmark = pytest.mark.model

#: Each model's scripted answer per city (the prompt ends with the city).
ANSWERS = {
    "a": {"Paris": "France", "Rome": "Italy", "Berlin": "Germany"},
    "b": {"Paris": "France", "Rome": "Spain", "Berlin": "Austria"},
}


def answer_for(request):
    return ANSWERS[request.model.name][request.prompt.split()[-1]]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    return build_tiny_llama(folder / "a"), build_tiny_llama(folder / "b")


@pytest.fixture
def shell(two_models):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    a, b = two_models
    run(shell, f"%config MLXMagics.aliases = {{'a': {str(a)!r}, 'b': {str(b)!r}}}")
    run(
        shell,
        "import pandas as pd\n"
        "towns = pd.DataFrame({'city': ['Paris', 'Rome', 'Berlin'],"
        " 'country': ['France', 'Italy', 'Germany']})",
    )
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


def compared(shell, line="", cell="Country of {row.city}"):
    with forced_batch_answers(answer_for):
        run(shell, f"%%mlx -m a -m b -n 8 --map towns {line}\n{cell}")
    return shell.user_ns["_mlx"]


def test_every_item_through_every_model_is_one_table_with_scores(shell, capsys):
    result = compared(shell, "--score country -o both")
    assert isinstance(result, MLXCompareResult) and shell.user_ns["both"] is result
    assert result.labels == ["a", "b"]
    table = result.table
    assert list(table.columns[:2]) == ["city", "country"]
    assert list(table["answer · a"]) == ["France", "Italy", "Germany"]
    assert list(table["answer · b"]) == ["France", "Spain", "Austria"]
    assert list(table["score · a"]) == [1.0, 1.0, 1.0]
    assert list(table["score · b"]) == [1.0, 0.0, 0.0]
    scores = result.scores
    assert scores["a"].mean == 1.0 and scores["b"].mean == pytest.approx(1 / 3)
    assert scores["b"].low <= scores["b"].mean <= scores["b"].high
    assert result.disagreements == [1, 2]
    out = capsys.readouterr().out
    assert "a: score (exact vs country): mean 1.000" in out
    assert "the models disagree on 2 items" in out
    # Each model decoded its items batched, and keeps its own full table.
    assert all(run.results[0].stats.batch_size > 1 for run in result.runs.values())
    assert list(result.runs["b"].table["answer"]) == ["France", "Spain", "Austria"]
    assert "3 items × 2 models · 6 answers" in result.summary


def test_without_scores_the_answers_say_where_the_models_disagree(shell):
    result = compared(shell)
    assert all(score is None for score in result.scores.values())
    assert result.disagreements == [1, 2]
    assert "answer · a" in result._repr_html_()


def test_a_temperature_sweep_labels_its_columns(shell):
    with forced_batch_answers(lambda request: "France"):
        run(shell, "%%mlx -m a --temp 0 --temp 0.7 -n 4 --map towns\nCountry of {row.city}")
    result = shell.user_ns["_mlx"]
    assert result.labels == ["a · temp 0", "a · temp 0.7"]
    assert result.disagreements == []


def test_an_interrupt_keeps_finished_answers_and_resume_fills_the_rest(shell, monkeypatch):
    from mlx_magic.magics import map_run

    original = map_run.run_map
    calls = []

    def second_model_interrupted(session, plan, **kwargs):
        calls.append(plan)
        if len(calls) == 2:
            raise GenerationInterrupted("stopped")
        return original(session, plan, **kwargs)

    from mlx_magic.magics import map_compare

    monkeypatch.setattr(map_compare, "run_map", second_model_interrupted)
    with pytest.raises(GenerationInterrupted, match="3 of 6 answers left"):
        with forced_batch_answers(answer_for):
            shell.run_cell_magic("mlx", "-m a -m b -n 8 --map towns", "Country of {row.city}")
    kept = shell.user_ns["_mlx"]
    assert kept.unfinished() == {"a": [], "b": [0, 1, 2]}
    monkeypatch.setattr(map_compare, "run_map", original)
    resumed = compared(shell, "--resume")
    assert resumed.unfinished() == {"a": [], "b": []}
    # Only the unfinished model ran again: the first one's answers are the same objects.
    assert resumed.runs["a"] is kept.runs["a"]
    assert list(resumed.table["answer · b"]) == ["France", "Spain", "Austria"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("-m a -m a", "two of the models or settings are the same"),
        ("-m a -m b --resume", "holds no --map table of several models"),
        ("-m a -m b --score nope", "nope"),
        ("-m a -m nowhere", "nowhere"),
    ],
)
def test_a_mistake_is_one_line_and_changes_nothing(shell, line, message):
    run(shell, "%%mlx -m a -n 2\nHello")
    before = shell.user_ns["_mlx"]
    with pytest.raises(UsageError, match=message):
        run(shell, f"%%mlx {line} -n 4 --map towns\nCountry of {{row.city}}")
    assert shell.user_ns["_mlx"] is before


def test_in_the_background_it_is_one_job_and_the_table_lands_in_out(shell, capsys):
    with forced_batch_answers(answer_for):
        run(shell, "%%mlx -m a -m b -n 8 --map towns -b -o later\nCountry of {row.city}")
        assert "background job" in capsys.readouterr().out
        run(shell, "%mlx wait")
    result = shell.user_ns["later"]
    assert isinstance(result, MLXCompareResult)
    assert list(result.table["answer · b"]) == ["France", "Spain", "Austria"]
