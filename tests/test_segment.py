"""``%%mlx_vision --segment``: SAM 3 through the real runtime, its masks drawn, counted, kept.

A tiny random SAM 3 built from mlx-vlm's own config classes runs mlx-vlm's
real ``load_model``, ``Sam3Processor`` and ``Sam3Predictor``. Its scores are
noise, so where the result matters the predictor's answer is scripted: its
``predict`` returns fixed masks (``scripted_masks``), and everything after it
(mlx-vlm's NMS, the encoding, the runtime, the drawing, ``_mlx``) is real.
"""

import dataclasses
import json

import numpy as np
import pytest
from IPython.core.error import UsageError
from mlx_vlm.models.sam3 import generate as sam3_generate
from mlx_vlm.models.sam3.processing_sam3 import Sam3Processor
from PIL import Image

from mlx_magic.display.masks_view import OPACITY, count_line, draw_masks
from mlx_magic.magics.segmenting import _latest_images
from mlx_magic.testing.scripted import forced_vision_answer
from mlx_magic.vocabulary.masks import Mask

from conftest import magics_of, one_line, run

pytestmark = pytest.mark.vision

# red is 120×80 (the vlm_shell's image): two cars and a cup, as SAM 3 would give them.
CAR_1 = (slice(10, 30), slice(5, 45))  # rows 10-29, columns 5-44: 20 × 40 = 800 px
CAR_2 = (slice(40, 70), slice(60, 100))  # 30 × 40 = 1200 px
CUP = (slice(50, 60), slice(10, 20))  # 10 × 10 = 100 px


def _detections(*regions, scores=None):
    masks = np.zeros((len(regions), 80, 120), np.uint8)
    boxes = []
    for index, (rows, cols) in enumerate(regions):
        masks[index, rows, cols] = 1
        boxes.append([cols.start, rows.start, cols.stop, rows.stop])
    return sam3_generate.DetectionResult(
        boxes=np.array(boxes, np.float32),
        masks=masks,
        scores=np.array(scores or [0.9 - 0.1 * i for i in range(len(regions))], np.float32),
    )


def segmenting_with(shell, folder):
    """``shell`` with ``folder`` as its segmenter, the settings restored after (a fixture's body)."""
    run(shell, f"%config MLXMagics.default_segment_model = {str(folder)!r}")
    yield shell
    run(shell, "%config MLXMagics.default_segment_model = None")
    run(shell, "%config MLXMagics.segment_threshold = 0.5")


@pytest.fixture
def sam_shell(vlm_shell, tiny_sam3):
    """The vision shell with the tiny SAM 3 as its segmenter; settings restored after."""
    yield from segmenting_with(vlm_shell, tiny_sam3)


@pytest.fixture
def scripted_masks(monkeypatch):
    """SAM 3 runs for real, and its post-processing answers with the next of
    ``answers`` (one per prompt, in order); ``asked`` records each prompt and
    its box prompts."""
    answers = []
    asked = []
    predict = sam3_generate.Sam3Predictor.predict

    def postprocess(self, outputs, image_size, threshold=0.5):
        return answers.pop(0)

    def recording_predict(self, image, text_prompt, boxes=None, score_threshold=None):
        asked.append((text_prompt, None if boxes is None else np.asarray(boxes).tolist()))
        return predict(self, image, text_prompt, boxes=boxes, score_threshold=score_threshold)

    monkeypatch.setattr(sam3_generate.Sam3Predictor, "_postprocess", postprocess)
    monkeypatch.setattr(sam3_generate.Sam3Predictor, "predict", recording_predict)
    return answers, asked


def test_the_tiny_sam3_runs_through_the_runtime_and_stays_warm(sam_shell, tiny_sam3, capsys):
    run(sam_shell, "%config MLXMagics.segment_threshold = 0.0")
    run(sam_shell, "%%mlx_vision -i red --segment\ncar")
    result = sam_shell.user_ns["_mlx"]
    # Random weights: every query scores above 0, and mlx-vlm's NMS keeps some.
    assert 1 <= len(result.masks) <= 8
    for mask in result.masks:
        assert mask.label == "car" and 0 < mask.score < 1
        assert mask.mask.shape == (80, 120) and mask.mask.dtype == bool
        assert mask.area == int(mask.mask.sum())
    assert capsys.readouterr().out.rstrip().endswith(f"· {tiny_sam3.name} · {result.took_s:.2f} s]")
    warm = magics_of(sam_shell).backend.models()
    assert [(m.name, m.kind) for m in warm if m.kind == "segmenter"] == [
        (tiny_sam3.name, "segmenter")
    ]
    run(sam_shell, "%mlx models")
    listed = capsys.readouterr().out.splitlines()
    (row,) = [line for line in listed if line.startswith(tiny_sam3.name)]
    assert row.split()[1] == "segmenter"
    assert listed[0].index("memory") == row.index(" GiB") - 6  # the columns line up


