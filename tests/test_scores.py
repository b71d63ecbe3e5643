"""--score: each --map answer against a label column, on the real batched path.

The answers are scripted (``forced_batch_answers`` of conftest: the
model runs every step, only each token's choice is fixed), so the scores are known.
"""

import pytest
from IPython.core.error import UsageError

from mlx_magic.magics.scoring import first_number, normalise
from mlx_magic.vocabulary.defaults import JUDGE_PROMPT as DEFAULT_JUDGE

from conftest import forced_batch_answers, make_shell, run

pytestmark = pytest.mark.model

#: Each city's scripted answer (the prompt ends with the city).
ANSWERS = {"Paris": "France.", "Rome": "It is Italy", "Berlin": "Germany", "Lima": "Spain"}


def answer_for(request):
    return ANSWERS[request.prompt.split()[-1]]


@pytest.fixture(scope="module")
def score_shell(tiny_llama):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%config MLXMagics.aliases = {{'tiny': {str(tiny_llama)!r}}}")
    run(
        shell,
        "import pandas as pd\n"
        "towns = pd.DataFrame({'city': ['Paris', 'Rome', 'Berlin', 'Lima'],"
        " 'country': ['france', 'Italy', ' GERMANY ', 'Peru']})",
    )
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


def scored(shell, line, cell="Country of {row.city}"):
    with forced_batch_answers(answer_for):
        run(shell, f"%%mlx -m tiny -n 12 --map towns {line}\n{cell}")
    return shell.user_ns["_mlx"]


def test_exact_and_contains_give_each_rows_score_and_the_summary(score_shell, capsys):
    result = scored(score_shell, "--score country")
    assert [row["answer"] for row in result.rows] == list(ANSWERS.values())
    assert list(result.table["score"]) == [1.0, 0.0, 1.0, 0.0]
    assert list(result.table.columns[:4]) == ["city", "country", "answer", "score"]
    scores = result.scores
    assert (scores.mean, scores.count, scores.scorer, scores.label) == (0.5, 4, "exact", "country")
    assert scores.low <= scores.mean <= scores.high
    out = capsys.readouterr().out
    assert "[score (exact vs country): mean 0.500 · 95% interval" in out and "· 4 rows]" in out
    assert '<table class="mlx-magic-scores">' in scores._repr_html_()
    result = scored(score_shell, "--score country --score-by contains")
    assert list(result.table["score"]) == [1.0, 1.0, 1.0, 0.0]
    assert result.scores.mean == 0.75 and result.scores.scorer == "contains"


def test_the_interval_repeats(score_shell):
    first = scored(score_shell, "--score country").scores
    again = scored(score_shell, "--score country").scores
    assert first == again and first.low < first.high


def test_numbers_within_a_tolerance(score_shell):
    run(score_shell, "sums = pd.DataFrame({'city': ['Paris', 'Rome', 'Lima'], 'total': [3, 7, 2]})")
    numbers = {"Paris": "It is 3.", "Rome": "About 7.4 I think", "Lima": "no idea"}
    with forced_batch_answers(lambda request: numbers[request.prompt.split()[-1]]):
        run(
            score_shell,
            "%%mlx -m tiny -n 12 --map sums --score total --score-by number\nSum {row.city}",
        )
        assert list(score_shell.user_ns["_mlx"].table["score"]) == [1.0, 0.0, 0.0]
        run(
            score_shell,
            "%%mlx -m tiny -n 12 --map sums --score total --score-by number:0.5\nSum {row.city}",
        )
    result = score_shell.user_ns["_mlx"]
    assert list(result.table["score"]) == [1.0, 1.0, 0.0]
    assert result.scores.scorer == "number:0.5" and result.scores.count == 3


def test_a_notebook_function_scores_and_one_that_raises_is_that_rows_error(score_shell):
    run(
        score_shell,
        "def first_letter(answer, label):\n"
        "    if label == 'Peru':\n"
        "        raise ValueError('no Peru here')\n"
        "    return answer.strip()[0].lower() == label.strip()[0].lower()\n",
    )
    result = scored(score_shell, "--score country --score-by first_letter")
    assert [row["score"] for row in result.rows] == [1.0, 1.0, 1.0, None]
    assert result.rows[3]["error"] == "--score-by first_letter: ValueError: no Peru here"
    assert [row["error"] for row in result.rows[:3]] == ["", "", ""]
    assert result.scores.count == 3 and result.scores.mean == 1.0


def test_a_schema_field_is_scored(score_shell):
    run(
        score_shell,
        "Place = {'type': 'object', 'properties': {'country': {'type': 'string'}},"
        " 'required': ['country']}",
    )
    places = {"Paris": '{"country": "France"}', "Rome": '{"country": "Spain"}'}
    run(
        score_shell, "two = pd.DataFrame({'city': ['Paris', 'Rome'], 'truth': ['France', 'Italy']})"
    )
    with forced_batch_answers(lambda request: places[request.prompt.split()[-1]]):
        run(
            score_shell,
            "%%mlx -m tiny -n 20 --map two --schema Place --score truth=country\nJSON for {row.city}",
        )
    result = score_shell.user_ns["_mlx"]
    assert [r.data for r in result.results] == [{"country": "France"}, {"country": "Spain"}]
    assert list(result.table["score"]) == [1.0, 0.0]
    assert result.scores.label == "truth=country"


