"""Rendered answers and the "Thinking" block in a real browser: JupyterLab 4 and
Notebook 7 in headless Chromium (Playwright), on the server and pages of
``test_browser.py``.

The embedded SmolLM2 is made to write a Markdown answer and a long thinking
by a scripted logits processor (``forced_answer``): the generation, the
streaming and the rendering are the real ones. A MutationObserver records
every rendered state of the cells, so the test sees what a reader saw while
the answer streamed. Screenshots go to ``test-artifacts/``.
"""

import json
from pathlib import Path

import nbformat
import pytest
from test_browser import (
    ARTIFACTS,
    CHROMIUM,
    FRONTENDS,
    NotebookPage,
    _notebook,
    headless_chromium,
    running_jupyter,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.kernel]

ANSWER = (
    "### Paris\n\n"
    "Paris is the **capital** of France, on the *Seine*. "
    "It has been a centre of art and science for centuries.\n\n"
    "- the Louvre, the largest art museum\n"
    "- the Eiffel Tower, built in 1889\n"
    "- Notre-Dame, on the Île de la Cité\n\n"
    "| district | known for |\n|---|---|\n| Montmartre | painters |\n| Le Marais | museums |\n\n"
    "```python\ndef visit(city):\n    return f'Bonjour, {city}!'\n\nprint(visit('Paris'))\n```\n\n"
    "Euler's identity holds there too: $e^{i\\pi} + 1 = 0$, and\n\n"
    "$$\\sum_{n=1}^{\\infty} \\frac{1}{n^2} = \\frac{\\pi^2}{6}$$\n\n"
    "That is all."
)
THOUGHT = (
    "<think>\n"
    + "Let me think about it step by step. " * 300
    + "\n</think>\n\nThe answer is **42**."
)
FORCED = (
    "from mlx_magic.testing.scripted import forced_answer\n"
    "with forced_answer({answer!r}):\n"
    "    get_ipython().run_cell_magic('mlx', {flags!r}, {prompt!r})"
)
CELLS = [
    "%load_ext mlx_magic",
    FORCED.format(answer=ANSWER, flags="-n 300", prompt="Tell me about Paris."),
    FORCED.format(answer=THOUGHT, flags="-n 2200 --think-budget 5000", prompt="Think first."),
]

