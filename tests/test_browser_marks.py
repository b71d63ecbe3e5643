"""Drawing marks on a preview in a real browser: JupyterLab 4 in headless
Chromium (Playwright), on the server and pages of ``test_browser.py``.

A ``%%mlx_vision`` cell's preview is a drawing board: the test drags a box and
clicks a point on it with the mouse, reads the marks back from the kernel
(``%mlx marks``), runs a cell with ``--region @1`` and checks the size sent,
and checks the board's canvas by its pixels. Then segmentation: a box dragged
around a cup and ``%mlx segment @marks``, ``--segment`` with the words ("cup"),
and a vision model's boxes outlined (``%mlx segment @boxes``), with the tiny
SAM 3's masks scripted through its real predictor; the masks are checked by
the rendered pixels, the footer's count, ``_mlx.masks`` and the saved
notebook's metadata. Screenshots go to ``test-artifacts/``.
"""

import base64
import io
import json
import urllib.error

import nbformat
import numpy as np
import pytest
from PIL import Image
from test_browser import (  # noqa: F401  (browser, open_notebook, server: fixtures)
    _notebook,
    assert_no_errors,
    browser,
    open_notebook,
    playwright_api,
    server,
    wait_for,
)

from mlx_magic.display.masks_view import OPACITY
from mlx_magic.grounding.drawing import palettes
from mlx_magic.grounding.mark_drawing import mark_colour

pytestmark = [pytest.mark.browser, pytest.mark.kernel, pytest.mark.vision]

PATH = "lab/marks.ipynb"
CELLS = [
    "%load_ext mlx_magic",
    (
        "from PIL import Image, ImageDraw\nphoto = Image.new('RGB', (320, 240), 'white')\n"
        "ImageDraw.Draw(photo).ellipse((30, 40, 150, 160), fill='red')"
    ),
    "%%mlx_vision -i photo -n 2\nWhat is this?",
    "import json\nmarks = %mlx marks\nprint(json.dumps([mark.as_dict() for mark in marks]))",
    "%%mlx_vision --region @1 -n 2\nWhat is in this box?",
    "print(_mlx.images[0]['size'])",
]


@pytest.fixture(scope="module")
def marks_notebook(server):  # noqa: F811
    nbformat.write(_notebook(CELLS), server.root / PATH)
    return PATH


def saved_cells(notebook, path):
    """The cells of the notebook as saved, or ``[]`` while the server writes it: it
    writes the file in place (its backup aside), and a read meanwhile is a 400."""
    try:
        return notebook.server.api(f"contents/{path}")["content"]["cells"]
    except urllib.error.HTTPError as error:
        if error.code != 400:
            raise
        return []


def run_cell(notebook, index):
    notebook.cell(index).locator(".jp-InputArea-prompt").click()
    notebook.page.keyboard.press("Shift+Enter")
    notebook.wait_until_run([index])


def drag(notebook, canvas, start, end):
    """The mouse dragged on ``canvas`` from ``start`` to ``end`` (its CSS pixels),
    through the middle, in small steps as a hand would."""
    box = canvas.bounding_box()
    mouse = notebook.page.mouse
    mouse.move(box["x"] + start[0], box["y"] + start[1])
    mouse.down()
    middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    mouse.move(box["x"] + middle[0], box["y"] + middle[1], steps=5)
    mouse.move(box["x"] + end[0], box["y"] + end[1], steps=5)
    mouse.up()