def test_resume_keeps_the_scores_of_earlier_rows(score_shell):
    result = scored(score_shell, "--score country -o kept")
    for position in (1, 2):  # two, decoded together (one alone is not batched)
        row = result.rows[position]
        result.rows[position] = {**row, "finish_reason": "not run", "answer": "", "score": None}
        result.results[position] = None
    result.rows[0]["score"] = 0.25  # marked: kept, not scored again
    resumed = scored(score_shell, "--score country -o kept --resume")
    assert [row["score"] for row in resumed.rows] == [0.25, 0.0, 1.0, 0.0]
    assert resumed.scores.count == 4
    # Another scorer: the earlier rows are scored again, by it.
    resumed = scored(score_shell, "--score country --score-by contains -o kept --resume")
    assert [row["score"] for row in resumed.rows] == [1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "line, message",
    [
        ("--score colour", r"the items have no column 'colour' \(columns: city, country\)"),
        ("--score country --score-by fuzzy", "no variable named 'fuzzy'"),
        ("--score country --score-by towns", "a DataFrame is not callable"),
        ("--score country --score-by number:x", "the tolerance must be a number of 0 or more"),
        ("--score country --score-by number:-1", "the tolerance must be a number of 0 or more"),
        ("--score country --score-by 'a b'", "use exact, contains, number"),
        ("--score country=name", "scores a --schema field; add --schema NAME"),
        ("--score country=", "give the label column"),
        ("--score country=capital --schema Place", r"no field 'capital' \(fields: country\)"),
        ("--score-by exact", "says how to score: add --score COLUMN"),
        ("--judge tiny", "grades answers against a label: add --score COLUMN"),
        ("--score country --judge tiny --score-by exact", "is the scorer: leave out --score-by"),
        ("--score country --judge nowhere", "nowhere"),
    ],
)
def test_a_mistake_is_one_line_and_changes_nothing(score_shell, line, message):
    run(
        score_shell,
        "Place = {'type': 'object', 'properties': {'country': {'type': 'string'}},"
        " 'required': ['country']}",
    )
    run(score_shell, "%%mlx -m tiny -n 2\nHello")
    before = score_shell.user_ns["_mlx"]
    with pytest.raises(UsageError, match=message) as caught:
        run(score_shell, f"%%mlx -m tiny -n 4 --map towns {line}\nCountry of {{row.city}}")
    assert "\n" not in str(caught.value)
    assert score_shell.user_ns["_mlx"] is before


def judge_or_answer(request):
    """The judge's reply (1 when the label is in the answer), or the item's answer."""
    prompt = request.prompt
    if "Answer to grade: " not in prompt:
        return answer_for(request)
    answer = prompt.split("Answer to grade: ")[1].split("\n")[0]
    label = prompt.split("Reference answer: ")[1].split("\n")[0]
    return '{"score": 1}' if label.strip().casefold() in answer.casefold() else '{"score": 0}'


def test_a_judge_model_grades_each_answer_batched(score_shell, capsys):
    with forced_batch_answers(judge_or_answer):
        run(
            score_shell,
            "%%mlx -m tiny -n 12 --map towns --score country --judge tiny\nCountry of {row.city}",
        )
    result = score_shell.user_ns["_mlx"]
    assert list(result.table["score"]) == [1.0, 1.0, 1.0, 0.0]
    assert result.scores.scorer == "judge tiny" and result.scores.mean == 0.75
    judged = result.judged.table
    assert list(judged["label"]) == ["france", "Italy", " GERMANY ", "Peru"]
    assert list(judged["graded"]) == list(ANSWERS.values())
    assert list(judged["answer"])[:2] == ['{"score": 1}', '{"score": 1}']
    assert list(judged["score"]) == [1.0, 1.0, 1.0, 0.0] and "data_score" not in judged
    assert judged["question"].iloc[1] == "Country of Rome"
    # The judge's questions decoded together, as the answers did.
    assert result.judged.results[0].stats.batch_size > 1
    assert "[score (judge tiny vs country): mean 0.750" in capsys.readouterr().out


def test_a_judge_prompt_that_does_not_fill_in_is_one_line(score_shell):
    run(score_shell, "%config MLXMagics.judge_prompt = 'Grade {answer} for {nothing}'")
    try:
        with pytest.raises(UsageError, match="judge_prompt setting does not fill in"):
            run(
                score_shell,
                "%%mlx -m tiny -n 4 --map towns --score country --judge tiny\nX {row.city}",
            )
    finally:
        run(score_shell, "%config MLXMagics.judge_prompt = " + repr(DEFAULT_JUDGE))


def test_score_without_map_is_one_line(score_shell):
    with pytest.raises(UsageError, match="add --map") as caught:
        run(score_shell, "%%mlx -m tiny -n 2 --score country\nHello")
    assert "\n" not in str(caught.value)


def test_normalise_and_first_number():
    assert normalise("  «Paris»,  France!  ") == "paris», france"
    assert normalise(' "The  Answer." ') == "the answer"
    assert normalise(42) == "42"
    assert first_number("about 1,204.5 km") == 1204.5
    assert first_number("-3 or 4") == -3.0 and first_number(".5") == 0.5
    assert first_number("none") is None and first_number(7) == 7.0
