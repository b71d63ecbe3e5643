"""The logit lens and the attention strip in a real browser: JupyterLab 4 in
headless Chromium (Playwright), on the server and pages of ``test_browser.py``.

A notebook runs ``%%mlx --lens`` on the tiny random llama and then ``%mlx
attention 2`` on the same answer; the test reads what a user sees in the
page: the lens table's rows (one per layer) and columns (one per answer
token), a cell's hover text with the layer's top tokens, and the attention
strip over the prompt's tokens, shaded. Each view is screenshotted on its own
(under pytest's ``tmp_path``) and the pictures must show something.
"""

import json
import re

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
)

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.kernel]

# The tiny llama answers this greedily with 4 tokens, none an end of turn
# (tests/test_lens_cells.py reads 6 of the same answer).
PROMPT = "Hello there, how are you?"
ANSWER_TOKENS = 4
STEP = 2
PATH = "lab/inside.ipynb"

# One line of a lens cell's hover: a top token's text (its repr) and probability.
TOP_LINE = re.compile(r"""^(['"]).*\1  \d+\.\d%$""")


@pytest.fixture(scope="module")
def inside_notebook(server, tiny_llama):  # noqa: F811
    cells = [
        "%load_ext mlx_magic",
        f"%%mlx -m {tiny_llama} -n {ANSWER_TOKENS} --lens\n{PROMPT}",
        f"%mlx attention {STEP}",
    ]
    nbformat.write(_notebook(cells), server.root / PATH)
    return PATH


def assert_picture(path):
    """A PNG with pixels in it, not one flat colour."""
    with Image.open(path) as picture:
        assert picture.width > 0 and picture.height > 0, picture.size
        colours = picture.convert("RGB").getcolors(maxcolors=1 << 24)
        assert len(colours) > 1, colours


def test_lab_shows_the_logit_lens_and_the_attention_strip(
    open_notebook,  # noqa: F811
    inside_notebook,
    tiny_llama,
    tmp_path,
):
    layers = json.loads((tiny_llama / "config.json").read_text())["num_hidden_layers"]
    expect = playwright_api.expect
    notebook = open_notebook("lab", inside_notebook)
    notebook.run_all()
    notebook.wait_until_run(timeout=240)
    assert_no_errors(notebook)

    # ---- the logit lens, under the answer ---------------------------------------
    answer = notebook.cell(1)
    lens = answer.locator(".mlx-magic-lens")
    expect(lens).to_be_visible(timeout=30_000)
    lens.scroll_into_view_if_needed()
    footer = answer.locator(".mlx-magic-footer", has_text="logit lens").first
    expect(footer).to_contain_text(f"{layers} layers × {ANSWER_TOKENS} answer tokens")

    # One row per layer, the last layer on top, each headed by its number.
    rows = lens.locator("tbody tr")
    expect(rows).to_have_count(layers)
    expect(rows.locator("th")).to_have_text([str(n) for n in reversed(range(layers))])
    # A header cell per answer token (after the "layer" corner), numbered in its hover.
    head = lens.locator("thead th")
    expect(head).to_have_count(1 + ANSWER_TOKENS)
    expect(head.first).to_have_text("layer")
    titles = head.evaluate_all("cells => cells.slice(1).map(c => c.title)")
    assert [t.split(":")[0] for t in titles] == [str(n + 1) for n in range(ANSWER_TOKENS)]
    assert all(" (id " in t for t in titles), titles
    cells = lens.locator("tbody td")
    expect(cells).to_have_count(layers * ANSWER_TOKENS)
    # Every cell shaded blue; the last layer's top token is the one generated
    # (greedy), drawn bold.
    shades = cells.evaluate_all("cells => cells.map(c => getComputedStyle(c).backgroundColor)")
    assert all(s.startswith("rgba(40, 90, 200, ") for s in shades), shades
    weights = rows.first.locator("td").evaluate_all(
        "cells => cells.map(c => Number(getComputedStyle(c).fontWeight))"
    )
    assert weights == [700] * ANSWER_TOKENS, weights

    # Hovering a cell: it is the one under the pointer, and its title (the
    # browser's tooltip) names its layer and token and lists the layer's top 5.
    cell = rows.last.locator("td").nth(1)
    cell.hover()
    assert cell.evaluate("c => c.matches(':hover')")
    hover = cell.get_attribute("title").split("\n")
    assert hover[0].startswith("layer 0, answer token 2 ("), hover
    assert len(hover) == 7 and all(TOP_LINE.match(line) for line in hover[1:6]), hover
    assert hover[6].startswith("generated ") and hover[6].endswith("%"), hover
    # The cell shows the first of them.
    top = hover[1].split("  ")[0][1:-1]
    assert cell.text_content() in (top, top[:9] + "…"), (cell.text_content(), top)

    lens_png = tmp_path / "lens.png"
    lens.screenshot(path=str(lens_png))
    assert_picture(lens_png)

    # ---- the attention strip -----------------------------------------------------
    attention = notebook.cell(2)
    strip = attention.locator(".mlx-magic-attention")
    expect(strip).to_be_visible(timeout=30_000)
    strip.scroll_into_view_if_needed()
    expect(attention.locator(".mlx-magic-footer")).to_contain_text(
        f"layer {layers - 1} of {layers} · mean of "
    )
    expect(attention.locator(".mlx-magic-footer")).to_contain_text(f"· token {STEP} ")
    # Each token of the strip, and whether it comes after the " │ answer: " separator.
    shown = strip.evaluate(
        """strip => {
            const spans = [...strip.querySelectorAll('span')];
            const separator = spans.find(s => s.textContent.includes('│ answer:'));
            return spans.filter(s => s.dataset.position !== undefined).map(s => ({
                position: Number(s.dataset.position),
                text: s.textContent,
                title: s.title,
                background: getComputedStyle(s).backgroundColor,
                visible: s.checkVisibility(),
                answer: separator !== undefined && Boolean(
                    separator.compareDocumentPosition(s) & Node.DOCUMENT_POSITION_FOLLOWING),
            }));
        }"""
    )
    positions = [token["position"] for token in shown]
    assert positions == list(range(len(shown))), positions
    assert all(token["visible"] for token in shown)
    # The prompt's tokens (its words inside the chat template), then the answer's
    # before step 2: its first token, the lens's first column.
    prompt = [token for token in shown if not token["answer"]]
    words = "".join(token["text"] for token in prompt).replace("⏎", "")
    assert PROMPT in words, words
    answered = [token["text"] for token in shown if token["answer"]]
    assert answered == [head.nth(1).text_content()], answered
    # Shaded: a red background on every token, darker where more weight went,
    # the heaviest at full shade; hovering one gives every head's weight.
    alphas = []
    for token in shown:
        colour = re.fullmatch(r"rgba\(230, 40, 20, ([\d.]+)\)", token["background"])
        assert colour, token
        alphas.append(float(colour.group(1)))
    assert min(alphas) > 0 and max(alphas) > min(alphas), alphas
    assert max(alphas) == pytest.approx(0.85, abs=0.01), alphas
    assert all("(heads: " in token["title"] for token in shown)
    # The token written at step 2, outlined after the arrow: the lens's second column.
    written = strip.locator("span[style*='outline']")
    expect(written).to_be_visible()
    expect(written).to_have_text(head.nth(STEP).text_content())

    strip_png = tmp_path / "attention.png"
    strip.screenshot(path=str(strip_png))
    assert_picture(strip_png)