def test_masks_are_kept_counted_and_shown(sam_shell, scripted_masks, capsys):
    answers, _ = scripted_masks
    answers += [_detections(CAR_1, CAR_2), _detections(CUP, scores=[0.7])]
    run(sam_shell, "%%mlx_vision -i red --segment -o found\ncar, cup")
    result = sam_shell.user_ns["_mlx"]
    assert sam_shell.user_ns["found"] is result
    car_1, car_2, cup = result.masks
    assert [m.label for m in result.masks] == ["car", "car", "cup"]
    assert (car_1.area, car_2.area, cup.area) == (800, 1200, 100)
    assert car_1.box == (5, 10, 45, 30)
    assert car_1.centroid == pytest.approx((24.5, 19.5))
    assert car_1.score == pytest.approx(0.9)
    assert car_2.mask[40:70, 60:100].all() and car_2.mask.sum() == 1200
    printed = capsys.readouterr().out
    assert "[2 cars · 1 cup · " in printed
    assert "car 0.90 · (5, 10)–(45, 30) · 800 px · image 1" in printed
    # The masks' boxes are grounding boxes: a crop is an image to ask about.
    assert result.boxes[1].crop().size == (40, 30)


def test_marks_at_boxes_numbers_the_masks_and_the_answer_points_back(sam_shell, scripted_masks):
    from mlx_magic.grounding.mark_drawing import mark_colour

    answers, _ = scripted_masks
    answers.append(_detections(CAR_1, CAR_2))
    run(sam_shell, "%%mlx_vision -i red --segment\ncar")
    # SAM outlined, now the vision model is asked about the regions by number.
    with forced_vision_answer("Mark 2 is the bigger car."):
        run(sam_shell, "%%mlx_vision --marks @boxes -n 30\nWhich mark is bigger?")
    result = sam_shell.user_ns["_mlx"]
    assert [(mark.number, mark.label, mark.box) for mark in result.marks] == [
        (1, "car", (5, 10, 45, 30)),
        (2, "car", (60, 40, 100, 70)),
    ]
    assert [(ref.number, ref.text) for ref in result.refs] == [(2, "Mark 2")]
    # The picture sent is the segmented one, numbered region by region.
    (sent,) = result.request.images
    pixels = np.asarray(sent.convert("RGB"))
    assert sent.size == (120, 80)
    assert tuple(pixels[25, 5]) == mark_colour(1)  # car 1's left edge, below its tag
    assert tuple(pixels[20, 25]) == (255, 0, 0)  # inside it: the image itself


def test_json_carries_the_masks_run_length_encoded(sam_shell, scripted_masks, capsys):
    answers, _ = scripted_masks
    answers.append(_detections(CUP, scores=[0.7]))
    run(sam_shell, "%%mlx_vision -i red --segment -f json\ncup")
    printed = capsys.readouterr().out
    data = json.loads(printed[printed.index("{") :])
    assert data == sam_shell.user_ns["_mlx"].data
    (cup,) = data["masks"]
    assert cup["label"] == "cup" and cup["area"] == 100 and cup["box"] == [10, 50, 20, 60]
    assert cup["rle"]["size"] == [80, 120] and isinstance(cup["rle"]["counts"], str)
    # The RLE is COCO's: supervision (pycocotools' format) decodes it to the mask.
    import supervision

    decoded = supervision.rle_to_mask(cup["rle"]["counts"], resolution_wh=(120, 80))
    assert decoded.sum() == 100 and decoded[CUP].all()


