"""The notebooks in a real browser: JupyterLab and Notebook 7, driven by Playwright.

One Jupyter server (``python -m jupyterlab``, which also serves Notebook 7's
``/notebooks/`` pages) runs on 127.0.0.1 with a random token, in a temporary
root holding copies of the notebooks, with news and update checks off. A
headless Chromium (Debian's ``/usr/bin/chromium``, or ``$MLX_MAGIC_CHROMIUM``)
opens each notebook, waits for its kernel, runs all cells through the Run
menu and watches the outputs change with a MutationObserver, so every
rendered state of a streamed answer is seen, not just the ones a poll hits.

Screenshots go to ``test-artifacts/`` in the repository root.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.kernel]

playwright_api = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("MLX_MAGIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FRONTENDS = ["lab", "notebook7"]
KERNEL_DISPLAY_NAME = "Python 3 (ipykernel)"

# A notebook for the stop button: a long answer to interrupt, then a short one.
STOP_CELLS = [
    "%load_ext mlx_magic",
    "%%mlx -n 300\nWrite a long essay about the history of Rome.",
    "%%mlx -n 8\nSay hi.",
]

# The teaching views that are widgets, plots and tinted tokens (JupyterLab only):
# the "Branch here" picker under --probs, %mlx memory's figure, a --draft answer.
TEACHING_CELLS = [
    "%load_ext mlx_magic",
    "%%mlx -n 8 --probs 3\nWhat is the capital of France?",
    "%mlx memory",
    (
        "import tempfile\nfrom mlx_magic.testing.drafts import build_layer_draft\n"
        "draft = build_layer_draft('smollm2', tempfile.mkdtemp() + '/smollm2-draft', num_layers=26)"
    ),
    "%%mlx -n 24 --draft {draft} --probs 3\nExplain in a short paragraph why the sky is blue.",
]

# A notebook for the chat panel (JupyterLab only).
PANEL_CELLS = [
    "%load_ext mlx_magic",
    "%mlx panel",
]


# ---- the server ------------------------------------------------------------


class JupyterServer:
    def __init__(self, root: Path, env: dict, log_path: Path):
        self.root = root
        self.token = uuid.uuid4().hex
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--allow-root",
                "--ip=127.0.0.1",
                f"--port={self.port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={root}",
                # No news feed, no update check, no PyPI extension manager.
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=root,
        )

    def api(self, path, method="GET"):
        request = urllib.request.Request(
            f"{self.base}/api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
            data=b"" if method == "POST" else None,
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def wait_until_up(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter server exited:\n{self.log_tail()}")
            try:
                self.api("status")
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"jupyter server not up after {timeout} s:\n{self.log_tail()}")

    def url(self, frontend, path, workspace):
        if frontend == "lab":
            # A workspace of its own: Lab does not reopen other tests' notebooks.
            return f"{self.base}/lab/workspaces/{workspace}/tree/{path}?token={self.token}"
        return f"{self.base}/notebooks/{path}?token={self.token}"

    def session(self, path):
        for session in self.api("sessions"):
            if session["path"] == path:
                return session
        return None

    def shutdown_session(self, path):
        session = self.session(path)
        if session is not None:
            self.api(f"sessions/{session['id']}", method="DELETE")

    def stop(self):
        try:
            for session in self.api("sessions"):
                self.api(f"sessions/{session['id']}", method="DELETE")
            self.api("shutdown", method="POST")
            self.process.wait(timeout=20)
        except Exception:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        finally:
            self._log.close()

    def log_tail(self, lines=40):
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running_jupyter(base: Path, root: Path, **extra_env: str):
    """A Jupyter server on ``root`` with its own config, data and settings under
    ``base`` (news and update checks off; ``extra_env`` added), stopped after."""
    notification = base / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_DATA_DIR=str(base / "data"),  # only the built-in python3 kernel
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        IPYTHONDIR=str(base / "ipython"),
        HF_HUB_OFFLINE="1",
        # The kernels start in the notebooks' folder: they import this checkout's
        # mlx_magic, not the one installed (an editable install of another worktree).
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        **extra_env,
    )
    jupyter = JupyterServer(root, env, base / "server.log")
    try:
        jupyter.wait_until_up()
        yield jupyter
    finally:
        jupyter.stop()


@contextlib.contextmanager
def headless_chromium(profile: Path, height: int = 1100):
    """Debian's Chromium, headless, with a fresh profile (a Playwright context)."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(
            f"no Chromium at {CHROMIUM} (apt-get install chromium, or set MLX_MAGIC_CHROMIUM)"
        )
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": height},
        )
        try:
            yield context
        finally:
            context.close()


