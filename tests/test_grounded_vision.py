"""Grounded vision answers, end to end on mlx-vlm's real generation path.

The tiny Qwen2-VL has random weights, so a scripted logits processor makes it
say a known answer (`mlx_magic.testing.scripted`): the prompt is read, every
step runs, the detokenizer and the streaming are the real ones. The tests
check what the cell does with the coordinates: the boxes in `_mlx`, mapped to
the image's pixels, drawn on the preview, in `-f json`, and the image costs.
"""

import base64
import io

import numpy as np
import pytest
from IPython.core.error import UsageError
from PIL import Image

from mlx_magic.testing.scripted import forced_vision_answer

from conftest import magics_of, run

pytestmark = pytest.mark.vision

QWEN2_BOX = (
    "The cat is here: <|object_ref_start|>cat<|object_ref_end|>"
    "<|box_start|>(100,250),(500,750)<|box_end|> and a dog "
    "<|object_ref_start|>dog<|object_ref_end|><|box_start|>(600,0),(1000,500)<|box_end|>."
)


def test_qwen2_vl_boxes_are_found_in_pixels_of_the_image(vlm_shell):
    with forced_vision_answer(QWEN2_BOX):
        run(vlm_shell, "%%mlx_vision -i red -n 80\nWhere are the animals?")
    result = vlm_shell.user_ns["_mlx"]
    assert result.text == QWEN2_BOX  # the scripted answer came through mlx-vlm whole
    # red is 120×80; Qwen2-VL writes 0–1000 of the image.
    cat, dog = result.boxes
    assert (cat.label, dog.label) == ("cat", "dog")
    assert (cat.x1, cat.y1, cat.x2, cat.y2) == pytest.approx((12, 20, 60, 60))
    assert (dog.x1, dog.y1, dog.x2, dog.y2) == pytest.approx((72, 0, 120, 40))
    assert cat.image == 0 and cat.format == "qwen2_vl"
    crop = cat.crop()
    assert crop.size == (48, 40)


def test_a_crop_is_an_image_to_ask_about_and_its_preview_shows_the_whole(vlm_shell, capsys):
    with forced_vision_answer(QWEN2_BOX):
        run(vlm_shell, "%%mlx_vision -i red -n 80\nWhere are the animals?")
    run(vlm_shell, "cat_crop = _mlx.boxes[0].crop()")
    capsys.readouterr()
    run(vlm_shell, "%%mlx_vision -i cat_crop -n 2\nWhat is this?")
    printed = capsys.readouterr().out
    assert printed.startswith("[image 1: cat_crop · 48×40]")
    loaded = vlm_shell.user_ns["_mlx"]
    assert loaded.images[0]["size"] == (48, 40)


def test_region_flag_sends_only_the_region(vlm_shell):
    run(vlm_shell, "%%mlx_vision -i red --region 10,20,66,76 -n 1\nWhat is this?")
    images = vlm_shell.user_ns["_mlx"].images
    assert images[0]["size"] == (56, 56)
    assert images[0]["source"] == "red [10,20,66,76]"


@pytest.mark.parametrize(
    "region, message",
    [
        ("10,20,500,60", "is outside 'red', which is 120×80"),
        ("1,2,3", "four pixel numbers"),
        ("50,20,10,60", "x2 must be more than x1"),
    ],
)
def test_a_bad_region_is_one_line_and_changes_nothing(vlm_shell, region, message):
    run(vlm_shell, "%%mlx_vision -i red -n 1\nWhat is this?")
    before = vlm_shell.user_ns["_mlx"]
    with pytest.raises(UsageError, match=message):
        run(vlm_shell, f"%%mlx_vision -i red --region {region} -n 1\nWhat is this?")
    assert vlm_shell.user_ns["_mlx"] is before