def test_rle_round_trip():
    # COCO's RLE counts column by column (pycocotools' format): a 2×2 square
    # inside 4×4 is 5 off, 2 on, 2 off, 2 on, 5 off, compressed '52203'.
    square = np.zeros((4, 4), bool)
    square[1:3, 1:3] = True
    coco = Mask.from_array(square, label="x", score=1, box=(1, 1, 3, 3))
    assert coco.rle() == {"size": [4, 4], "counts": "52203"}
    assert coco.area == 4 and coco.centroid == (1.5, 1.5)
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (7, 5), (80, 120), (33, 2)]:
        pixels = rng.random(shape) > 0.6
        mask = Mask.from_array(pixels, label="x", score=0.5, box=(0, 0, 1, 1))
        assert np.array_equal(mask.mask, pixels)
        assert mask.area == int(pixels.sum())
        again = Mask(**dataclasses.asdict(mask))  # from its fields alone, as the worker sends it
        assert np.array_equal(again.mask, pixels)


def test_the_overlay_is_translucent_outlined_and_only_on_the_mask():
    image = Image.new("RGB", (100, 80), "white")
    pixels = np.zeros((80, 100), bool)
    pixels[20:60, 30:70] = True
    mask = Mask.from_array(pixels, label="box", score=0.9, box=(30, 20, 70, 60))
    drawn = np.asarray(draw_masks(image, [mask], max_side=100)).astype(int)
    inside, outside = drawn[45, 50], drawn[75, 5]
    assert outside.tolist() == [255, 255, 255]  # untouched away from the mask
    # Translucent: tinted, not white and not the full colour.
    assert inside.tolist() != [255, 255, 255] and inside.min() > 255 * (1 - OPACITY) - 2
    edge = drawn[59, 50]  # the outline on the mask's lower edge is the full colour
    assert edge.min() < inside.min()
    assert count_line([mask, mask]) == "2 boxes"
    # A prompt given plural ("cups", as the one-line hints say) is counted as it is.
    cups, glass = (dataclasses.replace(mask, label=label) for label in ("cups", "glass"))
    assert count_line([cups, cups, glass, glass]) == "2 cups · 2 glasses"


def test_boxes_of_the_latest_answer_are_outlined_one_mask_each(sam_shell, scripted_masks):
    answers, asked = scripted_masks
    with forced_vision_answer(
        "<|object_ref_start|>car<|object_ref_end|><|box_start|>(50,125),(375,375)<|box_end|>"
    ):
        run(sam_shell, "%%mlx_vision -i red -n 60\nWhere is the car?")
    answer = sam_shell.user_ns["_mlx"]
    (box,) = answer.boxes
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx((6, 10, 45, 30))
    # SAM 3 finds both cars from the box exemplar: the one the box covers is kept.
    answers.append(_detections(CAR_2, CAR_1))
    run(sam_shell, "%%mlx_vision --segment\n@boxes")
    assert asked[-1][0] == "car" and np.allclose(asked[-1][1], [[6, 10, 45, 30]])
    (outlined,) = sam_shell.user_ns["_mlx"].masks
    assert outlined.label == "car" and outlined.box == (5, 10, 45, 30)
    # The picture keeps the name it had in the answer (its preview's caption).
    loaded = _latest_images(magics_of(sam_shell).session, answer)
    assert [image.source for image in loaded] == ["red"]


def test_boxes_drawn_on_a_preview_are_outlined_on_their_image(sam_shell, scripted_masks):
    from mlx_magic.grounding.marks import Mark
    from mlx_magic.images import load_images

    answers, asked = scripted_masks
    session = magics_of(sam_shell).session
    with pytest.raises(UsageError) as caught:
        run(sam_shell, "%mlx segment @marks")
    assert "none is drawn: drag a box on a preview first" in one_line(caught)
    # What drawing leaves (a notebook frontend's board, not this terminal shell): the
    # previews drawn on last, with a point (left out) and a labelled box.
    drawn_on = load_images(["red"], sam_shell.user_ns, cache=session.image_cache)
    board = type("Drawn", (), {})()
    board.images = tuple(drawn_on)
    board.shown_marks = (
        Mark(1, "point", (10.0, 10.0)),
        Mark(2, "box", (60.0, 40.0, 100.0, 70.0), label="car"),
    )
    session.latest_marks.previews = board
    answers.append(_detections(CAR_1, CAR_2))
    run(sam_shell, "%mlx segment @marks")
    assert asked[-1][0] == "car" and np.allclose(asked[-1][1], [[60, 40, 100, 70]])
    (outlined,) = sam_shell.user_ns["_mlx"].masks
    assert outlined.label == "car" and outlined.box == (60, 40, 100, 70)
    session.latest_marks.previews = None


