"""%%mlx in a real terminal IPython (prompt_toolkit) under a pseudo-terminal.

The cell is typed as a user types it: ``%%mlx -n 12``, Enter, the question,
Enter, and Enter on empty lines until IPython runs the cell (a cell magic
ends with a blank line).
"""

import os
import re
import sys
import time

import pexpect
import pytest

pytestmark = [pytest.mark.model]

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
FOOTER = re.compile(r"\[(■ cancelled · )?\d+ tokens · [\d.]+ tok/s · [^\]\n]*\]")


def plain(text):
    return ANSI.sub("", text).replace("\r", "")


@pytest.fixture(scope="module")
def ipython(tmp_path_factory):
    env = dict(
        os.environ,
        TERM="xterm",
        # No cursor-position requests: nobody answers them under pexpect.
        PROMPT_TOOLKIT_NO_CPR="1",
        IPYTHONDIR=str(tmp_path_factory.mktemp("ipython")),
    )
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "IPython",
            "--no-banner",
            "--colors=NoColor",
            "--no-confirm-exit",
            "--HistoryManager.hist_file=:memory:",
            "--TerminalInteractiveShell.term_title=False",
        ],
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )
    try:
        child.expect(r"In \[1\]:")
        child.send("%load_ext mlx_magic\r")
        child.expect(r"In \[2\]:")
        yield child
        child.send("exit\r")
        child.expect(pexpect.EOF, timeout=30)
    finally:
        if child.isalive():
            child.terminate(force=True)


def type_cell(child, *lines):
    """Type a cell magic line by line, then the blank lines that run it."""
    for line in [*lines, ""]:
        child.send(line + "\r")
        child.expect(r"\.\.\.:")  # IPython's continuation prompt: still editing
    child.send("\r")
    # The last Enter redraws the cell and hands it to IPython.
    child.expect(r"\x1b\[\?2004l")  # bracketed paste off: the cell is running


def read_until(child, pattern, timeout, on_read=None):
    """Read the terminal in small bites until ``pattern`` shows; return (text, reads)."""
    text, reads = "", []
    deadline = time.monotonic() + timeout
    while not re.search(pattern, plain(text)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} within {timeout} s; got {plain(text)!r}")
        try:
            text += child.read_nonblocking(4096, timeout=0.1)
        except pexpect.TIMEOUT:
            continue
        reads.append((time.monotonic(), plain(text)))
        if on_read:
            on_read(plain(text))
    return plain(text), reads


def answer_part(screen):
    """The streamed answer: what follows the loading line, before the footer."""
    lines = [line for line in screen.split("\n") if not line.startswith("[loading")]
    answer = "\n".join(lines)
    footer = FOOTER.search(answer)
    return (answer[: footer.start()] if footer else answer).strip()


def test_tokens_stream_into_the_terminal_then_the_footer(ipython):
    type_cell(ipython, "%%mlx -n 12", "What is the capital of France?")
    screen, reads = read_until(ipython, r"In \[3\]:", timeout=180)

    assert "[loading smollm2…]" in screen  # first use in this process
    footer = FOOTER.search(screen)
    assert footer and "smollm2" in footer.group() and "cold" in footer.group()
    answer = answer_part(screen)
    assert "Paris" in answer
    # Streamed: the answer grew over several reads before the footer was printed.
    before_footer = [answer_part(text) for _, text in reads if not FOOTER.search(text)]
    growing = [
        text for i, text in enumerate(before_footer) if text and text != before_footer[i - 1]
    ]
    assert len(growing) >= 2, before_footer
    assert all(answer.startswith(part) for part in growing)
    assert len(growing[0]) < len(answer)


def test_ctrl_c_cancels_and_the_model_stays_warm(ipython):
    type_cell(ipython, "%%mlx -n 300", "Write a long essay about the history of Rome.")

    sent = []

    def interrupt_when_text_flows(screen):
        if not sent and len(answer_part(screen).split()) >= 3:
            ipython.send("\x03")  # Ctrl-C: the terminal sends SIGINT
            sent.append(True)

    screen, _ = read_until(ipython, r"In \[4\]:", timeout=120, on_read=interrupt_when_text_flows)
    footer = FOOTER.search(screen)
    assert footer and footer.group().startswith("[■ cancelled · ") and "warm" in footer.group()
    assert "KeyboardInterrupt" in screen
    assert int(footer.group().split("· ")[1].split()[0]) < 300

    ipython.send("_mlx.finish_reason\r")
    ipython.expect(r"In \[5\]:")
    assert "'cancelled'" in plain(ipython.before)
