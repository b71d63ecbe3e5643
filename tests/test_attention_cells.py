"""Attention in cells: ``%%mlx --attention`` / ``%%mlx_vision --attention`` and
``%mlx attention STEP`` on the answer just given, in the thread and the process
runtime, on a branch and an answer about an image; every mistake one line that
changes nothing.

The numbers themselves are checked against a by-hand softmax(q·Kᵀ/√d) in
tests/test_attention.py; here a cell's map is checked against the engine's own
reading of the prompt the answer was generated from (its ids hash to the
answer's provenance)."""

import dataclasses
import io
from contextlib import redirect_stdout

import pytest
from IPython.core.error import UsageError

from conftest import magics_of, one_line, run

pytestmark = pytest.mark.model

PROMPT = "Hello there, how are you?"


@pytest.fixture(scope="module")
def attended(llama_shell):
    """An answer of ``%%mlx --attention`` (six greedy tokens), and what the cell printed."""
    printed = io.StringIO()
    with redirect_stdout(printed):
        run(llama_shell, f"%%mlx -n 6 --attention -o first\n{PROMPT}")
    return llama_shell.user_ns["_mlx"], printed.getvalue()


def engine_reading(tiny_llama, found, layer=None, head=None):
    """The engine's own map of the same positions, on a model loaded here."""
    import mlx_lm

    from mlx_magic.engine.attention import attention_map

    model, tokenizer = mlx_lm.load(str(tiny_llama))
    return attention_map(
        model,
        tokenizer,
        found.token_ids,
        first=found.prompt_tokens,
        written_id=found.written_id,
        layer=layer,
        head=head,
    )


def test_attention_flag_reads_the_last_token_under_the_answer(attended, tiny_llama):
    from mlx_magic.vocabulary.provenance import token_ids_sha256

    answer, printed = attended
    found = answer.attention
    ids = [token.id for token in answer.tokens]
    assert len(ids) == 6 and found.step == 6 and found.written_id == ids[5]
    assert found.layer == 1 and found.layers == 2 and found.head is None
    # Positions: the prompt the model read (its hash is the answer's), then the answer so far.
    prompt = list(found.token_ids[: found.prompt_tokens])
    assert token_ids_sha256(prompt) == answer.provenance["prompt_token_ids_sha256"]
    assert list(found.token_ids[found.prompt_tokens :]) == ids[:5]
    assert all(sum(row) == pytest.approx(1.0, abs=1e-5) for row in found.weights)
    assert found == engine_reading(tiny_llama, found)
    # Under the answer: the strip, then one footer line with what it cost.
    assert printed.index("· tiny-llama ·") < printed.index("attention · llama · layer 1 of 2")
    note = printed.strip().splitlines()[-1]
    assert note.startswith("[attention · layer 1 of 2 · mean of 4 heads · token 6 ")
    assert " positions · " in note and " s · tiny-llama (llama) · " in note
    assert "attention" not in repr(answer)


def test_attention_command_reads_any_step_layer_and_head(llama_shell, attended, tiny_llama):
    answer, _ = attended
    kept = answer.attention
    run(llama_shell, "%mlx attention 2 first -l 0 -h 3")
    found = llama_shell.user_ns["first"].attention
    assert found.step == 2 and found.layer == 0 and found.head == 3
    assert found.written_id == answer.tokens[1].id
    assert len(found.token_ids) == found.prompt_tokens + 1
    assert found == engine_reading(tiny_llama, found, layer=0, head=3)
    assert found.row() == list(found.weights[3])
    llama_shell.user_ns["_mlx"] = answer
    run(llama_shell, "%mlx attention -l -1 6")
    assert answer.attention == kept
    answer.attention = kept


def test_a_cell_without_the_flag_reads_nothing(llama_shell, monkeypatch):
    runtime = magics_of(llama_shell).session.runtime

    def never(asked):
        raise AssertionError("read without --attention")

    monkeypatch.setattr(runtime, "inspect", never)
    run(llama_shell, f"%%mlx -n 3\n{PROMPT}")
    answer = llama_shell.user_ns["_mlx"]
    assert len(answer.tokens) == 3 and answer.attention is None