@pytest.mark.parametrize(
    ("cell", "says"),
    [
        ("%%mlx_vision -i red --segment -m {vlm}\ncar", "is a vision model"),
        ("%%mlx_vision -i red -m {sam}\nWhat is this?", "is a segmenter (SAM 3 / 3.1)"),
        ("%%mlx_vision -i red --segment car\nand a cup", "both say what to find"),
        ("%%mlx_vision -i red --segment\n  ", "Say what to segment"),
        ("%%mlx_vision -i red --segment\n@3", "the @ it takes are @boxes"),
        ("%%mlx_vision -i red --segment --chat look\ncar", "leave out --chat"),
        ("%%mlx_vision --segment\ncar", "--segment needs an image"),
    ],
)
def test_mistakes_are_one_line_and_change_nothing(sam_shell, tiny_vlm, tiny_sam3, cell, says):
    sam_shell.user_ns["_mlx"] = before = object()
    with pytest.raises(UsageError) as caught:
        run(sam_shell, cell.format(vlm=tiny_vlm, sam=tiny_sam3))
    assert says in one_line(caught)
    assert sam_shell.user_ns["_mlx"] is before


def test_a_text_cell_given_a_segmenter_is_one_line(sam_shell, tiny_sam3):
    with pytest.raises(UsageError) as caught:
        run(sam_shell, f"%%mlx -m {tiny_sam3}\nHello")
    assert "is a segmenter (SAM 3 / 3.1): it draws masks and does not answer" in one_line(caught)


def test_no_segment_model_is_one_line(vlm_shell):
    with pytest.raises(UsageError) as caught:
        run(vlm_shell, "%%mlx_vision -i red --segment\ncar")
    assert one_line(caught).startswith("No segment model: pass -m")


def test_boxes_with_no_boxes_in_the_latest_answer_is_one_line(sam_shell):
    run(sam_shell, "%%mlx_vision -i red -n 2\nWhat is this?")  # an answer without boxes
    answer = sam_shell.user_ns["_mlx"]
    with pytest.raises(UsageError) as caught:
        run(sam_shell, "%mlx segment @boxes")
    assert "_mlx has none" in one_line(caught)
    assert sam_shell.user_ns["_mlx"] is answer


def test_the_process_runtime_gives_the_same_masks(tiny_sam3):
    """The worker runs SAM 3 and the masks cross the pipe run-length encoded: the
    same masks, pixel for pixel, as the thread runtime's (same weights, same image)."""
    from conftest import make_shell

    found = {}
    for mode in ("thread", "process"):
        shell = make_shell()
        shell.extension_manager.load_extension("mlx_magic")
        try:
            if mode == "process":
                run(shell, "%mlx runtime process")
            run(shell, "from PIL import Image; red = Image.new('RGB', (120, 80), 'red')")
            run(shell, "blue = Image.new('RGB', (120, 80), 'blue')")
            run(shell, "%config MLXMagics.segment_threshold = 0.0")
            # Two images: a call to the worker each, drawn as each comes back.
            run(shell, f"%%mlx_vision -i red -i blue --segment -m {tiny_sam3}\ncar, cup")
            found[mode] = shell.user_ns["_mlx"].masks
            kinds = [m.kind for m in magics_of(shell).backend.models()]
            assert kinds == ["segmenter"]
        finally:
            shell.extension_manager.unload_extension("mlx_magic")
    assert found["process"] and len(found["process"]) == len(found["thread"])
    assert {m.image for m in found["process"]} == {0, 1}
    for ours, theirs in zip(found["thread"], found["process"]):
        assert (ours.label, ours.area, ours.counts) == (theirs.label, theirs.area, theirs.counts)
        assert ours.score == pytest.approx(theirs.score, abs=1e-5)
        assert np.array_equal(ours.mask, theirs.mask)


def test_a_server_cannot_segment_and_says_so_in_one_line(sam_shell):
    from fake_openai import Recorder

    server = Recorder()
    try:
        run(sam_shell, f"%mlx connect {server.url}")
        sent = len(server.requests)
        with pytest.raises(UsageError) as caught:
            run(sam_shell, "%%mlx_vision -i red --segment\ncar")
        assert "needs a local model" in one_line(caught)
        assert len(server.requests) == sent
    finally:
        run(sam_shell, "%mlx disconnect")
        server.close()