def _notebook(sources):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return notebook


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_vlm, tiny_sam3):
    if not Path(CHROMIUM).is_file():
        pytest.skip(
            f"no Chromium at {CHROMIUM} (apt-get install chromium, or set MLX_MAGIC_CHROMIUM)"
        )
    base = tmp_path_factory.mktemp("jupyter")
    root = base / "root"
    for frontend in FRONTENDS:
        folder = root / frontend
        folder.mkdir(parents=True)
        for notebook in NOTEBOOKS.glob("*.ipynb"):
            shutil.copy(notebook, folder / notebook.name)
        stop = _notebook(STOP_CELLS)
        nbformat.write(stop, folder / "stop.ipynb")
        if frontend == "lab":
            nbformat.write(_notebook(PANEL_CELLS), folder / "panel.ipynb")
            nbformat.write(_notebook(TEACHING_CELLS), folder / "teaching.ipynb")
    # These tests read the answer as the plain stream (stdout);
    # tests/test_browser_markdown.py checks the rendered stream, the default.
    profile = base / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text("c.MLXMagics.default_format = 'text'\n")
    with running_jupyter(
        base,
        root,
        MLX_MAGIC_DEFAULT_VISION_MODEL=str(tiny_vlm),
        MLX_MAGIC_DEFAULT_SEGMENT_MODEL=str(tiny_sam3),
    ) as jupyter:
        yield jupyter


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile"), height=1000) as context:
        yield context


# ---- a notebook page -----------------------------------------------------------

# Records every rendered state of every code cell's outputs: the stdout text,
# the mlx_magic status line and footer, and error text.
_RECORDER = """() => {
  const notebook = document.querySelector('.jp-Notebook');
  const log = window.__mlxLog = [];
  const last = new Map();
  const text = (cell, selector) =>
    [...cell.querySelectorAll(selector)].map(e => e.textContent).join('');
  const snapshot = () => {
    notebook.querySelectorAll('.jp-CodeCell').forEach((cell, index) => {
      const state = {
        stdout: text(cell, '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]'),
        stderr: text(cell, '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'),
        status: text(cell, '.mlx-magic-status'),
        footer: text(cell, '.mlx-magic-footer'),
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

_PROMPTS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
  .map(p => p.textContent.trim())"""


