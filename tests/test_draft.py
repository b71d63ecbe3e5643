"""``--draft``: speculative decoding with mlx-lm, shown in the footer and in ``--probs``."""

import pytest
from IPython.core.error import UsageError

from conftest import run

pytestmark = pytest.mark.model

QUESTION = "Explain in a short paragraph why the sky is blue."


@pytest.fixture(scope="module")
def smollm2_draft(tmp_path_factory):
    """SmolLM2's first 26 of its 30 layers: the same tokenizer by construction. (Its
    first 8 layers guess no token of this answer the model keeps; 26 guess a third.)"""
    from mlx_magic.testing.drafts import build_layer_draft

    return build_layer_draft(
        "smollm2", tmp_path_factory.mktemp("drafts") / "smol-draft", num_layers=26
    )


def test_greedy_answers_are_the_models_own_and_the_draft_is_shown(
    model_shell, smollm2_draft, capsys
):
    run(model_shell, f"%%mlx -n 24 -o alone\n{QUESTION}")
    run(
        model_shell,
        f"%%mlx -n 24 --draft {smollm2_draft} --num-draft 3 --probs 3 -o drafted\n{QUESTION}",
    )
    alone, drafted = model_shell.user_ns["alone"], model_shell.user_ns["drafted"]
    assert [t.id for t in drafted.tokens] == [t.id for t in alone.tokens]  # token for token
    stats = drafted.stats
    assert stats.draft_model == "smol-draft"
    assert 0 < stats.drafted_tokens == sum(t.from_draft for t in drafted.tokens)
    assert not any(t.from_draft for t in alone.tokens)
    share = round(100 * stats.drafted_tokens / stats.generation_tokens)
    assert f"draft smol-draft: {share}% of tokens, " in drafted.footer
    # Against the same prompt without the draft, the cell just before.
    assert "× the speed of this prompt without it (" in drafted.footer
    assert stats.undrafted_tps == pytest.approx(alone.stats.generation_tps)
    assert stats.undrafted_same_prompt
    out = capsys.readouterr().out
    assert f"draft smol-draft: {share}% of tokens" in out
    # --probs marks the drafted tokens.
    from mlx_magic.display.probability_view import probability_bundle

    bundle = probability_bundle(drafted, drafted.request.sampling)
    assert bundle["text/html"].count("mlx-magic-draft") == stats.drafted_tokens
    assert bundle["text/plain"].count("(draft)") == stats.drafted_tokens


def test_the_setting_drafts_every_cell_and_draft_none_turns_it_off(model_shell, smollm2_draft):
    run(model_shell, f"%config MLXMagics.draft_model = {str(smollm2_draft)!r}")
    try:
        run(model_shell, "%%mlx -n 6\nHi")
        stats = model_shell.user_ns["_mlx"].stats
        assert stats.draft_model == "smol-draft"
        # "Hi" never ran without a draft: the model's latest answer is the measure.
        assert not stats.undrafted_same_prompt
        assert "the speed of its latest answer without it" in model_shell.user_ns["_mlx"].footer
        run(model_shell, "%%mlx -n 6 --draft none\nHi")
        assert model_shell.user_ns["_mlx"].stats.draft_model is None
    finally:
        run(model_shell, "%config MLXMagics.draft_model = None")


