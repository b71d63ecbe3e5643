"""The logit lens in cells: ``%%mlx --lens`` and ``%mlx lens`` on the answer just
given, in the thread and the process runtime, on a branch and a vision model's
text-only answer; every mistake one line that changes nothing.

The numbers themselves are checked against a layer-by-layer reference in
tests/test_lens.py; here the last row is checked against the model's own
greedy choices: the token each answer position generated is the last layer's
top token there."""

import dataclasses

import pytest
from IPython.core.error import UsageError

from conftest import magics_of, one_line, run

pytestmark = pytest.mark.model

PROMPT = "Hello there, how are you?"


@pytest.fixture(scope="module")
def lensed(llama_shell):
    """An answer of ``%%mlx --lens`` (six greedy tokens), and what the cell printed."""
    import io
    from contextlib import redirect_stdout

    printed = io.StringIO()
    with redirect_stdout(printed):
        run(llama_shell, f"%%mlx -n 6 --lens -o first\n{PROMPT}")
    return llama_shell.user_ns["_mlx"], printed.getvalue()


def assert_last_row_is_the_answer(grid, answer):
    ids = [token.id for token in answer.tokens]
    assert list(grid.token_ids) == ids
    assert [cell.top_ids[0] for cell in grid.rows[-1]] == ids


def test_lens_flag_reads_every_layer_of_the_greedy_answer(lensed):
    answer, printed = lensed
    grid = answer.lens
    assert answer.finish_reason == "length" and len(answer.tokens) == 6
    assert grid is not None and grid.layers == 2 and grid.model_type == "llama"
    assert_last_row_is_the_answer(grid, answer)
    assert all(len(cell.top_ids) == 5 for row in grid.rows for cell in row)
    # Probabilities, and the generated token's own, as the drawing shows them.
    last = grid.rows[-1]
    assert all(cell.chosen_prob == pytest.approx(cell.top_probs[0]) for cell in last)
    assert all(0 < p <= 1 for row in grid.chosen_probs() for p in row)
    # Under the answer: the grid, then one footer line with what it cost.
    assert printed.index("· tiny-llama ·") < printed.index("logit lens · llama · 2 layers")
    note = printed.strip().splitlines()[-1]
    assert note.startswith("[logit lens · 2 layers × 6 answer tokens · ") and " s · " in note
    assert "(llama)]" in note
    # The answer's repr is unchanged by it.
    assert "lens" not in repr(answer)


def test_lens_command_on_the_last_answer_gives_the_same_grid(llama_shell, lensed, capsys):
    answer, _ = lensed
    llama_shell.user_ns["_mlx"] = answer
    kept = answer.lens
    answer.lens = None
    run(llama_shell, "%mlx lens")
    assert answer.lens == kept and answer.lens is not kept
    out = capsys.readouterr().out
    assert "logit lens · llama · 2 layers × 6 answer tokens" in out
    assert "[logit lens · 2 layers × 6 answer tokens · " in out


def test_lens_command_on_a_named_answer_with_fewer_tokens_and_alternatives(
    llama_shell, lensed, capsys
):
    answer, _ = lensed
    full = answer.lens
    run(llama_shell, "%mlx lens -k 3 first -t 2")
    grid = llama_shell.user_ns["first"].lens
    assert grid.token_ids == full.token_ids[:2]
    assert all(len(cell.top_ids) == 3 for row in grid.rows for cell in row)
    for layer in range(grid.layers):
        for token in range(2):
            mine, whole = grid.cell(layer, token), full.cell(layer, token)
            assert mine.top_ids == whole.top_ids[:3]
            assert mine.chosen_prob == pytest.approx(whole.chosen_prob, abs=1e-6)
    assert "the first 2 of 6 answer tokens (-t N reads more)" in capsys.readouterr().out
    answer.lens = full


def test_the_process_runtime_gives_the_same_grid(llama_shell, lensed):
    answer, _ = lensed
    magics = magics_of(llama_shell)
    llama_shell.user_ns["_mlx"] = answer
    expected = answer.lens
    try:
        run(llama_shell, "%mlx runtime process")
        answer.lens = None
        run(llama_shell, "%mlx lens")
        assert answer.lens == expected
        assert magics.session.runtime.pid is not None  # it was the worker's
    finally:
        run(llama_shell, "%mlx runtime thread")
        answer.lens = expected


def test_a_branch_is_read_from_its_prompt_the_chosen_token_included(llama_shell):
    run(llama_shell, f"%%mlx -n 6 --probs 3\n{PROMPT}")
    original = llama_shell.user_ns["_mlx"]
    run(llama_shell, "%mlx branch 3 #2")
    llama_shell.user_ns["branch"] = branch = original.branches[0]
    run(llama_shell, "%mlx lens branch")
    grid = branch.lens
    ids = [token.id for token in branch.tokens]
    assert list(grid.token_ids) == ids
    top = [cell.top_ids[0] for cell in grid.rows[-1]]
    # Greedy, but for the second alternative put at token 3 by hand.
    assert top[:2] == ids[:2] and top[3:] == ids[3:]
    assert top[2] != ids[2] and grid.rows[-1][2].top_ids[1] == ids[2]
    assert llama_shell.user_ns["_mlx"] is original


