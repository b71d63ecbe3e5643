"""%%mlx_vision on the real mlx-vlm path, with a tiny random Qwen2-VL.

The model's words are noise: these tests check the plumbing (images reach the
model, previews come first, caches are hit, errors are one line).
"""

import numpy as np
import pytest
from IPython.core.error import UsageError
from PIL import Image

from conftest import magics_of, make_shell, run

pytestmark = pytest.mark.vision


def test_previews_come_before_the_answer_and_the_result_is_kept(vlm_shell, capsys):
    run(vlm_shell, "%%mlx_vision -i red -n 8\nWhat is in this picture?")
    printed = capsys.readouterr().out
    result = vlm_shell.user_ns["_mlx"]
    assert printed.startswith("[image 1: red · 120×80]")
    assert result.text and result.text in printed
    assert result.stats.generation_tokens == len(result.tokens) <= 8
    assert result.finish_reason in ("stop", "length")
    assert result.stats.prompt_tokens > 20


def test_prompt_tokens_grow_with_the_number_and_size_of_images(vlm_shell, tmp_path):
    small = tmp_path / "small.png"
    Image.new("RGB", (56, 56), "blue").save(small)
    big = tmp_path / "big.png"
    Image.new("RGB", (224, 224), "blue").save(big)
    counts = {}
    for name, flags in {
        "small": f"-i {small}",
        "big": f"-i {big}",
        "two": f"-i {big} -i {small}",
    }.items():
        run(vlm_shell, f"%%mlx_vision {flags} -n 1\nDescribe.")
        counts[name] = vlm_shell.user_ns["_mlx"].stats.prompt_tokens
    assert counts["small"] < counts["big"] < counts["two"]


def test_different_images_give_different_greedy_answers(vlm_shell):
    run(vlm_shell, "%%mlx_vision -i red -n 12\nDescribe.")
    with_red = vlm_shell.user_ns["_mlx"].tokens
    run(vlm_shell, "%%mlx_vision -i noise -n 12\nDescribe.")
    with_noise = vlm_shell.user_ns["_mlx"].tokens
    assert [t.id for t in with_red] != [t.id for t in with_noise]


def test_repeat_question_skips_the_vision_encoder_and_answers_the_same(
    vlm_shell, monkeypatch, tmp_path
):
    from mlx_vlm.models.qwen2_vl.vision import VisionModel

    calls = []
    original = VisionModel.__call__

    def counting_call(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VisionModel, "__call__", counting_call)
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(5).random((90, 90, 3)) * 255).astype("uint8")).save(
        photo
    )
    magics = magics_of(vlm_shell)
    decoded_before = magics.image_cache.stats()["hits"]

    run(vlm_shell, f"%%mlx_vision -i {photo} -n 10\nWhat is this?")
    first = [t.id for t in vlm_shell.user_ns["_mlx"].tokens]
    assert len(calls) == 1
    run(vlm_shell, f"%%mlx_vision -i {photo} -n 10\nWhat is this?")
    second = [t.id for t in vlm_shell.user_ns["_mlx"].tokens]
    assert len(calls) == 1  # the encoder did not run again
    assert second == first  # and the cached features give the same greedy answer
    assert magics.image_cache.stats()["hits"] == decoded_before + 1  # nor was the file decoded
    features = magics.backend.models()[0].vision_features
    assert features["hits"] >= 1


def test_a_vision_model_in_plain_mlx_answers_text_only(vlm_shell, tiny_vlm):
    run(vlm_shell, f"%%mlx -m {tiny_vlm} -n 5\nHello there")
    result = vlm_shell.user_ns["_mlx"]
    assert result.stats.generation_tokens == 5 and result.text


def test_status_shows_cache_counts(vlm_shell, capsys):
    run(vlm_shell, "%%mlx_vision -i red -n 2\nAgain?")
    run(vlm_shell, "%mlx status")
    status = capsys.readouterr().out
    assert "Decoded images:" in status and "Vision features" in status


BAD_VISION_CELLS = {
    "no image": "%%mlx_vision -n 5\nhi",
    "text model": "%%mlx_vision -i red -m smollm2\nhi",
    "unknown variable": "%%mlx_vision -i no_such_thing\nhi",
    "missing file": "%%mlx_vision -i /no/such/photo.png\nhi",
    "bad array": "%%mlx_vision -i bad_array\nhi",
    "non-http scheme": "%%mlx_vision -i ftp://example.com/a.png\nhi",
    "empty prompt": "%%mlx_vision -i red\n\n",
}


@pytest.mark.parametrize("cell", BAD_VISION_CELLS.values(), ids=BAD_VISION_CELLS.keys())
def test_bad_vision_input_is_one_usage_error(vlm_shell, cell):
    vlm_shell.user_ns["bad_array"] = np.zeros((4, 4, 7), dtype=np.uint8)
    before = vlm_shell.user_ns.get("_mlx")
    with pytest.raises(UsageError) as caught:
        run(vlm_shell, cell)
    assert type(caught.value) is UsageError
    assert "\n" not in str(caught.value)
    assert vlm_shell.user_ns.get("_mlx") is before


def test_not_an_image_and_too_many_images(vlm_shell, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture")
    with pytest.raises(UsageError):
        run(vlm_shell, f"%%mlx_vision -i {text}\nhi")
    magics = magics_of(vlm_shell)
    magics.max_images = 1
    try:
        with pytest.raises(UsageError, match="more than the 1 allowed"):
            run(vlm_shell, "%%mlx_vision -i red -i noise\nhi")
    finally:
        magics.max_images = 8
    run(vlm_shell, "%%mlx_vision -i red -n 2\nStill working?")
    assert vlm_shell.user_ns["_mlx"].stats.warm is True


def test_no_vision_model_configured_says_how_to_set_one():
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        shell.user_ns["img"] = Image.new("RGB", (8, 8))
        with pytest.raises(UsageError, match="default_vision_model"):
            run(shell, "%%mlx_vision -i img\nhi")
    finally:
        shell.extension_manager.unload_extension("mlx_magic")


def test_vision_conversation_sends_the_history(vlm_shell):
    run(vlm_shell, "%%mlx_vision --chat look -i red -n 4\nWhat colour is this?")
    first = vlm_shell.user_ns["_mlx"].stats.prompt_tokens
    run(vlm_shell, "%%mlx_vision --chat look -i red -n 4\nAnd its shape?")
    second = vlm_shell.user_ns["_mlx"].stats.prompt_tokens
    conversation = magics_of(vlm_shell).session.conversations.get("look")
    assert [turn.user for turn in conversation.turns] == ["What colour is this?", "And its shape?"]
    assert second > first  # the first turn travels as history