def test_previews_draw_the_boxes_where_they_are(vlm_shell):
    from mlx_magic.display.previews import preview_bundle

    with forced_vision_answer(QWEN2_BOX):
        run(vlm_shell, "%%mlx_vision -i red -n 80\nWhere are the animals?")
    result = vlm_shell.user_ns["_mlx"]
    white = Image.new("RGB", (120, 80), "white")
    from mlx_magic.grounding import Grounding
    from mlx_magic.images.decoding import finish

    loaded = finish("white", white, 10**8)
    bundle = preview_bundle([loaded], grounding=Grounding(boxes=tuple(result.boxes)))
    sheet = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))).convert("RGB")
    scale = sheet.width / 120
    pixels = np.asarray(sheet)
    # The cat's box spans x 12–60, y 20–60 of the image: its left edge is drawn,
    # the middle of the box and the far corner are untouched.
    left_edge = pixels[int(45 * scale), int(12 * scale) + 1]
    assert tuple(left_edge) != (255, 255, 255)
    assert tuple(pixels[int(45 * scale), int(36 * scale)]) == (255, 255, 255)
    assert tuple(pixels[int(78 * scale), int(2 * scale)]) == (255, 255, 255)
    assert "[box 'cat' (12, 20)–(60, 60) on image 1]" in bundle["text/plain"]


def test_format_json_gets_pixel_coordinates(vlm_shell):
    answer = '```json\n[{"bbox_2d": [250, 500, 750, 1000], "label": "cat"}]\n```'
    with forced_vision_answer(answer):
        run(vlm_shell, "%%mlx_vision -i red -n 80 -f json -o found\nFind the cat as JSON.")
    found = vlm_shell.user_ns["found"]
    # Qwen2-VL's family reads 0–1000 here too.
    assert found == [
        {"bbox_2d": [250, 500, 750, 1000], "label": "cat", "bbox_pixels": [30.0, 40.0, 90.0, 80.0]}
    ]
    with forced_vision_answer(QWEN2_BOX):
        run(vlm_shell, "%%mlx_vision -i red -n 80 -f json -o tags\nWhere?")
    assert [box["label"] for box in vlm_shell.user_ns["tags"]["boxes"]] == ["cat", "dog"]


def test_an_answer_without_coordinates_draws_nothing(vlm_shell):
    with forced_vision_answer("There is (1, 2) of nothing [3, 4] here {5}."):
        run(vlm_shell, "%%mlx_vision -i red -n 40\nWhere?")
    result = vlm_shell.user_ns["_mlx"]
    assert result.boxes == [] and result.points == []


def test_captions_and_footer_say_what_the_image_cost(vlm_shell, tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (640, 480), "blue").save(big)
    run(vlm_shell, f"%%mlx_vision -i {big} -n 1\nDescribe.")
    result = vlm_shell.user_ns["_mlx"]
    (image,) = result.images
    # The tiny processor allows 224×224 pixels at most, in 28-pixel steps.
    assert image["size"] == (640, 480)
    width, height = image["processed_size"]
    assert width % 28 == 0 and height % 28 == 0 and width * height <= 224 * 224
    assert image["vision_tokens"] == width * height // (28 * 28)
    assert result.stats.image_tokens == image["vision_tokens"]
    text_tokens = result.stats.prompt_tokens - result.stats.image_tokens
    assert f"({image['vision_tokens']} image + {text_tokens} text)" in result.footer


def test_max_pixels_shrinks_before_the_processor(vlm_shell, tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (640, 480), "blue").save(big)
    run(vlm_shell, f"%%mlx_vision -i {big} -n 1 --max-pixels 4000\nDescribe.")
    small = vlm_shell.user_ns["_mlx"].images[0]
    # 4,000 pixels at 4:3 is 73×54; the processor rounds to 28-pixel steps.
    assert small["processed_size"][0] * small["processed_size"][1] <= 84 * 56
    with pytest.raises(UsageError, match="--max-pixels must be at least 1024"):
        run(vlm_shell, f"%%mlx_vision -i {big} -n 1 --max-pixels 5\nDescribe.")