class NotebookPage:
    def __init__(self, context, server, frontend, path):
        self.server, self.frontend, self.path = server, frontend, path
        self.page = context.new_page()
        self.page.set_default_timeout(60_000)
        self.page.goto(server.url(frontend, path, workspace=uuid.uuid4().hex[:8]))
        self.page.wait_for_selector(".jp-Notebook .jp-CodeCell .cm-line")
        self.wait_for_kernel()
        # From the file: a long notebook's off-screen cells have no editor lines yet.
        content = server.api(f"contents/{path}")["content"]
        self.sources = [
            "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for cell in content["cells"]
            if cell["cell_type"] == "code"
        ]
        self.page.evaluate(_RECORDER)

    def wait_for_kernel(self, timeout=90):
        """The kernel exists on the server, is idle, and the page is connected to it."""
        deadline = time.monotonic() + timeout
        while True:
            session = self.server.session(self.path)
            kernel = session and session.get("kernel")
            if kernel and kernel.get("execution_state") == "idle":
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no idle kernel for {self.path}: {session}\n{self.server.log_tail()}"
                )
            time.sleep(0.3)
        # The toolbar's kernel indicator says "initializing"/"connecting" until
        # the page has its own connection to that kernel.
        self.page.wait_for_selector(
            '.jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator[data-status="idle"]',
            timeout=max(1, deadline - time.monotonic()) * 1000,
        )
        name = self.page.locator(".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName").first
        assert name.text_content().strip() == KERNEL_DISPLAY_NAME

    def index(self, first_line):
        return next(i for i, s in enumerate(self.sources) if s.split("\n")[0] == first_line)

    def cell(self, index):
        return self.page.locator(".jp-Notebook .jp-CodeCell").nth(index)

    def run_all(self):
        self.page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        self.page.locator(
            ".lm-Menu-item:visible .lm-Menu-itemLabel", has_text="Run All Cells"
        ).first.click()

    def wait_until_run(self, indices=None, timeout=600):
        """Every code cell (or those given) has an execution count: ran, none still queued.
        ``timeout`` only bounds a run that hangs: a busy CI machine ran the 41 cells of
        02-vision (marks, SAM 3) past four minutes."""
        deadline = time.monotonic() + timeout
        while True:
            prompts = self.page.evaluate(_PROMPTS)
            chosen = [prompts[i] for i in indices] if indices is not None else prompts
            if all(p[1:-2].isdigit() for p in chosen):  # "[12]:"
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"cells still running or queued: {prompts}")
            time.sleep(0.2)

    def log(self, index=None):
        entries = self.page.evaluate("() => window.__mlxLog")
        return [e for e in entries if index is None or e["cell"] == index]

    def final(self, index):
        return self.log(index)[-1]

    def stop_button(self):
        return self.page.locator(
            '.jp-NotebookPanel-toolbar jp-button[data-command="notebook:interrupt-kernel"]'
        ).first

    def screenshot(self, name, scroll_to=None):
        """A PNG of the page in test-artifacts/, with ``scroll_to`` at the top of the view."""
        if scroll_to is not None:
            scroll_to.evaluate("e => e.scrollIntoView({block: 'start'})")
            # Offscreen cells are skipped by the browser (content-visibility)
            # until scrolled to: wait until this one is painted.
            scroll_to.evaluate("""e => new Promise(done => {
                const check = () => e.checkVisibility({contentVisibilityAuto: true})
                    ? requestAnimationFrame(() => requestAnimationFrame(done))
                    : requestAnimationFrame(check);
                check();
            })""")
            self.page.wait_for_timeout(300)
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def close(self):
        self.page.close()
        self.server.shutdown_session(self.path)


@pytest.fixture
def open_notebook(browser, server):
    pages = []

    def open_(frontend, path):
        page = NotebookPage(browser, server, frontend, path)
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.close()