def test_lab_draws_a_box_and_a_point_and_a_later_cell_crops_to_the_box(
    open_notebook,  # noqa: F811
    marks_notebook,
):
    expect = playwright_api.expect
    notebook = open_notebook("lab", marks_notebook)
    for index in range(3):
        run_cell(notebook, index)
    canvas = notebook.cell(2).locator("canvas.mlx-magic-marks")
    expect(canvas).to_be_visible(timeout=30_000)
    canvas.scroll_into_view_if_needed()
    # The thumbnail is 256×192 for the 320×240 image: 1.25 image pixels a thumbnail pixel.
    assert canvas.evaluate("c => [c.width, c.height]") == [256, 192]
    label = notebook.cell(2).locator(".mlx-magic-marks-bar input")
    label.fill("circle")  # the label of the marks drawn next
    drag(notebook, canvas, (24, 32), (120, 128))
    label.fill("")
    box = canvas.bounding_box()
    notebook.page.mouse.click(box["x"] + 200, box["y"] + 100)  # a click: a point
    # The board drew the box: its left edge (under the number tag's height) is coloured.
    edge = canvas.evaluate("c => Array.from(c.getContext('2d').getImageData(24, 80, 1, 1).data)")
    assert edge[3] > 0, edge
    notebook.screenshot("lab-marks-drawn", scroll_to=notebook.cell(2))

    # The kernel has them, in pixels of the image (the mouse lands on whole CSS pixels).
    run_cell(notebook, 3)
    marks = json.loads(notebook.final(3)["stdout"])
    assert [(m["number"], m["kind"], m["label"]) for m in marks] == [
        (1, "box", "circle"),
        (2, "point", ""),
    ], marks
    assert marks[0]["coordinates"] == pytest.approx([30, 40, 150, 160], abs=1.5)
    assert marks[1]["coordinates"] == pytest.approx([250, 125], abs=1.5)

    # Saved, the preview keeps a static picture of the marks beside the widget, and the data.
    notebook.page.keyboard.press("Control+s")
    saved = {}

    def preview_saved():
        cells = saved_cells(notebook, PATH)
        outputs = [o for o in cells[2]["outputs"] if o["output_type"] == "display_data"]
        saved.update(outputs[0] if outputs else {})  # none until the save has happened
        return len(saved.get("metadata", {}).get("mlx_magic", {}).get("marks", [])) == 2

    wait_for(preview_saved, 30, lambda: saved)
    assert "application/vnd.jupyter.widget-view+json" in saved["data"]
    assert "[mark 2: point (250, 125) on image 1]" in saved["data"]["text/plain"]
    sheet = Image.open(io.BytesIO(base64.b64decode(saved["data"]["image/png"]))).convert("RGB")
    # The box's left edge, drawn in mark 1's colour in the saved picture (thumbnail pixels).
    assert sheet.getpixel((24, 80)) == mark_colour(1)

    # A later cell sends only mark 1 of the image it was drawn on.
    run_cell(notebook, 4)
    run_cell(notebook, 5)
    width, height = (int(n) for n in notebook.final(5)["stdout"].strip("()\n").split(","))
    assert abs(width - 120) <= 2 and abs(height - 120) <= 2, (width, height)

    # Undo takes back the point; the kernel sees one mark left.
    notebook.cell(2).locator(".mlx-magic-marks-bar button", has_text="Undo").click()
    run_cell(notebook, 3)
    assert [m["kind"] for m in json.loads(notebook.final(3)["stdout"])] == ["box"]
    assert_no_errors(notebook)
    notebook.screenshot("lab-marks-region", scroll_to=notebook.cell(4))


# The board's module (marking.js) on a blank page, two views of one fake anywidget model,
# as JupyterLab has for a moment while it redraws the output after a mark is drawn.
_TWO_VIEWS = """async (source) => {
    document.body.innerHTML = '<div id="a"></div><div id="b"></div>';
    const url = URL.createObjectURL(new Blob([source], {type: 'text/javascript'}));
    const board = (await import(url)).default;
    const state = {marks: [], label: '', named: [],
        tiles: [{src: '', width: 64, height: 48, image: 0, scale: 1, caption: 'x'}]};
    const handlers = {};
    const model = {
        get: (key) => state[key],
        set: (key, value) => {
            state[key] = value;
            (handlers['change:' + key] || []).forEach((handler) => handler());
        },
        save_changes: () => {},
        on: (name, handler) => { (handlers[name] = handlers[name] || []).push(handler); },
        off: (name, handler) => {
            handlers[name] = (handlers[name] || []).filter((other) => other !== handler);
        },
    };
    window.boardState = state;
    for (const id of ['a', 'b']) board.render({model, el: document.getElementById(id)});
}"""


