"""Marks: numbered boxes and points on a cell's images (Set-of-Marks).

The drawing is checked by its pixels; the links from an answer back to its
marks by a scripted answer of the tiny Qwen2-VL through mlx-vlm's real
generation path (`mlx_magic.testing.scripted`). Marks drawn on a preview are
set in a real kernel as the frontend sets them: the board's synced value.
"""

import base64
import io

import numpy as np
import pytest
from IPython.core.error import UsageError
from PIL import Image

from mlx_magic.grounding.mark_drawing import DIMMED, draw_marks, mark_colour
from mlx_magic.grounding.marks import Mark, find_refs, marks_from_boxes, marks_from_value
from mlx_magic.testing.scripted import forced_vision_answer

from conftest import one_line, run

QWEN2_BOX = (
    "The cat is here: <|object_ref_start|>cat<|object_ref_end|>"
    "<|box_start|>(100,250),(500,750)<|box_end|> and a dog "
    "<|object_ref_start|>dog<|object_ref_end|><|box_start|>(600,0),(1000,500)<|box_end|>."
)
BOX = {"kind": "box", "coordinates": [20, 10, 80, 50], "label": "cup", "image": 0}
POINT = {"kind": "point", "coordinates": [100, 60], "label": "", "image": 0}


def test_the_widget_value_becomes_numbered_marks_and_junk_is_left_out():
    value = [
        {"kind": "box", "coordinates": [80, 50, 20, 10], "label": "cup"},  # corners swapped
        {"kind": "box", "coordinates": [5, 5, 5, 9]},  # no width
        {"kind": "circle", "coordinates": [1, 2]},
        "nonsense",
        {"kind": "point", "coordinates": [100, "60"], "image": "1"},
    ]
    first, second = marks_from_value(value)
    assert first == Mark(1, "box", (20, 10, 80, 50), "cup", 0)
    assert second == Mark(2, "point", (100, 60), "", 1)
    assert second.box == (100, 60, 100, 60)
    assert str(first) == "mark 1: box 'cup' (20, 10, 80, 50) on image 1"
    assert marks_from_value([first.as_dict(), second.as_dict()]) == (first, second)


def test_refs_find_the_marks_an_answer_names_in_order():
    marks = marks_from_value([BOX, POINT, BOX])
    answer = "Mark 2 is a cat; marks 1 and 3 hold cups, as does [1]. #2 again. 3 cups, region 7."
    refs = find_refs(answer, marks)
    assert [ref.number for ref in refs] == [2, 1, 3, 1, 2]
    assert [ref.text for ref in refs] == ["Mark 2", "marks 1", "3", "[1]", "#2"]
    assert all(answer[ref.start : ref.end] == ref.text for ref in refs)
    assert refs[0].mark is marks[1]
    assert find_refs("3 cups and 2 plates", marks) == ()  # counts are not references


def test_set_of_marks_numbers_are_drawn_where_the_marks_are():
    white = Image.new("RGB", (200, 120), "white")
    marks = marks_from_value([BOX, POINT])
    drawn = np.asarray(draw_marks(white, marks))
    # Mark 1's box: its outline in its colour (below its number tag), the inside untouched.
    assert tuple(drawn[45, 20]) == mark_colour(1)
    assert tuple(drawn[40, 60]) == (255, 255, 255)
    # Its number: a filled tag inside the top-left corner, white ink on it.
    tag = drawn[11:20, 21:30].reshape(-1, 3)
    assert (tag == mark_colour(1)).all(axis=1).any() and (tag.min(axis=1) > 200).any()
    # Mark 2, a point: a dot in its own colour.
    assert tuple(drawn[60, 100]) == mark_colour(2)
    assert (np.asarray(white) == 255).all()  # the image itself is not changed