def wait_for(condition, timeout, describe):
    """Poll ``condition`` until true; fail with ``describe()`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except IndexError:  # nothing logged for that cell yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {describe()}")
        time.sleep(0.2)


def streamed(entries):
    """The distinct non-empty stdout texts, in the order they were rendered."""
    texts = []
    for entry in entries:
        if entry["stdout"] and (not texts or entry["stdout"] != texts[-1]):
            texts.append(entry["stdout"])
    return texts


def assert_streamed(entries, min_partials):
    texts = streamed(entries)
    final, partials = texts[-1], texts[:-1]
    assert len(partials) >= min_partials, texts
    # Each update appends to what was already shown.
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:])), texts
    # The footer comes after the whole answer.
    first_footer = next(e for e in entries if e["footer"])
    assert first_footer["stdout"] == final
    return final


def save_timeline(name, notebook, indices):
    """What the browser showed of these cells, and when (ms), for reading after a failure."""
    timeline = {
        notebook.sources[i]: [
            {
                "ms": round(e["t"]),
                "status": e["status"],
                "answer": e["stdout"],
                "footer": e["footer"],
            }
            for e in notebook.log(i)
        ]
        for i in indices
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"{name}-timeline.json").write_text(
        json.dumps(timeline, indent=1, ensure_ascii=False)
    )


def assert_no_errors(notebook, except_cells=()):
    for index, source in enumerate(notebook.sources):
        if index not in except_cells:
            stderr = notebook.final(index)["stderr"] if notebook.log(index) else ""
            assert "Error" not in stderr and "Traceback" not in stderr, (source, stderr)


# ---- the tests --------------------------------------------------------------------


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_quickstart_streams_answers_with_footers(open_notebook, frontend):
    notebook = open_notebook(frontend, f"{frontend}/01-quickstart.ipynb")
    notebook.run_all()
    notebook.wait_until_run()

    capital = notebook.index("%%mlx")
    tips = notebook.index('%%mlx -n 60 -s "You are a concise assistant." -o tips')
    save_timeline(f"{frontend}-01-quickstart", notebook, [capital, tips])
    entries = notebook.log(capital)
    # The status line came first (loading, reading the prompt) and was cleared.
    statuses = [e["status"] for e in entries if e["status"]]
    assert any("Loading" in s or "reading the prompt" in s for s in statuses), statuses
    assert entries[-1]["status"] == ""
    # 7 tokens at ~6 tok/s, flushed every 200 ms: 4-5 partial texts are
    # rendered on this machine (fewer only if generation gets much faster).
    answer = assert_streamed(entries, min_partials=3)
    assert "Paris" in answer
    footer = entries[-1]["footer"]
    assert "tok/s" in footer and "smollm2" in footer and "cold" in footer
    footer_element = notebook.cell(capital).locator(".mlx-magic-footer")
    footer_element.scroll_into_view_if_needed()
    assert footer_element.is_visible()

    tips_entries = notebook.log(tips)
    assert_streamed(tips_entries, min_partials=3)
    assert "warm" in tips_entries[-1]["footer"]
    assert "stopped at max tokens" in tips_entries[-1]["footer"]
    for index in (capital, tips, notebook.index("%%mlx -n 30 --temp 0.8 --seed 42")):
        assert notebook.cell(index).locator(".mlx-magic-footer").is_visible()
    assert "smollm2" in notebook.final(notebook.index("%mlx models"))["stdout"]
    assert_no_errors(notebook)
    notebook.screenshot(f"{frontend}-01-quickstart", scroll_to=notebook.cell(capital))


@pytest.mark.vision
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_vision_previews_load_before_streamed_answers(open_notebook, frontend):
    notebook = open_notebook(frontend, f"{frontend}/02-vision.ipynb")
    notebook.run_all()
    notebook.wait_until_run()
    assert_no_errors(notebook)

    vision = [
        i
        for i, s in enumerate(notebook.sources)
        if s.startswith("%%mlx_vision") and "--segment" not in s
    ]
    # Two are videos (a strip of frames, no preview) and one a follow-up in a conversation.
    assert len(vision) == 18
    for index in vision:
        cell = notebook.cell(index)
        first_line = notebook.sources[index].split("\n")[0]
        # A region (--region, or a box's crop) is shown after the whole image it came from.
        in_context = "--region" in first_line or first_line.startswith("%%mlx_vision -i circle")
        # --region @N without -i: the image the mark was drawn on.
        expected = (first_line.count("-i ") or "--region @" in first_line) + in_context
        if " -v " in first_line:
            frames = cell.locator("img.mlx-magic-frame")
            frames.first.scroll_into_view_if_needed()
            assert frames.count() >= 2 and frames.first.is_visible()
        previews = cell.locator("img.mlx-magic-preview")
        assert previews.count() == expected
        for n in range(expected):
            image = previews.nth(n)
            image.scroll_into_view_if_needed()
            image.evaluate("img => img.decode()")  # resolves once the image can be drawn
            assert image.evaluate("img => img.complete && img.naturalWidth > 0")
            assert image.is_visible()
        # Previews, then the streamed answer, then the footer, in the cell's outputs.
        kinds = cell.locator(".jp-OutputArea-output").evaluate_all(
            """outputs => outputs.map(o =>
                 o.querySelector('img.mlx-magic-preview') ? 'preview'
                 : o.getAttribute('data-mime-type') === 'application/vnd.jupyter.stdout' ? 'answer'
                 : o.querySelector('.mlx-magic-footer') ? 'footer' : 'other')"""
        )
        meaningful = [k for k in kinds if k != "other"]
        assert meaningful == ["preview"] * bool(expected) + ["answer", "footer"], kinds
        footer = cell.locator(".mlx-magic-footer")
        footer.scroll_into_view_if_needed()
        assert footer.is_visible() and "tok/s" in footer.text_content()
    notebook.screenshot(f"{frontend}-02-vision", scroll_to=notebook.cell(vision[0]))

    # The scripted Qwen2-VL answer: its two boxes drawn on the canvas's preview.
    scripted = next(
        i for i, s in enumerate(notebook.sources) if "forced_vision_answer(answer)" in s
    )
    drawn = notebook.cell(scripted).locator("img.mlx-magic-preview").first
    drawn.scroll_into_view_if_needed()
    drawn.evaluate("img => img.decode()")
    # The red circle's box runs along y = 40 of the 320×240 canvas, from x = 30 to 150;
    # at x = 50 the canvas is white there: the outline (or its label) is not.
    pixel = drawn.evaluate(
        """img => {
            const canvas = document.createElement('canvas');
            canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
            const context = canvas.getContext('2d');
            context.drawImage(img, 0, 0);
            const scale = img.naturalWidth / 320;
            return Array.from(context.getImageData(
                Math.round(50 * scale), Math.round(40 * scale), 1, 1).data);
        }"""
    )
    assert pixel[:3] != [255, 255, 255], pixel
    assert "blue rectangle" in notebook.cell(scripted + 1).text_content()  # _mlx.boxes
    notebook.screenshot(f"{frontend}-02-vision-boxes", scroll_to=notebook.cell(scripted))

    # The --marks cell: its answer named mark 2, so the board draws mark 1 grey
    # (the box's left edge, 30 of the 320×240 canvas: 24 of the 256-wide thumbnail).
    named = next(i for i, s in enumerate(notebook.sources) if '"--marks -n 30"' in s)
    board = notebook.cell(named).locator("canvas.mlx-magic-marks").first
    board.scroll_into_view_if_needed()
    edge = "c => Array.from(c.getContext('2d').getImageData(24, 80, 1, 1).data)"
    wait_for(lambda: board.evaluate(edge) == [150, 150, 150, 255], 30, lambda: board.evaluate(edge))
    notebook.screenshot(f"{frontend}-02-vision-marks", scroll_to=notebook.cell(named))


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_stop_button_cancels_and_the_next_cell_answers(open_notebook, frontend):
    notebook = open_notebook(frontend, f"{frontend}/stop.ipynb")
    essay, hi = notebook.index("%%mlx -n 300"), notebook.index("%%mlx -n 8")
    notebook.run_all()

    # Wait until the essay is flowing, then press the toolbar's stop button.
    wait_for(
        lambda: len(notebook.final(essay)["stdout"].split()) >= 4, 120, lambda: notebook.log(essay)
    )
    notebook.stop_button().click()

    wait_for(lambda: notebook.final(essay)["footer"], 60, lambda: notebook.log(essay))
    notebook.wait_until_run([essay])
    wait_for(
        lambda: "KeyboardInterrupt" in notebook.final(essay)["stderr"],
        30,
        lambda: notebook.final(essay),
    )
    final = notebook.final(essay)
    assert final["footer"].startswith("■ cancelled"), final
    tokens = int(final["footer"].split("·")[1].split()[0])
    assert 0 < tokens < 300
    assert final["stdout"].strip()

    # Run All stopped at the interrupted cell; run the next one by hand.
    notebook.cell(hi).locator(".jp-InputArea-editor").click()
    notebook.page.keyboard.press("Shift+Enter")
    notebook.wait_until_run([hi], timeout=120)
    wait_for(lambda: notebook.final(hi)["footer"], 30, lambda: notebook.log(hi))
    answer = notebook.final(hi)
    assert answer["stdout"].strip()
    assert "warm" in answer["footer"] and "cancelled" not in answer["footer"]
    assert notebook.cell(hi).locator(".mlx-magic-footer").is_visible()
    notebook.screenshot(f"{frontend}-stop", scroll_to=notebook.cell(essay))


# Records every rendered state of the chat panel in one cell: the text of each
# answer (one ``.mlx-magic-text`` per answer while it is under 2000
# characters), the status lines, the footers, and whether Send/Stop are enabled.
_PANEL_RECORDER = """(cellIndex) => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[cellIndex];
  const log = window.__panelLog = [];
  let last = '';
  const texts = selector => [...cell.querySelectorAll(selector)].map(e => e.textContent);
  const enabled = name => {
    const button = [...cell.querySelectorAll('button.widget-button')]
      .find(b => b.textContent.trim() === name);
    return button ? !button.disabled : null;
  };
  const snapshot = () => {
    const state = {
      answers: texts('.mlx-magic-text'),
      statuses: texts('.mlx-magic-status'),
      footers: texts('.mlx-magic-footer'),
      send: enabled('Send'),
      stop: enabled('Stop'),
    };
    const key = JSON.stringify(state);
    if (key !== last) {
      last = key;
      log.push({t: performance.now(), ...state});
    }
  };
  new MutationObserver(snapshot).observe(cell,
    {subtree: true, childList: true, characterData: true, attributes: true});
  snapshot();
}"""


def panel_answers(entries, index):
    """The distinct non-empty texts of answer ``index``, in the order they were rendered."""
    texts = []
    for entry in entries:
        answers = entry["answers"]
        if len(answers) > index and answers[index] and (not texts or answers[index] != texts[-1]):
            texts.append(answers[index])
    return texts


def settle_widgets(notebook, quiet_s=0.5, timeout=15):
    """Wait until the kernel has taken every typed change of the widgets.

    ipywidgets holds a model's state changes back while earlier ones are not
    acknowledged, but sends a button's click at once: on a busy machine a
    click can reach the kernel before the last keystrokes (seen in CI: the
    panel sent "What is the capital of Fr"). The kernel idle for ``quiet_s``
    means the changes are in."""
    indicator = notebook.page.locator(
        ".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator"
    ).first
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        if indicator.get_attribute("data-status") == "idle":
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_s:
                return
        else:
            quiet_since = None
        time.sleep(0.05)
    raise AssertionError("the kernel never settled after typing")


def test_lab_chat_panel_streams_and_stops(open_notebook):
    started = time.monotonic()
    notebook = open_notebook("lab", "lab/panel.ipynb")
    panel_index = notebook.index("%mlx panel")
    notebook.run_all()
    notebook.wait_until_run(timeout=60)
    assert_no_errors(notebook)

    # The widgets are rendered by the ipywidgets JupyterLab extension.
    cell = notebook.cell(panel_index)
    prompt = cell.locator(".widget-textarea textarea")
    send = cell.locator("button.widget-button", has_text="Send")
    stop = cell.locator("button.widget-button", has_text="Stop")
    prompt.wait_for(state="visible", timeout=30_000)
    expect = playwright_api.expect
    expect(send).to_be_enabled()
    expect(stop).to_be_disabled()
    notebook.page.evaluate(_PANEL_RECORDER, panel_index)
    log = lambda: notebook.page.evaluate("() => window.__panelLog")  # noqa: E731

    # Max tokens 64 through its number box: an essay that the Stop button
    # failed to stop would end in ~15 s, not ~50 s.
    box = cell.locator(".widget-text", has_text="Max tokens").locator("input")
    box.click()
    notebook.page.keyboard.press("Control+A")
    notebook.page.keyboard.type("64")
    notebook.page.keyboard.press("Enter")
    expect(box).to_have_value("64")

    # A short question, typed and sent as a user would.
    prompt.click()
    notebook.page.keyboard.type("What is the capital of France?")
    settle_widgets(notebook)
    send.click()
    expect(stop).to_be_enabled(timeout=10_000)
    expect(send).to_be_disabled()
    expect(
        cell.locator(".widget-html", has_text="You: What is the capital of France?")
    ).to_be_visible()
    expect(prompt).to_have_value("")
    wait_for(lambda: len(log()[-1]["footers"]) >= 1 and log()[-1]["send"], 60, log)
    first_done = time.monotonic()
    entries = log()
    texts = panel_answers(entries, 0)
    final, partials = texts[-1], texts[:-1]
    assert len(partials) >= 2, texts
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:])), texts
    assert "Paris" in final, texts
    footer = entries[-1]["footers"][0]
    assert "tok/s" in footer and "smollm2" in footer and "cancelled" not in footer, footer
    # The footer came after the whole answer.
    first_footer = next(e for e in entries if e["footers"])
    assert first_footer["answers"][0] == final
    assert cell.locator(".mlx-magic-footer").first.is_visible()
    assert not entries[-1]["stop"]

    # A long request, stopped with the panel's Stop button once text flows.
    prompt.click()
    notebook.page.keyboard.type("Write a long essay about Rome.")
    settle_widgets(notebook)
    send.click()
    wait_for(
        lambda: len(log()[-1]["answers"]) >= 2 and len(log()[-1]["answers"][1].split()) >= 4,
        60,
        lambda: log()[-1],
    )
    stop.click()
    wait_for(lambda: len(log()[-1]["footers"]) >= 2, 30, lambda: log()[-1])
    expect(send).to_be_enabled(timeout=10_000)
    expect(stop).to_be_disabled()
    entries = log()
    essay_footer = entries[-1]["footers"][1]
    assert essay_footer.startswith("■ cancelled"), essay_footer
    tokens = int(essay_footer.split("·")[1].split()[0])
    assert 0 < tokens < 64, essay_footer
    essay = panel_answers(entries, 1)
    assert len(essay) >= 2 and essay[-1].strip(), essay
    assert entries[-1]["answers"][0] == final  # the first answer is untouched
    ended = time.monotonic()

    timeline = [{"ms": round(e["t"]), **{k: v for k, v in e.items() if k != "t"}} for e in entries]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "lab-panel-timeline.json").write_text(
        json.dumps(timeline, indent=1, ensure_ascii=False)
    )
    notebook.screenshot("lab-panel", scroll_to=cell)
    print(
        f"panel test: first answer after {first_done - started:.1f} s, "
        f"stopped essay after {ended - started:.1f} s"
    )


def test_lab_branch_picker_memory_plot_and_drafted_tokens(open_notebook):
    notebook = open_notebook("lab", "lab/teaching.ipynb")
    notebook.run_all()
    notebook.wait_until_run(timeout=240)
    assert_no_errors(notebook)
    expect = playwright_api.expect
    page = notebook.page

    # %mlx memory: the figure, as a picture, and the tables.
    memory = notebook.cell(2)
    expect(memory.locator("img").first).to_be_visible()
    box = memory.locator("img").first.bounding_box()
    assert box["width"] > 400 and box["height"] > 100, box
    expect(memory.locator("table", has_text="weights_mib").first).to_be_visible()
    notebook.screenshot("lab-teaching-memory", scroll_to=memory)

    # --draft: the footer says what the draft did; --probs underlines its tokens.
    drafted = notebook.cell(4)
    footer = drafted.locator(".mlx-magic-footer").first.text_content()
    assert "draft smollm2-draft: " in footer and "% of tokens" in footer, footer
    underlined = drafted.locator(".mlx-magic-probs .mlx-magic-draft")
    assert underlined.count() >= 1
    style = underlined.first.evaluate("e => getComputedStyle(e).borderBottomStyle")
    assert style == "solid"
    notebook.screenshot("lab-teaching-draft", scroll_to=drafted)

    # "Branch here" under the first answer's probabilities: token 1, its first
    # alternative; the branch streams and is shown beside the original.
    answer = notebook.cell(1)
    button = answer.locator("button.widget-button", has_text="Branch here")
    button.scroll_into_view_if_needed()
    expect(button).to_be_visible(timeout=30_000)
    button.click()
    columns = answer.locator(".mlx-magic-branch")
    expect(columns).to_be_visible(timeout=60_000)
    expect(columns).to_contain_text("branch at token 1:")
    expect(columns).to_contain_text("original")
    assert columns.locator(".mlx-magic-probs").count() == 2  # each with its probabilities
    page.wait_for_timeout(300)
    notebook.screenshot("lab-teaching-branch", scroll_to=answer)
