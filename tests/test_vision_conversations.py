"""``%%mlx_vision --chat``: conversations about images that reuse their KV cache.

The real mlx-vlm path with a tiny random Qwen2-VL: its words are noise, but
greedy decoding makes them exact, so an answer built on a reused KV cache
must equal the answer computed from scratch.
"""

import json

import pytest
from IPython.core.error import UsageError

from conftest import magics_of, run

pytestmark = pytest.mark.vision


def ask(shell, flags, text):
    run(shell, f"%%mlx_vision {flags} -n 8\n{text}")
    return shell.user_ns["_mlx"]


def three_turns(shell, name):
    first = ask(shell, f"--chat {name} -i red", "What is in this picture?")
    second = ask(shell, f"--chat {name}", "And what colour is it?")  # no -i: the image stays
    third = ask(shell, f"--chat {name}", "Say it again.")
    return first, second, third


def test_follow_ups_reuse_the_kv_cache_and_answer_exactly_as_from_scratch(vlm_shell):
    first, second, third = three_turns(vlm_shell, "look")
    assert first.stats.cached_prompt_tokens == 0
    # The follow-up reads only its own text: the image, the first question
    # and the answer come from the cache.
    assert second.stats.cached_prompt_tokens >= first.stats.prompt_tokens
    assert third.stats.cached_prompt_tokens >= second.stats.prompt_tokens

    magics = magics_of(vlm_shell)
    magics.prefix_cache = False
    try:
        cold = three_turns(vlm_shell, "look-cold")
    finally:
        magics.prefix_cache = True
    assert [turn.stats.cached_prompt_tokens for turn in cold] == [0, 0, 0]
    assert [turn.stats.prompt_tokens for turn in cold] == [
        turn.stats.prompt_tokens for turn in (first, second, third)
    ]
    assert [turn.text for turn in cold] == [turn.text for turn in (first, second, third)]


def test_rerunning_a_turn_rewinds_and_reuses_the_cache(vlm_shell, capsys):
    first, second, third = three_turns(vlm_shell, "rewind")
    # Same text, no cell id: a re-run of turn 2, not a fourth turn.
    again = ask(vlm_shell, "--chat rewind", "And what colour is it?")
    assert again.text == second.text
    assert again.stats.prompt_tokens == second.stats.prompt_tokens
    assert again.stats.cached_prompt_tokens >= first.stats.prompt_tokens
    conversation = magics_of(vlm_shell).session.conversations.get("rewind")
    assert [turn.user for turn in conversation.turns] == [
        "What is in this picture?",
        "And what colour is it?",
    ]
    assert [len(turn.images) for turn in conversation.turns] == [1, 0]
    capsys.readouterr()
    run(vlm_shell, "%mlx chat rewind")
    transcript = capsys.readouterr().out
    assert "*[image: red · 120×80]* What is in this picture?" in transcript


def test_a_new_image_joins_the_conversation_in_its_own_turn(vlm_shell):
    first = ask(vlm_shell, "--chat two -i red", "What is in this picture?")
    second = ask(vlm_shell, "--chat two -i noise", "And in this one?")
    # Both images are in the prompt: more tokens than the new text and one image.
    alone = ask(vlm_shell, "-i noise", "And in this one?")
    assert second.stats.prompt_tokens > alone.stats.prompt_tokens + first.stats.generation_tokens
    conversation = magics_of(vlm_shell).session.conversations.get("two")
    assert [turn.image_names for turn in conversation.turns] == [
        ("red · 120×80",),
        ("noise · 96×64",),
    ]


def test_a_saved_vision_conversation_names_its_images(vlm_shell, tmp_path):
    ask(vlm_shell, "--chat saved -i red", "What is in this picture?")
    path = tmp_path / "saved.json"
    run(vlm_shell, f"%mlx chat save {path} saved")
    data = json.loads(path.read_text())
    assert data["turns"][0]["image_names"] == ["red · 120×80"]
    assert "images" not in data["turns"][0]


def test_a_conversation_without_an_image_yet_is_one_usage_error(vlm_shell):
    with pytest.raises(UsageError) as caught:
        run(vlm_shell, "%%mlx_vision --chat empty -n 2\nWhat is this?")
    assert type(caught.value) is UsageError and "\n" not in str(caught.value)
    assert "conversation 'empty' has none yet" in str(caught.value)
    # The model stayed warm and answers the next cell.
    assert ask(vlm_shell, "--chat empty -i red", "What is this?").text


def test_running_a_plain_vision_cell_again_reuses_its_prefill(vlm_shell):
    first = ask(vlm_shell, "-i noise", "Describe the picture.")
    again = ask(vlm_shell, "-i noise", "Describe the picture.")
    # All but the last prompt token, which the model reads again to answer.
    assert again.stats.cached_prompt_tokens == first.stats.prompt_tokens - 1
    assert again.text == first.text
    # A different image is read in full.
    other = ask(vlm_shell, "-i red", "Describe the picture.")
    assert other.stats.cached_prompt_tokens < first.stats.prompt_tokens - 1
    assert other.text != first.text


def test_another_image_of_the_same_size_is_not_answered_from_the_cached_one(vlm_shell):
    # Two pictures of one size are the same placeholder tokens to mlx-vlm's
    # prompt cache: the second must be read, not answered from the first's KV.
    run(vlm_shell, "blue = Image.new('RGB', (120, 80), 'blue')")
    ask(vlm_shell, "-i red", "What colour is this?")
    blue = ask(vlm_shell, "-i blue", "What colour is this?")
    assert blue.stats.cached_prompt_tokens < blue.stats.prompt_tokens - blue.stats.image_tokens
    magics = magics_of(vlm_shell)
    magics.prefix_cache = False
    try:
        fresh = ask(vlm_shell, "-i blue", "What colour is this?")
    finally:
        magics.prefix_cache = True
    assert [t.id for t in blue.tokens] == [t.id for t in fresh.tokens]


def test_images_stay_in_their_turn_where_the_model_layout_allows_it():
    from PIL import Image

    from mlx_magic.engine.vision_generation import conversation_messages
    from mlx_magic.vocabulary.values import GenerationRequest, ModelSpec

    request = GenerationRequest(
        model=ModelSpec(name="v", key="v", path="v", kind="vision"),
        prompt="And now?",
        system="Be brief.",
        history=(("What is this?", "A square."),),
        history_images=(1,),
        images=(Image.new("RGB", (4, 4)),),
    )
    parts = conversation_messages("qwen2_vl", request)
    assert [m["role"] for m in parts] == ["system", "user", "assistant", "user"]
    assert [p["type"] for p in parts[1]["content"]] == ["text", "image"]  # mlx-vlm's order
    assert parts[3] == {"role": "user", "content": "And now?"}
    # A layout of text with image tokens (gemma3): plain text, and mlx-vlm
    # puts the image into the last message itself.
    tokens = conversation_messages("gemma3", request)
    assert [m["content"] for m in tokens[1:]] == ["What is this?", "A square.", "And now?"]
