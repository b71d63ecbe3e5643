"""``%mlx branch``: an answer goes on from one of its tokens with another alternative."""

import pytest
from IPython.core.error import UsageError

from conftest import run

pytestmark = pytest.mark.model

CELL = "%%mlx -n 12 --probs 3\nWhat is the capital of France?"


@pytest.fixture(scope="module")
def first_answer(model_shell):
    run(model_shell, CELL)
    result = model_shell.user_ns["_mlx"]
    assert result.text.startswith("The capital of France is Paris")
    return result


@pytest.fixture
def answer(model_shell, first_answer):
    """The answer as the last cell left it: in ``_mlx``, with no branches yet."""
    first_answer.branches.clear()
    model_shell.user_ns["_mlx"] = first_answer
    return first_answer


def paris_step(result):
    return next(n for n, t in enumerate(result.tokens, 1) if t.text == " Paris")


def test_a_branch_reuses_the_answers_cache_and_is_shown_beside_it(model_shell, answer, capsys):
    step = paris_step(answer)
    capsys.readouterr()
    run(model_shell, f'%mlx branch {step} " London"')
    out = capsys.readouterr().out
    assert model_shell.user_ns["_mlx"] is answer  # the original stays the result
    (branch,) = answer.branches
    assert branch.branched_at == (step, " London")
    assert [t.id for t in branch.tokens[: step - 1]] == [t.id for t in answer.tokens[: step - 1]]
    assert branch.tokens[step - 1].text == " London"
    assert branch.text.startswith("The capital of France is London")
    # The prompt and the shared tokens came from the original's KV cache,
    # trimmed: only the chosen token was read anew.
    assert branch.stats.cached_prompt_tokens == branch.stats.prompt_tokens - 1
    assert f"── branch at token {step}: ' London' instead of ' Paris' ──" in out
    assert "── original ──" in out and "(draft)" not in out
    assert all(token.logprob is not None for token in branch.tokens)  # its own probabilities


def test_an_alternative_by_its_rank(model_shell, answer):
    step = paris_step(answer)
    run(model_shell, f"%mlx branch {step} #2")
    (branch,) = answer.branches
    assert branch.tokens[step - 1].id == answer.tokens[step - 1].top[1][0]


def test_the_picker_branches_from_the_chosen_token(model_shell, answer):
    from mlx_magic.magics.branch_picker import BranchPicker

    session = model_shell.magics_manager.registry["MLXMagics"].session
    picker = BranchPicker(session, answer)
    picker.step.value = paris_step(answer)
    labels = [label for label, _ in picker.alternative.options]
    assert labels and not any(label.startswith("' Paris'") for label in labels)  # others only
    assert picker.alternative.value == picker.alternative.options[0][1]  # chosen already
    branch = picker.branch()
    assert answer.branches == [branch] and branch.tokens[picker.step.value - 1].text != " Paris"


@pytest.mark.parametrize(
    "line, message",
    [
        ("%mlx branch 99 #1", "the answer has tokens 1 to "),
        ("%mlx branch 2 ' Zanzibar'", "is not an alternative of token 2"),
        ("%mlx branch 2 #9", "token 2 has alternatives #1 to #3"),
        ("%mlx branch two #1", "Usage: %mlx branch STEP TOKEN"),
        ("%mlx branch 2", "Usage: %mlx branch STEP TOKEN"),
        ("%mlx branch 2 #1 nothing_here", "nothing_here holds no answer of a %%mlx cell"),
    ],
)
def test_branch_mistakes_are_one_line_and_change_nothing(model_shell, answer, line, message):
    with pytest.raises(UsageError, match=message):
        run(model_shell, line)
    assert model_shell.user_ns["_mlx"] is answer and answer.branches == []


def test_an_answer_without_probabilities_cannot_branch(model_shell):
    run(model_shell, "%%mlx -n 3\nHi")
    with pytest.raises(UsageError, match="run the cell with --probs"):
        run(model_shell, "%mlx branch 1 #1")