def test_a_redrawn_board_keeps_the_label_typed_in_the_old_view(browser):  # noqa: F811
    """The label typed in one view reaches the other's field, and the next mark:
    else a mark drawn after clearing the label in the view about to go kept the
    old label (the first test's point was, at times, labelled "circle")."""
    from test_browser import REPO

    page = browser.new_page()
    try:
        page.evaluate(_TWO_VIEWS, (REPO / "mlx_magic/display/marking.js").read_text())
        old, new = page.locator("#a input"), page.locator("#b input")
        old.fill("circle")
        assert new.input_value() == "circle"
        old.fill("")  # cleared in the old view, after the new one rendered
        assert new.input_value() == ""
        box = page.locator("#b canvas").bounding_box()
        page.mouse.click(box["x"] + 10, box["y"] + 10)
        assert page.evaluate("() => window.boardState.marks") == [
            {"kind": "point", "coordinates": [10, 10], "label": "", "image": 0}
        ]
    finally:
        page.close()


# ---- segmentation: the user points (or says, or a vision model finds), SAM 3 outlines ----

SEGMENT_PATH = "lab/segment.ipynb"
# Two brown cups on a white table (320×240), as boxes: their pixels are the masks.
CUPS = [(40, 80, 120, 180), (200, 100, 280, 200)]
BROWN = (150, 90, 40)
# Qwen2-VL's answer with the cups' boxes (0..1000 of the image): what a trained model says.
FOUND_CUPS = "".join(
    "<|object_ref_start|>cup<|object_ref_end|>"
    f"<|box_start|>({x1 * 25 // 8},{y1 * 25 // 6}),({x2 * 25 // 8},{y2 * 25 // 6})<|box_end|>"
    for x1, y1, x2, y2 in CUPS
)
SEGMENT_CELLS = [
    "%load_ext mlx_magic",
    "import numpy as np\nfrom PIL import Image\n"
    "pixels = np.full((240, 320, 3), 255, np.uint8)\n"
    "cups = np.zeros((2, 240, 320), bool)\n"
    + "".join(
        f"pixels[{y1}:{y2}, {x1}:{x2}] = {BROWN}\ncups[{i}, {y1}:{y2}, {x1}:{x2}] = True\n"
        for i, (x1, y1, x2, y2) in enumerate(CUPS)
    )
    + "photo = Image.fromarray(pixels)\n"
    "# The tiny SAM 3 is random: it finds what a trained one would, through its real predictor.\n"
    "from mlx_magic.testing.scripted import forced_masks, forced_vision_answer\n"
    "scripted = forced_masks(cups)\n"
    "scripted.__enter__()",
    "%%mlx_vision -i photo -n 2\nWhat is on the table?",
    "%mlx segment @marks",
    "import json\nprint(json.dumps([[m.label, m.area, m.box, m.image] for m in _mlx.masks]))",
    "%%mlx_vision -i photo --segment\ncup",
    (
        f"with forced_vision_answer({FOUND_CUPS!r}):\n"
        "    get_ipython().run_cell_magic('mlx_vision', '-i photo -n 80', 'Find the cups.')"
    ),
    "%mlx segment @boxes",
]

# The colours of the points (x, y) of an <img>, as drawn in the page.
_PIXELS = """(img, points) => img.decode().then(() => {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    return points.map(([x, y]) => Array.from(context.getImageData(x, y, 1, 1).data.slice(0, 3)));
})"""


@pytest.fixture(scope="module")
def segment_notebook(server):  # noqa: F811
    nbformat.write(_notebook(SEGMENT_CELLS), server.root / SEGMENT_PATH)
    return SEGMENT_PATH


def tinted(colour_index):
    """A brown cup's pixel under mask ``colour_index``'s translucent colour."""
    fill = np.array(palettes(dimmed=False)[0].by_idx(colour_index).as_rgb())
    return (OPACITY * fill + (1 - OPACITY) * np.array(BROWN)).round().tolist()


