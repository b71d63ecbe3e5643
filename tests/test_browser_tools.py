"""``%%mlx --tools`` in JupyterLab (headless Chromium, Playwright): a person clicks
**Run** on one step and **Skip** on another, on the server and pages of
``test_browser.py``. The tiny llama with a Hermes-style tool template writes
scripted calls through the real generation path."""

from pathlib import Path

import nbformat
import pytest
from test_browser import (
    CHROMIUM,
    NotebookPage,
    _notebook,
    headless_chromium,
    running_jupyter,
    wait_for,
)
from test_tools import ADD, FAMILIES

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

ASK = (
    "with forced_answers({call!r}, 'Done.'):\n"
    "    get_ipython().run_cell_magic('mlx', '-n 200 -f text --tools add', 'What is 2 + 3?')\n"
    "states.append(_mlx.steps[0].state)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from mlx_magic.testing.tiny_models import build_tiny_llama

    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    base = tmp_path_factory.mktemp("jupyter-tools")
    model = build_tiny_llama(base / "hermes", tools="hermes")
    cells = [
        "%load_ext mlx_magic\n"
        f"%config MLXMagics.default_model = {str(model)!r}\n"
        "from mlx_magic.testing.scripted import forced_answers\nstates = []\n" + ADD,
        ASK.format(call=FAMILIES["hermes"][0]),
        ASK.format(call=FAMILIES["hermes"][0]),
        "print(calls, states)",
    ]
    root = base / "root"
    (root / "lab").mkdir(parents=True)
    nbformat.write(_notebook(cells), root / "lab" / "tools.ipynb")
    with running_jupyter(base, root) as jupyter:
        yield jupyter


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


def test_run_and_skip_clicked_in_jupyterlab(browser, server):
    notebook = NotebookPage(browser, server, "lab", "lab/tools.ipynb")
    try:
        notebook.run_all()
        for index, label in ((1, "Run"), (2, "Skip")):
            button = notebook.cell(index).locator("button", has_text=label)
            cell = notebook.cell(index)
            wait_for(lambda b=button: b.count() == 1, 240, lambda c=cell: c.inner_text())
            assert "waiting for Run or Skip" in notebook.cell(index).inner_text()
            notebook.screenshot(f"lab-tools-waiting-{label.lower()}", scroll_to=cell)
            button.click()
        notebook.wait_until_run()
        notebook.screenshot("lab-tools-steps", scroll_to=notebook.cell(1))
        assert "[(2, 3)] ['ran', 'skipped']" in notebook.cell(3).inner_text()
        ran, skipped = notebook.cell(1).inner_text(), notebook.cell(2).inner_text()
        assert "✓ step 1 · add(a=2, b=3) → 5" in ran
        assert "step 1 · add(a=2, b=3) → skipped" in skipped
        assert notebook.cell(1).locator("button", has_text="Run").count() == 0  # gone
    finally:
        notebook.close()