def test_marks_an_answer_named_stand_out_and_the_others_turn_grey():
    white = Image.new("RGB", (200, 120), "white")
    marks = marks_from_value([BOX, POINT])
    drawn = np.asarray(draw_marks(white, marks, named={2}))
    assert tuple(drawn[45, 20]) == DIMMED
    assert tuple(drawn[60, 100]) == mark_colour(2)
    # Drawn thicker: 2 × 2 pixels of outline instead of 2 (a box named).
    thick = np.asarray(draw_marks(white, marks, named={1}))
    assert tuple(thick[45, 23]) == mark_colour(1) and tuple(drawn[45, 23]) == (255, 255, 255)


def test_marks_from_an_answers_boxes_keep_their_order_and_labels(vlm_shell):
    with forced_vision_answer(QWEN2_BOX):
        run(vlm_shell, "%%mlx_vision -i red -n 80\nWhere are the animals?")
    cat, dog = marks_from_boxes(vlm_shell.user_ns["_mlx"].boxes)
    assert (cat.number, cat.label, cat.coordinates) == (1, "cat", pytest.approx((12, 20, 60, 60)))
    assert (dog.number, dog.label) == (2, "dog")


def test_marks_at_boxes_sends_the_boxes_numbered_and_links_the_answer_back(vlm_shell, capsys):
    with forced_vision_answer(QWEN2_BOX):
        run(vlm_shell, "%%mlx_vision -i red -n 80\nWhere are the animals?")
    capsys.readouterr()
    with forced_vision_answer("Mark 2 is the dog; [1] is the cat."):
        run(vlm_shell, "%%mlx_vision --marks @boxes -n 40\nWhat is in mark 2?")
    printed = capsys.readouterr().out
    assert "[mark 1: box 'cat' (12, 20, 60, 60) on image 1]" in printed
    result = vlm_shell.user_ns["_mlx"]
    assert [(ref.number, ref.text, ref.mark.label) for ref in result.refs] == [
        (2, "Mark 2", "dog"),
        (1, "[1]", "cat"),
    ]
    assert [mark.label for mark in result.marks] == ["cat", "dog"]
    # The image the model was sent has the numbers drawn (the red image, 120×80).
    (sent,) = result.request.images
    pixels = np.asarray(sent.convert("RGB"))
    assert sent.size == (120, 80)
    assert tuple(pixels[50, 12]) == mark_colour(1)  # the cat's left edge, below its tag
    assert tuple(pixels[40, 36]) == (255, 0, 0)  # inside the box: the image itself


@pytest.mark.parametrize(
    "line, message",
    [
        ("--marks -i red", "no marks drawn yet; drawing marks needs a notebook frontend"),
        ("--region @1 -i red", "--region @1: no marks drawn yet"),
        ("--marks @cups -i red", "leave it bare"),
        ("--region @x -i red", "@N names a drawn mark by its number"),
        ("--marks @boxes --region 1,2,30,40 -i red", "leave out --region"),
    ],
)
def test_mark_mistakes_are_one_line_and_change_nothing(vlm_shell, line, message):
    run(vlm_shell, "%%mlx_vision -i red -n 1\nWhat is this?")
    before = vlm_shell.user_ns["_mlx"]
    with pytest.raises(UsageError) as caught:
        run(vlm_shell, f"%%mlx_vision {line} -n 1\nWhat is in mark 1?")
    assert message in one_line(caught)
    assert vlm_shell.user_ns["_mlx"] is before


def test_marks_at_boxes_without_boxes_and_marks_on_a_text_cell_are_one_line(vlm_shell):
    run(vlm_shell, "%%mlx_vision -i red -n 1\nWhat is this?")
    with pytest.raises(UsageError) as caught:
        run(vlm_shell, "%%mlx_vision --marks @boxes -n 1\nWhat is in mark 1?")
    assert "the latest answer has no boxes" in one_line(caught)
    with pytest.raises(UsageError) as caught:
        run(vlm_shell, "%%mlx --marks\nWhat is in mark 1?")
    assert "flags of %%mlx_vision" in one_line(caught)


def _png(data):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


