"""Drawing marks on a preview in a real browser: JupyterLab 4 in headless
Chromium (Playwright), on the server and pages of ``test_browser.py``.

A ``%%mlx_vision`` cell's preview is a drawing board: the test drags a box and
clicks a point on it with the mouse, reads the marks back from the kernel
(``%mlx marks``), runs a cell with ``--region @1`` and checks the size sent,
and checks the board's canvas by its pixels. Screenshots go to
``test-artifacts/``.
"""

import base64
import io
import json

import nbformat
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

from mlx_magic.grounding.mark_drawing import mark_colour

pytestmark = [pytest.mark.browser, pytest.mark.kernel, pytest.mark.vision]

PATH = "lab/marks.ipynb"
CELLS = [
    "%load_ext mlx_magic",
    "from PIL import Image, ImageDraw\nphoto = Image.new('RGB', (320, 240), 'white')\n"
    "ImageDraw.Draw(photo).ellipse((30, 40, 150, 160), fill='red')",
    "%%mlx_vision -i photo -n 2\nWhat is this?",
    "import json\nmarks = %mlx marks\nprint(json.dumps([mark.as_dict() for mark in marks]))",
    "%%mlx_vision --region @1 -n 2\nWhat is in this box?",
    "print(_mlx.images[0]['size'])",
]


@pytest.fixture(scope="module")
def marks_notebook(server):  # noqa: F811
    nbformat.write(_notebook(CELLS), server.root / PATH)
    return PATH


def run_cell(notebook, index):
    notebook.cell(index).locator(".jp-InputArea-prompt").click()
    notebook.page.keyboard.press("Shift+Enter")
    notebook.wait_until_run([index])


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
    box = canvas.bounding_box()
    mouse = notebook.page.mouse
    mouse.move(box["x"] + 24, box["y"] + 32)
    mouse.down()
    mouse.move(box["x"] + 70, box["y"] + 80, steps=5)
    mouse.move(box["x"] + 120, box["y"] + 128, steps=5)
    mouse.up()
    label.fill("")
    mouse.click(box["x"] + 200, box["y"] + 100)  # a click: a point
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
        cells = notebook.server.api(f"contents/{PATH}")["content"]["cells"]
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