def test_the_process_runtime_gives_the_same_map(llama_shell, attended):
    answer, _ = attended
    magics = magics_of(llama_shell)
    llama_shell.user_ns["_mlx"] = answer
    expected = answer.attention
    try:
        run(llama_shell, "%mlx runtime process")
        answer.attention = None
        run(llama_shell, "%mlx attention 6")
        assert answer.attention == expected
        assert magics.session.runtime.pid is not None  # it was the worker's
    finally:
        run(llama_shell, "%mlx runtime thread")
        answer.attention = expected


def test_a_branch_is_read_with_the_chosen_token_as_the_answers(llama_shell):
    run(llama_shell, f"%%mlx -n 6 --probs 3\n{PROMPT}")
    original = llama_shell.user_ns["_mlx"]
    run(llama_shell, "%mlx branch 3 #2")
    llama_shell.user_ns["branch"] = branch = original.branches[0]
    run(llama_shell, "%mlx attention 5 branch")
    found = branch.attention
    ids = [token.id for token in branch.tokens]
    assert list(found.token_ids[found.prompt_tokens :]) == ids[:4]
    assert found.written_id == ids[4]
    assert llama_shell.user_ns["_mlx"] is original


def test_mistakes_are_one_line_and_change_nothing(llama_shell, attended):
    answer, _ = attended
    magics = magics_of(llama_shell)
    llama_shell.user_ns["_mlx"] = answer
    kept, settings = answer.attention, (magics.runtime, magics.default_model, magics.max_tokens)
    answer.attention = None
    generations = len(magics.session.rows)
    llama_shell.user_ns["cities"] = ["Paris"]
    mistakes = {
        "%mlx attention": "Usage: %mlx attention STEP",
        "%mlx attention x": "Usage: %mlx attention STEP",
        "%mlx attention 1 a b": "Usage: %mlx attention STEP",
        "%mlx attention 0": "has 6 answer tokens (1 to 6), not 0",
        "%mlx attention 7": "has 6 answer tokens (1 to 6), not 7",
        "%mlx attention 1 nothing_here": "nothing_here holds no answer",
        "%mlx attention 1 -l 2": "has 2 decoder layers (0 to 1; -1 is the last): there is no layer 2",
        "%mlx attention 1 -h 4": "has 4 heads (0 to 3): there is no head 4",
        "%mlx attention 1 -h": "argument -h: expected one argument",
        "%mlx models -l 1": "-l and -h are options of %mlx attention",
        "%mlx status -h": "%mlx? shows the manual",
        f"%%mlx --attention x\n{PROMPT}": "--attention takes LAYER or LAYER:HEAD",
        f"%%mlx --attention --map cities\n{PROMPT}": "not a table of them",
        f"%%mlx --attention -m a -m b\n{PROMPT}": "compare side by side without it",
        f"%%mlx --attention 1:2 -b\n{PROMPT}": "-b leaves at once",
    }
    for cell, words in mistakes.items():
        with pytest.raises(UsageError) as caught:
            run(llama_shell, cell)
        assert words in one_line(caught), cell
    # Nothing ran, nothing moved.
    assert len(magics.session.rows) == generations
    assert llama_shell.user_ns["_mlx"] is answer and answer.attention is None
    assert (magics.runtime, magics.default_model, magics.max_tokens) == settings
    answer.attention = kept