@pytest.mark.kernel
def test_in_a_kernel_the_masks_are_drawn_and_saved_as_metadata(tiny_sam3):
    import base64
    import io
    import os

    from kernel_helpers import displays, execute, running_kernel

    env = {**os.environ, "MLX_MAGIC_DEFAULT_SEGMENT_MODEL": str(tiny_sam3)}
    with running_kernel("%load_ext mlx_magic", extra_env=env) as (_, client):
        code = (
            "import numpy as np\n"
            "from PIL import Image\n"
            "from mlx_magic.testing.scripted import forced_masks\n"
            "white = Image.new('RGB', (120, 80), 'white')\n"
            "car = np.zeros((80, 120), bool); car[40:70, 60:100] = True\n"
            "with forced_masks(car):\n"
            "    get_ipython().run_cell_magic('mlx_vision', '-i white --segment', 'car')\n"
        )
        reply, messages = execute(client, code, timeout=300)
        assert reply["status"] == "ok", reply
    # The picture first, with a note while SAM 3 loads and runs; then, in place, the masks.
    (first,) = [m["content"] for m in messages if m["msg_type"] == "display_data"]
    assert "[segmenting 1 image with tiny-sam3 (loading it first)…]" in first["data"]["text/plain"]
    plain = np.asarray(
        Image.open(io.BytesIO(base64.b64decode(first["data"]["image/png"]))).convert("RGB")
    )
    assert (plain == 255).all()  # nothing drawn yet
    (shown,) = [m["content"] for m in messages if m["msg_type"] == "update_display_data"]
    assert shown["transient"]["display_id"] == first["transient"]["display_id"]
    (saved,) = shown["metadata"]["mlx_magic"]["masks"]
    assert saved["label"] == "car" and saved["area"] == 1200 and saved["box"] == [60, 40, 100, 70]
    assert saved["rle"]["size"] == [80, 120]
    assert "[1 car · tiny-sam3 · " in shown["data"]["text/plain"]
    assert "1 car · tiny-sam3" in shown["data"]["text/html"]
    sheet = np.asarray(
        Image.open(io.BytesIO(base64.b64decode(shown["data"]["image/png"]))).convert("RGB")
    )
    assert sheet.shape == (80, 120, 3)
    assert sheet[5, 5].tolist() == [255, 255, 255]  # nothing drawn outside the mask
    inside = sheet[62, 80]
    assert inside.tolist() != [255, 255, 255] and inside.min() > 100  # tinted, translucent
    assert len(displays(messages)) == 1
    assert "segmenting" not in shown["data"]["text/plain"]
    # Two images: the first one's masks are drawn in place before the second's are found.
    with running_kernel("%load_ext mlx_magic", extra_env=env) as (_, client):
        code = code.replace("'-i white --segment'", "'-i white -i white --segment'")
        reply, messages = execute(client, code, timeout=300)
        assert reply["status"] == "ok", reply
    first_done, finished = [
        m["content"] for m in messages if m["msg_type"] == "update_display_data"
    ]
    plain = first_done["data"]["text/plain"]
    assert "segmenting 2 images with tiny-sam3: 1 of 2 done…" in plain
    assert "car 0.90 · (60, 40)–(100, 70) · 1,200 px · image 1" in plain
    assert "· image 2" not in plain and "[image 2: white" in plain  # shown, not yet segmented
    assert first_done["data"]["text/html"].count("<img") == 2
    assert [m["image"] for m in finished["metadata"]["mlx_magic"]["masks"]] == [0, 1]
    assert "[2 cars · tiny-sam3 · " in finished["data"]["text/plain"]


@pytest.fixture(scope="module")
def tiny_sam3_video(tmp_path_factory):
    """The tiny SAM 3 in its tracking shape (SAM 3's 72 × 72 patches), which
    mlx-vlm's video predictor runs."""
    from mlx_magic.testing.tiny_models import build_tiny_sam3

    return build_tiny_sam3(tmp_path_factory.mktemp("models") / "tiny-sam3-video", video=True)


@pytest.fixture
def box_prompts(monkeypatch):
    """Each box prompt mlx-vlm's video predictor is given (the real one runs)."""
    given = []
    add_box_prompt = sam3_generate.Sam3VideoPredictor.add_box_prompt

    def recording(self, box, frame_idx, object_id=None):
        given.append((np.asarray(box).tolist(), frame_idx))
        return add_box_prompt(self, box, frame_idx, object_id)

    monkeypatch.setattr(sam3_generate.Sam3VideoPredictor, "add_box_prompt", recording)
    return given