def test_a_prompt_beyond_the_context_is_refused_naming_max_pixels(vlm_shell, tiny_vlm, tmp_path):
    import json
    import shutil

    short = tmp_path / "short-context-vlm"
    shutil.copytree(tiny_vlm, short)
    config = json.loads((short / "config.json").read_text())
    config["max_position_embeddings"] = 64
    (short / "config.json").write_text(json.dumps(config))
    big = tmp_path / "big.png"
    Image.new("RGB", (640, 480), "blue").save(big)
    run(vlm_shell, "%%mlx_vision -i red -n 1\nDescribe.")
    before = vlm_shell.user_ns["_mlx"]
    with pytest.raises(UsageError, match=r"reads at most 64: send smaller images \(--max-pixels"):
        run(vlm_shell, f"%%mlx_vision -m {short} -i {big} -n 1\nDescribe.")
    assert vlm_shell.user_ns["_mlx"] is before
    run(vlm_shell, f"%%mlx_vision -m {short} -i {big} --max-pixels 1024 -n 1\nDescribe.")
    assert vlm_shell.user_ns["_mlx"].stats.prompt_tokens < 64


def test_context_refusal_names_max_pixels(tiny_vlm):
    from mlx_vlm import load
    from mlx_vlm.prompt_utils import apply_chat_template

    from mlx_magic.engine.vision_inputs import prepare_vision_inputs
    from mlx_magic.errors import UserError

    model, processor = load(str(tiny_vlm))

    class Warm:
        pass

    warm = Warm()
    warm.model, warm.tokenizer = model, processor
    warm.config = {**model.config.__dict__, "max_position_embeddings": 64}
    image = Image.new("RGB", (224, 224), "blue")
    prompt = apply_chat_template(processor, model.config, "Describe.", num_images=1)
    with pytest.raises(UserError, match=r"--max-pixels") as refused:
        prepare_vision_inputs(warm, prompt, [image], "tiny")
    assert "reads at most 64" in str(refused.value) and "\n" not in str(refused.value)
    small = Image.new("RGB", (56, 56), "blue")
    inputs = prepare_vision_inputs(warm, prompt, [small], "tiny")
    assert inputs.prepared.vision_tokens == (4,)


def test_adding_an_image_encodes_only_the_new_one(vlm_shell, tmp_path, monkeypatch):
    from mlx_vlm.models.qwen2_vl.vision import VisionModel

    calls = []
    original = VisionModel.__call__

    def counting_call(self, pixel_values, grid, *args, **kwargs):
        calls.append(len(grid))
        return original(self, pixel_values, grid, *args, **kwargs)

    monkeypatch.setattr(VisionModel, "__call__", counting_call)
    rng = np.random.default_rng(11)
    paths = []
    for index in range(4):
        path = tmp_path / f"set{index}.png"
        Image.fromarray((rng.random((60, 60 + 8 * index, 3)) * 255).astype("uint8")).save(path)
        paths.append(path)
    three = " ".join(f"-i {path}" for path in paths[:3])
    run(vlm_shell, f"%%mlx_vision {three} -n 3\nCompare.")
    assert calls == [1, 1, 1]
    calls.clear()
    run(vlm_shell, f"%%mlx_vision {three} -i {paths[3]} -n 3\nCompare.")
    assert calls == [1]  # the other three came from the cache


def test_resaving_a_file_under_the_same_name_is_not_served_stale(vlm_shell, tmp_path):
    import os

    path = tmp_path / "figure.bmp"  # uncompressed: the same size whatever the colour
    Image.new("RGB", (64, 64), "red").save(path)
    stat = os.stat(path)
    cache = magics_of(vlm_shell).image_cache
    run(vlm_shell, f"%%mlx_vision -i {path} -n 4\nWhat colour?")
    hits = cache.stats()["hits"]
    # The same size and the same mtime: only the content differs.
    Image.new("RGB", (64, 64), "blue").save(path)
    assert os.stat(path).st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    run(vlm_shell, f"%%mlx_vision -i {path} -n 4\nWhat colour?")
    assert cache.stats()["hits"] == hits  # decoded again, not served from the cache
    run(vlm_shell, f"%%mlx_vision -i {path} -n 4\nWhat colour?")
    assert cache.stats()["hits"] == hits + 1  # unchanged now: a hit


