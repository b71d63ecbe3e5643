"""The tiny random models load and run through the real mlx-vlm and mlx-lm paths.

Each model is built once per session (a second or two each); every test
then uses the real ``load`` / ``stream_generate`` code, so a change in
mlx-vlm or mlx-lm that breaks these folders shows up here.
"""

import json
import os

import mlx.core as mx
import numpy as np
import pytest
from PIL import Image

import mlx_magic.testing.tiny_models as tiny_models
import mlx_magic.testing.tiny_models.weights as tiny_weights
from mlx_magic.testing.tiny_models import MARKER, build_tiny_llama, build_tiny_vlm

PROMPT = "Describe this image."


@pytest.fixture(scope="session")
def vlm_folder(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny") / "qwen2-vl")


@pytest.fixture(scope="session")
def llama_folder(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="session")
def vlm(vlm_folder):
    """(model, processor, config) loaded with mlx-vlm's own loader."""
    import mlx_vlm
    from mlx_vlm.utils import load_config

    model, processor = mlx_vlm.load(str(vlm_folder))
    return model, processor, load_config(vlm_folder)


def noise_image(size, seed=0):
    """A random RGB image of ``size`` = (width, height)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3))
    return Image.fromarray(pixels.astype(np.uint8))


def chat_prompt(vlm, num_images):
    from mlx_vlm.prompt_utils import apply_chat_template

    _, processor, config = vlm
    return apply_chat_template(processor, config, PROMPT, num_images=num_images)


def generate(vlm, images, max_tokens=8):
    """All results of one real ``mlx_vlm.stream_generate`` call."""
    import mlx_vlm

    model, processor, _ = vlm
    prompt = chat_prompt(vlm, len(images))
    return list(
        mlx_vlm.stream_generate(model, processor, prompt, image=images, max_tokens=max_tokens)
    )


def prepared(vlm, images):
    """The model inputs mlx-vlm's generate prepares for a chat prompt."""
    from mlx_vlm.utils import prepare_inputs

    model, processor, _ = vlm
    return prepare_inputs(
        processor,
        images=images,
        prompts=chat_prompt(vlm, len(images)),
        image_token_index=getattr(model.config, "image_token_index", None),
    )


def first_logits(vlm, image):
    """Next-token logits after the prompt with ``image``: one forward pass."""
    model, _, _ = vlm
    inputs = prepared(vlm, [image])
    out = model(
        inputs["input_ids"],
        inputs["pixel_values"],
        mask=inputs["attention_mask"],
        image_grid_thw=inputs["image_grid_thw"],
    )
    logits = out.logits[0, -1]
    mx.eval(logits)
    return np.array(logits)


def file_states(folder):
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------
# Building


def test_vlm_folder_is_laid_out_like_a_hub_repo(vlm_folder):
    names = {p.name for p in vlm_folder.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "chat_template.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        MARKER,
    } <= names
    config = json.loads((vlm_folder / "config.json").read_text())
    assert config["model_type"] == "qwen2_vl"
    weights = mx.load(str(vlm_folder / "model.safetensors"))
    assert all(w.dtype == mx.float32 for w in weights.values())
    # A few MB at most.
    assert (vlm_folder / "model.safetensors").stat().st_size < 4_000_000


def test_vlm_config_token_ids_match_the_tokenizer(vlm):
    _, processor, config = vlm
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    assert config["image_token_id"] == ids("<|image_pad|>")
    assert config["video_token_id"] == ids("<|video_pad|>")
    assert config["vision_start_token_id"] == ids("<|vision_start|>")
    assert config["vision_end_token_id"] == ids("<|vision_end|>")
    assert tokenizer.eos_token_id == ids("<|im_end|>")
    # load_config merges generation_config.json's eos list, as for Qwen2-VL.
    assert config["eos_token_id"] == [ids("<|im_end|>"), ids("<|endoftext|>")]
    assert config["vocab_size"] == len(tokenizer)


def test_build_is_deterministic(vlm_folder, tmp_path):
    again = build_tiny_vlm(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (vlm_folder / name).read_bytes(), name

    other = build_tiny_vlm(tmp_path / "other", seed=1)
    a = mx.load(str(vlm_folder / "model.safetensors"))
    b = mx.load(str(other / "model.safetensors"))
    assert a.keys() == b.keys()
    key = "language_model.model.embed_tokens.weight"
    assert not mx.array_equal(a[key], b[key])


def test_build_is_idempotent(vlm_folder):
    before = file_states(vlm_folder)
    assert build_tiny_vlm(vlm_folder) == vlm_folder
    assert build_tiny_vlm(str(vlm_folder)) == vlm_folder
    assert file_states(vlm_folder) == before


def test_build_refuses_a_folder_with_other_contents(vlm_folder, tmp_path):
    with pytest.raises(FileExistsError):
        build_tiny_vlm(vlm_folder, seed=1)  # another recipe
    with pytest.raises(FileExistsError):
        build_tiny_llama(vlm_folder)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_tiny_llama(foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_build_into_an_existing_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    folder = build_tiny_llama(tmp_path / "empty")
    assert (folder / MARKER).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tiny_weights, "save_random_weights", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_tiny_llama(tmp_path / "llama")
    # Neither the folder nor the temporary build next to it remains.
    assert list(tmp_path.iterdir()) == []


def test_cli_prints_the_folder(llama_folder, capsys):
    assert tiny_models.main(["llama", str(llama_folder)]) == 0
    assert capsys.readouterr().out.strip() == str(llama_folder)


# --------------------------------------------------------------------------
# The VLM through mlx-vlm


def test_vlm_stream_generate_with_an_image(vlm):
    results = generate(vlm, [noise_image((120, 100))], max_tokens=20)
    last = results[-1]
    assert last.prompt_tokens > 0
    assert 0 < last.generation_tokens <= 20
    # Chunks are not tokens (the detokenizer may hold text back); the text
    # as a whole is random but not empty.
    text = "".join(r.text for r in results)
    assert isinstance(text, str) and text.strip()


def test_chat_template_places_image_tokens(vlm):
    _, processor, config = vlm
    prompt = chat_prompt(vlm, 1)
    assert "<|vision_start|><|image_pad|><|vision_end|>" in prompt
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith("<|im_start|>assistant\n")

    inputs = prepared(vlm, [noise_image((224, 224))])
    ids = inputs["input_ids"][0].tolist()
    n_image = ids.count(config["image_token_id"])
    assert n_image > 0
    # One <|image_pad|> per 2x2 merged 14-pixel patch: 224/28 squared.
    assert n_image == (224 // 28) ** 2
    assert ids.index(config["image_token_id"]) - 1 == ids.index(config["vision_start_token_id"])


def test_prompt_tokens_grow_with_the_number_of_images(vlm):
    one = generate(vlm, [noise_image((56, 56))], max_tokens=1)[-1].prompt_tokens
    two = generate(vlm, [noise_image((56, 56)), noise_image((56, 56), seed=1)], max_tokens=1)[
        -1
    ].prompt_tokens
    # A 56x56 image is 4 image tokens, plus its vision start and end.
    assert two - one == 4 + 2


def test_prompt_tokens_grow_with_image_size(vlm):
    small = generate(vlm, [noise_image((56, 56))], max_tokens=1)[-1].prompt_tokens
    large = generate(vlm, [noise_image((224, 224))], max_tokens=1)[-1].prompt_tokens
    assert large - small == 64 - 4
    # Larger than max_pixels is scaled down to it.
    huge = generate(vlm, [noise_image((448, 448))], max_tokens=1)[-1].prompt_tokens
    assert huge == large


def test_different_images_give_different_logits(vlm):
    a = first_logits(vlm, noise_image((112, 112), seed=0))
    b = first_logits(vlm, noise_image((112, 112), seed=1))
    again = first_logits(vlm, noise_image((112, 112), seed=0))
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, again)
    assert np.abs(a - b).max() > 1e-3


# --------------------------------------------------------------------------
# The llama through mlx-lm


def test_llama_loads_chats_and_generates(llama_folder):
    import mlx_lm

    model, tokenizer = mlx_lm.load(str(llama_folder))
    messages = [{"role": "user", "content": "Hello there!"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>user\nHello there!<|im_end|>\n<|im_start|>assistant\n")
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    assert ids == tokenizer.encode(prompt, add_special_tokens=False)
    assert tokenizer.eos_token_ids == {tokenizer.convert_tokens_to_ids("<|im_end|>")}

    results = list(mlx_lm.stream_generate(model, tokenizer, prompt, max_tokens=16))
    assert results[-1].prompt_tokens == len(ids)
    assert results[-1].generation_tokens == len(results) <= 16
    assert "".join(r.text for r in results).strip()


def test_llama_size_options(tmp_path):
    import mlx_lm

    folder = build_tiny_llama(tmp_path / "wide", hidden_size=128, num_layers=3)
    config = json.loads((folder / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"]) == (128, 3)
    model, _ = mlx_lm.load(str(folder))
    assert len(model.layers) == 3
    with pytest.raises(ValueError):
        build_tiny_llama(tmp_path / "bad", hidden_size=100, num_heads=3)
    assert not os.path.exists(tmp_path / "bad")