# Every rendered state of each code cell: what its Markdown outputs contain,
# the stdout text, the thinking block and the footer.
_RECORDER = """() => {
  const notebook = document.querySelector('.jp-Notebook');
  const log = window.__mdLog = [];
  const last = new Map();
  const count = (cell, selector) => cell.querySelectorAll(selector).length;
  const snapshot = () => {
    notebook.querySelectorAll('.jp-CodeCell').forEach((cell, index) => {
      const md = '.jp-OutputArea-output[data-mime-type="text/markdown"] ';
      const live = cell.querySelector('.mlx-magic-thinking-live');
      const folded = cell.querySelector('details.mlx-magic-thinking summary');
      const state = {
        outputs: count(cell, '.jp-OutputArea-output[data-mime-type="text/markdown"]'),
        headings: count(cell, md + 'h3'),
        items: count(cell, md + 'li'),
        bold: count(cell, md + 'strong'),
        tables: count(cell, md + 'table'),
        code: count(cell, md + 'pre code'),
        highlighted: count(cell, md + 'pre code span[class]'),
        math: count(cell, md + 'mjx-container'),
        raw_markup: [...cell.querySelectorAll(md)].some(o => /\\*\\*|^###/m.test(o.textContent)),
        text: [...cell.querySelectorAll(md)].map(o => o.textContent).join('\\n'),
        stdout: [...cell.querySelectorAll(
          '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]')]
          .map(e => e.textContent).join(''),
        live: live ? live.textContent : null,
        button: !!cell.querySelector('button.mlx-magic-answer-now'),
        folded: folded ? folded.textContent : null,
        footer: [...cell.querySelectorAll('.mlx-magic-footer')].map(e => e.textContent).join(''),
      };
      const key = JSON.stringify(state);
      if (last.get(index) !== key) {
        last.set(index, key);
        log.push({t: performance.now(), cell: index, ...state});
      }
    });
  };
  new MutationObserver(snapshot).observe(notebook,
    {subtree: true, childList: true, characterData: true, attributes: true});
  snapshot();
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    base = tmp_path_factory.mktemp("jupyter-markdown")
    root = base / "root"
    for frontend in FRONTENDS:
        (root / frontend).mkdir(parents=True)
        nbformat.write(_notebook(CELLS), root / frontend / "markdown.ipynb")
    with running_jupyter(base, root) as jupyter:
        yield jupyter


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


def save_log(name, entries):
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"{name}-timeline.json").write_text(
        json.dumps(entries, indent=1, ensure_ascii=False)
    )


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_answers_render_as_they_stream_and_thinking_folds_above_them(browser, server, frontend):
    notebook = NotebookPage(browser, server, frontend, f"{frontend}/markdown.ipynb")
    try:
        page = notebook.page
        page.evaluate(_RECORDER)
        log = lambda index: [  # noqa: E731
            e for e in page.evaluate("() => window.__mdLog") if e["cell"] == index
        ]
        answer, thinking = 1, 2
        notebook.run_all()

        # ---- the rendered answer -------------------------------------------------
        wait_for(lambda: log(answer)[-1]["footer"], 240, lambda: log(answer)[-3:])
        entries = log(answer)
        save_log(f"{frontend}-markdown-stream", entries)
        final = entries[-1]
        assert final["stdout"] == ""  # rendered, not printed
        assert final["headings"] == 1 and final["items"] == 3 and final["tables"] == 1
        assert final["bold"] == 1 and final["code"] == 1
        assert final["highlighted"] >= 3, final  # the frontend's own code highlighting
        assert final["math"] == 2, final  # inline and display math, typeset
        assert not final["raw_markup"], final["text"]
        assert final["outputs"] >= 6  # one output per block
        # While it streamed, readers saw it formatted already: rendered states
        # before the footer, growing block by block.
        streaming = [e for e in entries if not e["footer"] and e["outputs"]]
        assert len({e["outputs"] for e in streaming}) >= 3, streaming
        assert any(e["headings"] or e["items"] for e in streaming)
        assert all(not e["raw_markup"] for e in streaming if e["outputs"] > 1)
        notebook.screenshot(f"{frontend}-markdown-stream", scroll_to=notebook.cell(answer))

        # ---- the thinking block, and "Answer now" -----------------------------------
        wait_for(
            lambda: log(thinking)[-1]["button"] and "tokens" in (log(thinking)[-1]["live"] or ""),
            240,
            lambda: log(thinking)[-3:],
        )
        button = notebook.cell(thinking).locator("button.mlx-magic-answer-now")
        button.scroll_into_view_if_needed()
        page.wait_for_timeout(1500)  # let some thinking stream
        notebook.screenshot(f"{frontend}-thinking-live", scroll_to=notebook.cell(thinking))
        button.click()
        wait_for(lambda: log(thinking)[-1]["footer"], 120, lambda: log(thinking)[-3:])
        entries = log(thinking)
        save_log(f"{frontend}-thinking", entries)
        final = entries[-1]
        assert final["live"] is None and not final["button"]  # the widget is gone
        assert (
            final["folded"].startswith("Thinking · ") and "ended by Answer now" in final["folded"]
        )
        tokens = int(final["folded"].split("·")[1].split()[0].replace(",", ""))
        assert 0 < tokens < 2000  # far fewer than the script's 300 sentences
        assert "The answer is 42." in final["text"] and final["bold"] == 1
        assert "thinking + " in final["footer"]
        counts = [e["live"] for e in entries if e["live"]]
        assert len(set(counts)) >= 3  # the count and time went up live
        # The folded block opens on a click, showing the thinking.
        details = notebook.cell(thinking).locator("details.mlx-magic-thinking")
        assert details.evaluate("d => d.open") is False
        details.locator("summary").click()
        assert details.evaluate("d => d.open") is True
        assert "step by step" in details.locator(".mlx-magic-thinking-text").text_content()
        notebook.screenshot(f"{frontend}-thinking-folded", scroll_to=notebook.cell(thinking))
        notebook.wait_until_run()
    finally:
        notebook.close()