def test_mistakes_are_one_line_and_change_nothing(llama_shell, lensed):
    answer, _ = lensed
    magics = magics_of(llama_shell)
    llama_shell.user_ns["_mlx"] = answer
    kept, settings = answer.lens, (magics.runtime, magics.default_model, magics.max_tokens)
    answer.lens = None
    generations = len(magics.session.rows)
    mistakes = {
        "%mlx lens -k 0": "-k takes 1 to 20",
        "%mlx lens -k 21": "-k takes 1 to 20",
        "%mlx lens -t 0": "N is at least 1",
        "%mlx lens a b": "Usage: %mlx lens",
        "%mlx lens nothing_here": "nothing_here holds no answer",
        "%mlx models -k 3": "-k and -t are options of %mlx lens",
        f"%%mlx --lens --map cities\n{PROMPT}": "not a table of them",
        f"%%mlx --lens -m a -m b\n{PROMPT}": "compare side by side without it",
        f"%%mlx --lens -b\n{PROMPT}": "-b leaves at once",
        f"%%mlx --lens 0\n{PROMPT}": "N is at least 1",
    }
    llama_shell.user_ns["cities"] = ["Paris"]
    for cell, words in mistakes.items():
        with pytest.raises(UsageError) as caught:
            run(llama_shell, cell)
        assert words in one_line(caught), cell
    # Nothing ran, nothing moved.
    assert len(magics.session.rows) == generations
    assert llama_shell.user_ns["_mlx"] is answer and answer.lens is None
    assert (magics.runtime, magics.default_model, magics.max_tokens) == settings
    answer.lens = kept


def test_a_changed_prompt_is_one_line(llama_shell, lensed):
    answer, _ = lensed
    changed = dataclasses.replace(answer, lens=None)
    changed.request = dataclasses.replace(answer.request, system="Answer in French.")
    llama_shell.user_ns["changed"] = changed
    with pytest.raises(UsageError) as caught:
        run(llama_shell, "%mlx lens changed")
    assert "not the one the model read" in one_line(caught)
    assert changed.lens is None


def test_a_family_it_cannot_read_is_one_line(llama_shell, lensed, monkeypatch):
    answer, _ = lensed
    runtime = magics_of(llama_shell).session.runtime
    run(llama_shell, "%mlx lens first")  # the model is warm in this runtime
    (entry,) = [entry for entry in runtime._cache if entry.key == answer.request.model.key]

    class Opaque:
        """A model with no decoder layers where the lens looks for them."""

        model_type = "opaque"

    monkeypatch.setattr(entry, "model", Opaque())
    llama_shell.user_ns["_mlx"] = answer
    kept = answer.lens
    answer.lens = None
    with pytest.raises(UsageError) as caught:
        run(llama_shell, "%mlx lens")
    assert "The logit lens reads llama-like models" in one_line(caught)
    assert "opaque is not one" in str(caught.value)
    assert answer.lens is None
    answer.lens = kept


def test_remote_is_one_line_before_anything_is_sent(llama_shell, lensed):
    from fake_openai import Recorder

    answer, _ = lensed
    magics = magics_of(llama_shell)
    server = Recorder()
    try:
        run(llama_shell, f"%mlx connect {server.url}")
        sent = len(server.requests)
        with pytest.raises(UsageError) as caught:
            run(llama_shell, f"%%mlx --lens\n{PROMPT}")
        assert "needs a local model" in one_line(caught)
        assert len(server.requests) == sent  # no generation was spent
        llama_shell.user_ns["_mlx"] = answer
        with pytest.raises(UsageError) as caught:
            run(llama_shell, "%mlx lens")
        assert "needs a local model" in one_line(caught)
        # A server's answer, read after going back to local models: still one line.
        run(llama_shell, f"%%mlx -n 4\n{PROMPT}")
        served = llama_shell.user_ns["_mlx"]
    finally:
        run(llama_shell, "%mlx disconnect")
        server.close()
    assert magics.runtime == "thread"
    with pytest.raises(UsageError) as caught:
        run(llama_shell, "%mlx lens")
    assert "needs a local model" in one_line(caught)
    assert served.lens is None


@pytest.mark.vision
def test_a_vision_models_text_answer_is_read_and_an_image_answer_refused(vlm_shell, tiny_vlm):
    run(vlm_shell, f"%%mlx -m {tiny_vlm} -n 4 --lens\n{PROMPT}")
    answer = vlm_shell.user_ns["_mlx"]
    assert answer.lens.model_type == "qwen2_vl"
    assert_last_row_is_the_answer(answer.lens, answer)
    run(vlm_shell, "%%mlx_vision -i red -n 3\nWhat colour is this?")
    seen = vlm_shell.user_ns["_mlx"]
    with pytest.raises(UsageError) as caught:
        run(vlm_shell, "%mlx lens")
    assert "this answer saw images or a video" in one_line(caught)
    assert seen.lens is None


def test_smollm2_the_answer_forms_in_the_last_layers(model_shell, capsys):
    run(model_shell, "%%mlx -n 3 --lens\nWhat is the capital of France?")
    answer = model_shell.user_ns["_mlx"]
    grid = answer.lens
    assert answer.text.startswith("The capital")
    assert grid.layers == 30 and grid.model_type == "llama"
    assert_last_row_is_the_answer(grid, answer)
    # " capital" is not what the first layer says; the last one is near sure of it.
    assert grid.cell(0, 1).top_texts[0] != " capital"
    assert grid.cell(-1, 1).top_texts[0] == " capital" and grid.cell(-1, 1).top_probs[0] > 0.5
    assert "[logit lens · 30 layers × 3 answer tokens · " in capsys.readouterr().out