@pytest.mark.kernel
def test_in_a_kernel_boxes_are_drawn_on_the_preview_and_saved_as_metadata(tiny_vlm):
    import os

    from kernel_helpers import execute, running_kernel

    env = {**os.environ, "MLX_MAGIC_DEFAULT_VISION_MODEL": str(tiny_vlm)}
    with running_kernel("%load_ext mlx_magic", extra_env=env) as (_, client):
        code = (
            "from PIL import Image\n"
            "from mlx_magic.testing.scripted import forced_vision_answer\n"
            "red = Image.new('RGB', (120, 80), 'red')\n"
            f"with forced_vision_answer({QWEN2_BOX!r}):\n"
            "    get_ipython().run_cell_magic('mlx_vision', '-i red -n 80', 'Where?')\n"
        )
        reply, messages = execute(client, code, timeout=300)
        assert reply["status"] == "ok", reply
    kinds = [m["msg_type"] for m in messages]
    first = next(m for m in messages if m["msg_type"] == "display_data")
    preview_id = first["content"]["transient"]["display_id"]
    updates = [
        m
        for m in messages
        if m["msg_type"] == "update_display_data"
        and m["content"]["transient"]["display_id"] == preview_id
    ]
    # The costs, at least one drawing while streaming, and the final one with data.
    assert len(updates) >= 2, kinds
    assert "red · 120×80 → 112×84 · 12 tokens" in updates[0]["content"]["data"]["text/plain"]
    final = updates[-1]["content"]
    saved = final["metadata"]["mlx_magic"]
    assert [box["label"] for box in saved["boxes"]] == ["cat", "dog"]
    assert saved["boxes"][0]["x1"] == pytest.approx(12)
    assert "[box 'dog' (72, 0)–(120, 40) on image 1]" in final["data"]["text/plain"]
    sheet = Image.open(io.BytesIO(base64.b64decode(final["data"]["image/png"]))).convert("RGB")
    plain = Image.open(io.BytesIO(base64.b64decode(first["content"]["data"]["image/png"])))
    assert np.asarray(sheet).shape == np.asarray(plain.convert("RGB")).shape
    assert (np.asarray(sheet) != np.asarray(plain.convert("RGB"))).any()  # something drawn


def test_a_remote_qwen2_5_vl_answer_is_drawn_in_pixels_of_the_image(tmp_path):
    """The server's model name says the family; its resize is Qwen2.5-VL's default,
    applied to the image as it was sent (shrunk to --max-pixels first)."""
    from conftest import make_shell
    from fake_openai import Recorder

    server = Recorder()
    # 1280×960 shrunk to 4 × 10⁵ pixels is 730×547; Qwen2.5-VL resizes that to 728×560.
    server.words = ['```json\n[{"bbox_2d": [', "0, 280, 364, ", '560], "label": "car"}]\n```']
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        run(shell, "%config MLXMagics.runtime = 'remote'")
        run(shell, f"%config MLXMagics.endpoints = [{server.url!r}]")
        photo = tmp_path / "street.png"
        Image.new("RGB", (1280, 960), "grey").save(photo)
        run(
            shell,
            f"%%mlx_vision -m Qwen2.5-VL-7B-Instruct -i {photo} --max-pixels 400000 -n 50\n"
            "Find the car.",
        )
        (car,) = shell.user_ns["_mlx"].boxes
        assert car.label == "car" and car.format == "qwen2_5_vl"
        # Half of the processed width and height, in pixels of the original.
        assert (car.x1, car.y1, car.x2, car.y2) == pytest.approx((0, 480, 640, 960), abs=1.5)
        sent = server.requests[-1][3]["messages"][-1]["content"][1]["image_url"]["url"]
        size = Image.open(io.BytesIO(base64.b64decode(sent.split(",", 1)[1]))).size
        assert size[0] * size[1] <= 400_000
    finally:
        shell.extension_manager.unload_extension("mlx_magic")
        server.close()


def test_the_grounding_setting_turns_boxes_off_but_keeps_the_costs(vlm_shell):
    run(vlm_shell, "%config MLXMagics.grounding = False")
    try:
        with forced_vision_answer(QWEN2_BOX):
            run(vlm_shell, "%%mlx_vision -i red -n 80\nWhere are the animals?")
        result = vlm_shell.user_ns["_mlx"]
        assert result.text == QWEN2_BOX and result.boxes == []
        assert result.images[0]["vision_tokens"] == 12
    finally:
        run(vlm_shell, "%config MLXMagics.grounding = True")