def test_a_draft_with_another_tokenizer_is_one_line(model_shell, tiny_llama):
    before = model_shell.user_ns.get("_mlx")
    with pytest.raises(UsageError, match="its tokenizer is not that of smollm2"):
        run(model_shell, f"%%mlx -n 4 --draft {tiny_llama}\nHi")
    assert model_shell.user_ns.get("_mlx") is before
    run(model_shell, "%%mlx -n 3\nHi")  # the model is still warm and answers
    assert model_shell.user_ns["_mlx"].stats.warm


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--draft /no/such/draft", "--draft /no/such/draft: "),
        ("--draft smollm2", "--draft smollm2 is the model itself"),
        ("--draft {converted}", "is the model itself"),  # the same files by their path
        ("--num-draft 2", "--num-draft goes with a draft model: add --draft MODEL"),
        ("--draft {draft} --num-draft 0", "--num-draft must be between 1 and 64 tokens, not 0"),
        ("--draft {draft} --schema shape", "--draft and --schema"),
        ("--draft {draft} --map words", "--map decodes its items together"),
    ],
)
def test_draft_mistakes_are_one_line(model_shell, smollm2_draft, flags, message):
    model_shell.user_ns.update(shape={"type": "object"}, words=["a", "b"], item="x")
    before = model_shell.user_ns.get("_mlx")
    from mlx_magic.models.resolve import embedded_spec

    converted = embedded_spec().path  # the embedded model's folder, converted by now
    with pytest.raises(UsageError, match=message):
        run(
            model_shell,
            f"%%mlx -n 4 {flags.format(draft=smollm2_draft, converted=converted)}\nSay {{item}}.",
        )
    assert model_shell.user_ns.get("_mlx") is before


def test_a_bad_draft_setting_is_named_as_the_setting_not_a_flag(model_shell):
    run(model_shell, "%config MLXMagics.draft_model = '/no/such/draft'")
    try:
        with pytest.raises(UsageError) as caught:
            run(model_shell, "%%mlx -n 2\nHi")
        message = str(caught.value)
        assert message.startswith("The draft_model setting '/no/such/draft': ")
        assert "--draft" not in message and "MLXMagics.draft_model = None" in message
    finally:
        run(model_shell, "%config MLXMagics.draft_model = None")


def test_reading_a_long_prompt_with_a_draft_stops_at_a_cancel(model_shell, smollm2_draft):
    # mlx-lm's speculative path reads the prompt without a progress callback:
    # the magic reads it itself, in steps that a cancel stops.
    from mlx_magic.vocabulary.values import (
        Failed,
        Finished,
        GenerationRequest,
        Progress,
        SamplingParams,
    )

    session = model_shell.magics_manager.registry["MLXMagics"].session
    spec, draft = session.resolve("smollm2"), session.resolve(str(smollm2_draft))
    long_prompt = "Tell me everything about the weather. " * 300  # ~2,400 tokens
    job = session.runtime.generate(
        GenerationRequest(
            model=spec, prompt=long_prompt, draft=draft, sampling=SamplingParams(max_tokens=4)
        )
    )
    seen = []
    while not isinstance(event := job.next_event(timeout=600), (Finished, Failed, type(None))):
        seen.append(event)
        if isinstance(event, Progress):
            job.cancel()  # the reading is under way and says how far it has come
    assert any(isinstance(e, Progress) for e in seen), "no progress while reading the prompt"
    assert isinstance(event, Finished) and event.finish_reason == "cancelled"
    assert event.stats.generation_tokens == 0
    run(model_shell, f"%%mlx -n 3 --draft {smollm2_draft}\nHi")  # the runtime goes on
    assert model_shell.user_ns["_mlx"].stats.generation_tokens == 3


R1_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)


def test_a_thinking_budget_holds_with_a_draft(model_shell, smollm2_draft, tmp_path):
    # With a draft, mlx-lm calls the logits processors for the draft's guesses
    # and again for each position the model checks: the budget must count
    # positions, not calls (it let 40 thinking tokens through, and no answer).
    import json
    import shutil

    from mlx_magic.models.resolve import embedded_spec

    thinker = tmp_path / "smollm2-r1"
    shutil.copytree(embedded_spec().path, thinker)  # converted by the earlier tests
    config = json.loads((thinker / "tokenizer_config.json").read_text())
    config["chat_template"] = R1_TEMPLATE
    (thinker / "tokenizer_config.json").write_text(json.dumps(config))
    run(model_shell, f"%%mlx -m {thinker} --draft {smollm2_draft} --think-budget 3 -n 40\nHi")
    result = model_shell.user_ns["_mlx"]
    closing = 6  # "\n</think>\n\n" is a few tokens
    assert 3 <= result.stats.thinking_tokens <= 3 + closing
    assert result.stats.generation_tokens > result.stats.thinking_tokens  # an answer follows