def test_a_video_is_tracked_by_sam3s_video_predictor(
    sam_shell, tiny_sam3_video, box_prompts, capsys
):
    """-v with --segment: what the detector finds on the first frame is tracked
    through the frames by mlx-vlm's Sam3VideoPredictor (its box, then its memory),
    each object keeping the predictor's id; a strip with the masks and ids."""
    from mlx_magic.testing.scripted import forced_masks

    ball = np.zeros((80, 120), bool)
    ball[30:50, 12:36] = True
    sam_shell.user_ns["frames"] = [Image.new("RGB", (120, 80), "white") for _ in range(3)]
    with forced_masks(ball):
        run(sam_shell, f"%%mlx_vision -v frames --fps 3 --segment -m {tiny_sam3_video}\nball")
    result = sam_shell.user_ns["_mlx"]
    # The first frame's one detection became one object, from its box (0..1 of the frame).
    ((box, frame),) = box_prompts
    assert frame == 0 and box == pytest.approx([12 / 120, 30 / 80, 36 / 120, 50 / 80])
    # The random tracker's masks are noise, but they are its own: one object, one id.
    assert result.masks and {m.track for m in result.masks} == {1}
    assert {m.label for m in result.masks} == {"ball"}
    assert [m.image for m in result.masks] == sorted(m.image for m in result.masks)
    assert {m.image for m in result.masks} <= {0, 1, 2}
    assert all(m.mask.shape == (80, 120) and m.area > 0 for m in result.masks)
    assert all(0 <= m.score <= 1 for m in result.masks)
    assert result.timestamps == (0.0, 0.33, 0.67)
    printed = capsys.readouterr().out
    assert f"[1 ball tracked through 3 frames · {tiny_sam3_video.name} · " in printed
    assert "[frame 3: 0.7 s]" in printed
    last = result.masks[-1]
    assert f"ball #1 {last.score:.2f} · " in printed


def test_a_video_file_is_read_by_the_runtime_and_tracked(
    sam_shell, tiny_sam3_video, box_prompts, tmp_path
):
    import cv2

    from mlx_magic.testing.scripted import forced_masks

    path = tmp_path / "ball.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 4, (112, 80))
    for step in range(8):
        frame = np.full((80, 112, 3), 255, np.uint8)
        frame[30:50, 10 + step * 10 : 30 + step * 10] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    ball = np.zeros((80, 112), bool)
    ball[30:50, 10:30] = True
    with forced_masks(ball):
        run(
            sam_shell,
            f"%%mlx_vision -v {path} --fps 2 --max-frames 2 --segment -m {tiny_sam3_video}\nball",
        )
    result = sam_shell.user_ns["_mlx"]
    assert len(result.images) == len(result.timestamps) == 2  # read and sampled by mlx-vlm
    assert result.images[0].size == (112, 80)
    assert len(box_prompts) == 1
    assert result.masks and {m.track for m in result.masks} == {1}
    assert {m.image for m in result.masks} <= {0, 1, 2}
    assert all(m.mask.shape == (80, 112) for m in result.masks)


def test_a_model_the_video_predictor_cannot_run_is_one_line(sam_shell):
    """The image shape of the tiny SAM 3 (8 × 8 patches) cannot be tracked:
    mlx-vlm's video predictor needs SAM 3's 72 × 72."""
    sam_shell.user_ns["frames"] = [Image.new("RGB", (120, 80), "white") for _ in range(2)]
    answer = sam_shell.user_ns.get("_mlx")
    with pytest.raises(UsageError) as caught:
        run(sam_shell, "%%mlx_vision -v frames --segment\nball")
    assert "needs SAM 3's 72 × 72 patches (1008-px input); this model has 8 × 8" in one_line(caught)
    assert sam_shell.user_ns.get("_mlx") is answer