def test_a_changed_prompt_and_an_unreadable_family_are_one_line(llama_shell, attended, monkeypatch):
    answer, _ = attended
    changed = dataclasses.replace(answer, attention=None)
    changed.request = dataclasses.replace(answer.request, system="Answer in French.")
    llama_shell.user_ns["changed"] = changed
    with pytest.raises(UsageError) as caught:
        run(llama_shell, "%mlx attention 1 changed")
    assert "is not the one the model read" in one_line(caught)
    assert changed.attention is None
    runtime = magics_of(llama_shell).session.runtime
    run(llama_shell, "%mlx attention 1 first")  # the model is warm in this runtime
    (entry,) = [entry for entry in runtime._cache if entry.key == answer.request.model.key]

    class Opaque:
        """A model with no decoder layers where attention is looked for."""

        model_type = "opaque"

    monkeypatch.setattr(entry, "model", Opaque())
    fresh = dataclasses.replace(answer, attention=None)
    llama_shell.user_ns["fresh"] = fresh
    with pytest.raises(UsageError) as caught:
        run(llama_shell, "%mlx attention 1 fresh")
    assert one_line(caught).startswith("Attention weights are read from models whose")
    assert "opaque is not one" in str(caught.value) and fresh.attention is None


def test_remote_is_one_line_before_anything_is_sent(llama_shell, attended):
    from fake_openai import Recorder

    answer, _ = attended
    server = Recorder()
    try:
        run(llama_shell, f"%mlx connect {server.url}")
        sent = len(server.requests)
        with pytest.raises(UsageError) as caught:
            run(llama_shell, f"%%mlx --attention\n{PROMPT}")
        assert "need a local model" in one_line(caught)
        assert len(server.requests) == sent  # no generation was spent
        llama_shell.user_ns["_mlx"] = answer
        with pytest.raises(UsageError) as caught:
            run(llama_shell, "%mlx attention 1")
        assert "need a local model" in one_line(caught)
        run(llama_shell, f"%%mlx -n 4\n{PROMPT}")
        served = llama_shell.user_ns["_mlx"]
    finally:
        run(llama_shell, "%mlx disconnect")
        server.close()
    with pytest.raises(UsageError) as caught:
        run(llama_shell, "%mlx attention 1")
    assert "need a local model" in one_line(caught)
    assert served.attention is None


@pytest.mark.vision
def test_an_answer_about_an_image_gets_a_heatmap(vlm_shell, tiny_vlm, capsys):
    run(vlm_shell, "%%mlx_vision -i red -n 3 --attention 0:1\nWhat colour is this?")
    answer = vlm_shell.user_ns["_mlx"]
    found = answer.attention
    assert found.model_type == "qwen2_vl" and (found.layer, found.head, found.step) == (0, 1, 3)
    (patches,) = found.images
    # 120 × 80 → 112 × 84 pixels: 8 × 6 patches of 14, merged 2 × 2 into 4 × 3 tokens.
    assert (patches.rows, patches.cols, patches.size) == (3, 4, (112, 84))
    assert set(found.token_ids[patches.start : patches.start + 12]) == {
        found.token_ids[patches.start]
    }
    out = capsys.readouterr().out
    assert "image 1: " in out and "of the weight on its 12 tokens (3 × 4 patches" in out
    assert "[attention · layer 0 of 2 · head 1 · token 3 " in out
    # The HTML form carries the heatmap, drawn on the image sent.
    from mlx_magic.display.attention_view import attention_html

    page = attention_html(found, answer.request.images)
    assert 'class="mlx-magic-attention-heatmap"' in page and "[image 1 · 12 tokens · " in page
    run(vlm_shell, "%mlx attention 1")
    assert answer.attention.step == 1 and answer.attention.images == found.images
    # A vision model's text-only answer: no image, the same reading.
    run(vlm_shell, f"%%mlx -m {tiny_vlm} -n 3 --attention\n{PROMPT}")
    assert vlm_shell.user_ns["_mlx"].attention.images == ()


def test_smollm2_attention_of_a_short_answer(model_shell, capsys):
    run(model_shell, "%%mlx -n 3 --attention\nWhat is the capital of France?")
    answer = model_shell.user_ns["_mlx"]
    found = answer.attention
    assert answer.text.startswith("The capital")
    assert found.layers == 30 and found.heads == 9 and found.step == 3
    assert found.written_id == answer.tokens[2].id
    assert all(sum(row) == pytest.approx(1.0, abs=1e-3) for row in found.weights)
    out = capsys.readouterr().out
    assert "[attention · layer 29 of 30 · mean of 9 heads · token 3 " in out