def assert_masks_drawn(notebook, index, count_text, expected):
    """Cell ``index`` shows one picture with the footer ``count_text`` and, at the
    middle of each cup (thumbnail pixels: 0.8 of the image's), ``expected``
    (the brown of a cup left alone, or ``tinted(n)``); the table stays white."""
    cell = notebook.cell(index)
    footer = cell.locator(".mlx-magic-footer")
    expect = playwright_api.expect
    expect(footer).to_contain_text(f"{count_text} · tiny-sam3 · ", timeout=60_000)
    footer.scroll_into_view_if_needed()
    expect(footer).to_be_visible()
    picture = cell.locator("img.mlx-magic-masks")
    assert picture.count() == 1
    assert picture.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [256, 192]
    middles = [[(x1 + x2) * 2 // 5, (y1 + y2) * 2 // 5 + 10] for x1, y1, x2, y2 in CUPS]
    got = picture.evaluate(_PIXELS, [*middles, [128, 20], [128, 180]])
    for colour, wanted in zip(got, expected):
        assert np.abs(np.array(colour) - wanted).max() <= 3, (got, expected)
    assert got[-2:] == [[255, 255, 255]] * 2, got  # nothing drawn on the table


def test_lab_segments_a_drawn_box_the_words_and_a_vision_models_boxes(
    open_notebook,  # noqa: F811
    segment_notebook,
):
    notebook = open_notebook("lab", segment_notebook)
    for index in range(3):
        run_cell(notebook, index)
    canvas = notebook.cell(2).locator("canvas.mlx-magic-marks")
    playwright_api.expect(canvas).to_be_visible(timeout=30_000)
    canvas.scroll_into_view_if_needed()
    notebook.cell(2).locator(".mlx-magic-marks-bar input").fill("cup")
    # A box around the right cup (200, 100)-(280, 200): 0.8 of that on the thumbnail.
    drag(notebook, canvas, (156, 76), (228, 164))

    # %mlx segment @marks: SAM 3 finds both cups from the box; the one boxed is kept.
    run_cell(notebook, 3)
    assert_masks_drawn(notebook, 3, "1 cup", [list(BROWN), tinted(0)])
    notebook.screenshot("lab-segment-marks", scroll_to=notebook.cell(2))
    run_cell(notebook, 4)
    right = ["cup", 8000, list(map(float, CUPS[1])), 0]
    assert json.loads(notebook.final(4)["stdout"]) == [right]

    # "Segment the cups": both, each its colour, counted.
    run_cell(notebook, 5)
    assert_masks_drawn(notebook, 5, "2 cups", [tinted(0), tinted(1)])
    notebook.screenshot("lab-segment-cups", scroll_to=notebook.cell(5))
    run_cell(notebook, 4)
    left = ["cup", 8000, list(map(float, CUPS[0])), 0]
    assert json.loads(notebook.final(4)["stdout"]) == [left, right]

    # A vision model finds the cups (its answer scripted), SAM 3 outlines its boxes.
    run_cell(notebook, 6)
    run_cell(notebook, 7)
    assert_masks_drawn(notebook, 7, "2 cups", [tinted(0), tinted(1)])
    notebook.screenshot("lab-segment-boxes", scroll_to=notebook.cell(6))
    run_cell(notebook, 4)
    assert json.loads(notebook.final(4)["stdout"]) == [left, right]
    assert_no_errors(notebook)

    # Saved, each segment output keeps its masks run-length encoded (COCO's RLE).
    notebook.page.keyboard.press("Control+s")
    saved = {}

    def masks_saved():
        cells = saved_cells(notebook, SEGMENT_PATH)
        for index in (3, 5, 7):
            shown = [o for o in cells[index]["outputs"] if o["output_type"] == "display_data"]
            saved[index] = shown[0]["metadata"]["mlx_magic"]["masks"] if shown else []
        return all(saved.values())

    wait_for(masks_saved, 30, lambda: saved)
    import supervision

    for index, which in ((3, [1]), (5, [0, 1]), (7, [0, 1])):
        assert [mask["box"] for mask in saved[index]] == [list(CUPS[i]) for i in which]
        for mask, i in zip(saved[index], which):
            assert mask["label"] == "cup" and mask["area"] == 8000
            assert mask["rle"]["size"] == [240, 320]
            pixels = supervision.rle_to_mask(mask["rle"]["counts"], resolution_wh=(320, 240))
            x1, y1, x2, y2 = CUPS[i]
            assert pixels.sum() == 8000 and pixels[y1:y2, x1:x2].all()