def test_each_image_is_shown_as_soon_as_it_is_segmented(sam_shell, scripted_masks, capsys):
    """Two images, two prompts: the first image's masks are printed before SAM 3
    is asked about the second (read from what was printed when it is asked)."""
    answers, _ = scripted_masks
    answers += [_detections(CAR_1), _detections(CUP), _detections(CAR_2), _detections(CUP)]
    printed_when_asked = []
    preprocess = Sam3Processor.preprocess_image

    def look_then_read(self, image):
        printed_when_asked.append(capsys.readouterr().out)
        return preprocess(self, image)

    sam_shell.user_ns["green"] = Image.new("RGB", (120, 80), "green")
    with pytest.MonkeyPatch.context() as patch:
        # SAM 3's processor reads each image once, then each prompt is asked.
        patch.setattr(Sam3Processor, "preprocess_image", look_then_read)
        run(sam_shell, "%%mlx_vision -i red -i green --segment\ncar, cup")
    first, second = printed_when_asked
    assert "[segmenting 2 images with tiny-sam3" in first and "image 1" not in first
    assert "[image 1: red" in second
    assert "car 0.90 · (5, 10)–(45, 30) · 800 px · image 1" in second
    assert "cup 0.90 · (10, 50)–(20, 60) · 100 px · image 1" in second
    assert "image 2" not in second
    after = capsys.readouterr().out
    assert (
        "[image 2: green" in after and "car 0.90 · (60, 40)–(100, 70) · 1,200 px · image 2" in after
    )
    assert "image 1" not in after  # not printed again
    result = sam_shell.user_ns["_mlx"]
    assert [(m.label, m.image) for m in result.masks] == [
        ("car", 0),
        ("cup", 0),
        ("car", 1),
        ("cup", 1),
    ]
    assert after.rstrip().endswith(f"· tiny-sam3 · {result.took_s:.2f} s]")
    assert "[2 cars · 2 cups · " in after


def test_an_interrupt_stops_between_images_and_keeps_those_done(sam_shell, scripted_masks):
    """Interrupted (a real SIGINT) while SAM 3 reads the second image: the first
    image's masks are kept in _mlx, counted, and the footer says where it stopped."""
    import os
    import signal

    answers, _ = scripted_masks
    answers += [_detections(CAR_1), _detections(CAR_2), _detections(CUP)]
    preprocess = Sam3Processor.preprocess_image
    calls = []

    def interrupted_on_the_second(self, image):
        calls.append(image.size)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the kernel's interrupt, mid-image
        return preprocess(self, image)

    sam_shell.user_ns["green"] = Image.new("RGB", (120, 80), "green")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Sam3Processor, "preprocess_image", interrupted_on_the_second)
        with pytest.raises(KeyboardInterrupt) as caught:
            run(sam_shell, "%%mlx_vision -i red -i green -i red --segment\ncar")
        # The image begun finishes on the runtime: a call queued behind it waits for it.
        magics_of(sam_shell).backend.clear_caches()
    assert "stopped after image 1 of 3; _mlx keeps the masks found" in str(caught.value)
    result = sam_shell.user_ns["_mlx"]
    assert [(m.label, m.image, m.area) for m in result.masks] == [("car", 0, 800)]
    assert result.footer.startswith("1 car · tiny-sam3 · ")
    assert result.footer.endswith(" · stopped after image 1 of 3")
    assert len(calls) == 2  # the third image was never asked about


def test_a_damaged_segmenter_is_one_line_and_the_warm_one_stays(sam_shell, tiny_sam3, tmp_path):
    import shutil

    run(sam_shell, "%%mlx_vision -i red --segment\ncar")  # the good one is warm
    broken = tmp_path / "broken-sam3"
    shutil.copytree(tiny_sam3, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    answer = sam_shell.user_ns["_mlx"]
    with pytest.raises(UsageError) as caught:
        run(sam_shell, f"%%mlx_vision -i red --segment -m {broken}\ncar")
    assert "broken-sam3" in one_line(caught)
    assert sam_shell.user_ns["_mlx"] is answer
    warm = [m.name for m in magics_of(sam_shell).backend.models()]
    assert tiny_sam3.name in warm and "broken-sam3" not in warm


def test_the_gpu_segment_benchmark_runs_on_the_tiny_model(tmp_path, capsys):
    from benchmarks.gpu.segment import main

    out = tmp_path / "segment.json"
    assert main(["--mini", "--work", str(tmp_path), "--repeats", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [row["case"] for row in results["cases"]] == [
        "1 text prompt",
        "3 text prompts",
        "3 box prompts",
    ]
    assert all(row["median_s"] > 0 for row in results["cases"]) and results["cold_s"] > 0
    assert "| tiny SAM 3 (112 px) | 3 box prompts | " in capsys.readouterr().out