@pytest.mark.kernel
def test_in_a_kernel_the_preview_is_drawn_on_and_later_cells_use_the_marks(tiny_vlm):
    import os

    from kernel_helpers import execute, printed, running_kernel

    env = {**os.environ, "MLX_MAGIC_DEFAULT_VISION_MODEL": str(tiny_vlm)}
    setup = (
        "%load_ext mlx_magic",
        "from PIL import Image\nred = Image.new('RGB', (120, 80), 'red')",
    )
    with running_kernel(*setup, extra_env=env) as (_, client):
        reply, messages = execute(client, "%%mlx_vision -i red -n 2\nWhat is this?", timeout=300)
        assert reply["status"] == "ok", reply
        preview = next(m for m in messages if m["msg_type"] == "display_data")["content"]
        # The board's view, with the static previews beside it for a saved notebook.
        board_id = preview["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        assert 'class="mlx-magic-preview"' in preview["data"]["text/html"]
        assert printed(client, "_mlx.previews.board.model_id") == board_id
        # Draw as the frontend does: the board's synced list, in pixels of the image.
        drawn = [
            {"kind": "box", "coordinates": [10, 20, 66, 76], "label": "left", "image": 0},
            {"kind": "point", "coordinates": [100, 30], "label": "", "image": 0},
        ]
        reply, messages = execute(client, f"_mlx.previews.board.marks = {drawn!r}")
        assert reply["status"] == "ok", reply
        # The saved notebook's copy follows the drawing: marks drawn, and as data.
        (update,) = [m["content"] for m in messages if m["msg_type"] == "update_display_data"]
        assert update["transient"]["display_id"] == preview["transient"]["display_id"]
        assert "[mark 1: box 'left' (10, 20, 66, 76) on image 1]" in update["data"]["text/plain"]
        assert update["metadata"]["mlx_magic"]["marks"][1]["kind"] == "point"
        assert (_png(update["data"]["image/png"]) != _png(preview["data"]["image/png"])).any()
        assert printed(client, "'; '.join(str(mark) for mark in _mlx.marks)") == (
            "mark 1: box 'left' (10, 20, 66, 76) on image 1; mark 2: point (100, 30) on image 1"
        )

        # A later cell crops to mark 1, from the image it was drawn on (no -i).
        reply, _ = execute(client, "%%mlx_vision --region @1 -n 1\nWhat is this?")
        assert reply["status"] == "ok", reply
        assert printed(client, "_mlx.images[0]['size']") == "(56, 56)"
        # Its own preview has none drawn: `%mlx marks` still lists those of the first.
        reply, messages = execute(client, "%mlx marks")
        (shown,) = [m["content"]["data"] for m in messages if m["msg_type"] == "execute_result"]
        assert shown["text/plain"].splitlines() == [
            "mark 1: box 'left' (10, 20, 66, 76) on image 1",
            "mark 2: point (100, 30) on image 1",
        ]
        for line, message in [
            ("--region @3", "@3: there are 2 marks (1–2)"),
            ("--region @2", "mark 2 is a point; a region needs a box mark"),
        ]:
            reply, _ = execute(client, f"%%mlx_vision {line} -n 1\nWhat is this?")
            assert reply["status"] == "error" and message in reply["evalue"], reply
            assert "\n" not in reply["evalue"]

        # --marks: the answer names mark 2, which stands out on the preview.
        code = (
            "from mlx_magic.testing.scripted import forced_vision_answer\n"
            "with forced_vision_answer('The dot marks 2 of them.'):\n"
            "    get_ipython().run_cell_magic('mlx_vision', '--marks -n 20', 'What is mark 2?')\n"
        )
        reply, messages = execute(client, code, timeout=300)
        assert reply["status"] == "ok", reply
        assert printed(client, "[(ref.number, ref.text) for ref in _mlx.refs]") == (
            "[(2, 'marks 2')]"
        )
        assert printed(client, "_mlx.previews.board.named") == "[2]"
        final = [m["content"] for m in messages if m["msg_type"] == "update_display_data"][-1]
        assert final["metadata"]["mlx_magic"]["named"] == [2]
        sheet = _png(final["data"]["image/png"])
        scale = sheet.shape[1] / 120  # the thumbnail's width / the image's
        # Mark 1 (not named) is grey now; the box's left edge, below its tag.
        assert tuple(sheet[int(60 * scale), int(10 * scale) + 1]) == DIMMED


def test_a_background_marks_cell_links_its_answer_too(vlm_shell):
    with forced_vision_answer(QWEN2_BOX):
        run(vlm_shell, "%%mlx_vision -i red -n 80\nWhere are the animals?")
    with forced_vision_answer("[2] is the dog."):
        run(vlm_shell, "%%mlx_vision --marks @boxes -b -o later -n 20\nWhat is mark 2?")
        run(vlm_shell, "%mlx wait")
    later = vlm_shell.user_ns["later"]
    assert [(ref.number, ref.text, ref.mark.label) for ref in later.refs] == [(2, "[2]", "dog")]


@pytest.mark.kernel
def test_in_a_kernel_the_vision_panel_images_are_drawn_on_too(tiny_vlm):
    import os

    from kernel_helpers import execute, printed, running_kernel

    env = {**os.environ, "MLX_MAGIC_DEFAULT_VISION_MODEL": str(tiny_vlm)}
    setup = (
        "%load_ext mlx_magic",
        "from PIL import Image\nred = Image.new('RGB', (120, 80), 'red')",
    )
    with running_kernel(*setup, extra_env=env) as (_, client):
        code = (
            "import mlx_magic\np = mlx_magic.panel(vision=True, conversation='marks')\n"
            "p.image_variables.value = ('red',)\np.max_tokens.value = 2\n"
            "p.prompt.value = 'What is this?'\nentry = p.send()\nentry.done.wait(120)\n"
            "from mlx_magic.display.marking import MarkingBoard\n"
            "board = next(w for w in p.transcript.children if isinstance(w, MarkingBoard))\n"
            "board.marks = [{'kind': 'box', 'coordinates': [0, 0, 60, 40], 'image': 0}]"
        )
        reply, _ = execute(client, code, timeout=300)
        assert reply["status"] == "ok", reply
        assert printed(client, "entry.state") == "done"
        # A cell uses the box drawn in the panel, on the panel's image.
        reply, _ = execute(client, "%%mlx_vision --region @1 -n 1\nWhat is this?")
        assert reply["status"] == "ok", reply
        assert printed(client, "_mlx.images[0]['size']") == "(60, 40)"


def test_mlx_marks_in_a_terminal_says_drawing_needs_a_notebook(vlm_shell, capsys):
    assert run(vlm_shell, "%mlx marks") is None
    assert capsys.readouterr().out == (
        "No marks drawn yet; drawing marks needs a notebook frontend (JupyterLab, Notebook 7, "
        "VS Code) with anywidget; here use --region X1,Y1,X2,Y2 or --marks @boxes\n"
    )


def test_only_the_latest_previews_keep_their_whole_images():
    from mlx_magic.display.preview_output import KEEP_IMAGES, LatestMarks, PreviewOutput
    from mlx_magic.images.decoding import finish

    loaded = finish("red", Image.new("RGB", (120, 80), "red"), 10**8)
    latest = LatestMarks()
    marked = PreviewOutput([loaded], drawable=False, marks=marks_from_value([BOX]))
    latest.watch(marked)  # it has marks: the latest marks
    others = [PreviewOutput([loaded], drawable=False) for _ in range(KEEP_IMAGES + 1)]
    for previews in others:
        latest.watch(previews)
    # The marks drawn last keep their image (--region @1 without -i crops it);
    # of the others only the latest KEEP_IMAGES do.
    assert latest.previews is marked and marked.images == (loaded,)
    assert others[0].images == () and others[1].images == (loaded,)
    # A preview without its image still draws from its thumbnails.
    released = others[0].bundle()
    assert _png(released["image/png"]).shape == _png(others[1].bundle()["image/png"]).shape
    assert "[image 1: red · 120×80]" in released["text/plain"]
