"""How a worker process ends: waiting for it, ending it, and the words for it.

:func:`end_process` waits for a process, then terminates and at last kills
it; :func:`collect_exit` collects the exit status of one that should be
gone; :func:`describe_exit` turns an exit status into the end of a one-line
message ("crashed with SIGSEGV …").
"""

from __future__ import annotations

import signal
import subprocess
from typing import Callable, Optional


def describe_exit(returncode: Optional[int]) -> str:
    """How a process ended, for a one-line message ("crashed with SIGSEGV …")."""
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            return f"was ended by signal {number}"
        if number == signal.SIGKILL:
            return "was killed with SIGKILL (out of memory, or killed by hand)"
        if number == signal.SIGSEGV:
            return "crashed with SIGSEGV (segmentation fault)"
        if number == signal.SIGABRT:
            return "aborted (SIGABRT)"
        if number == signal.SIGBUS:
            return "crashed with SIGBUS (bus error)"
        description = signal.strsignal(number) or name
        return f"was ended by {name} ({description.lower()})"
    if returncode == 0:
        return "exited unexpectedly (exit code 0)"
    return f"exited with code {returncode}"


def end_process(proc: subprocess.Popen, wait_s: float) -> None:
    """Wait up to ``wait_s`` for ``proc`` to exit; terminate it, then kill it, if it does not."""
    asks: list[tuple[Optional[Callable[[], None]], float]] = [
        (None, wait_s),
        (proc.terminate, 3.0),
        (proc.kill, 5.0),
    ]
    for ask, wait in asks:
        if ask is not None:
            try:
                ask()
            except OSError:
                pass
        try:
            proc.wait(max(0.1, wait))
            break
        except subprocess.TimeoutExpired:
            continue


def collect_exit(proc: subprocess.Popen) -> int:
    """The exit status of a process that should be ending; killed after 2 s."""
    try:
        return proc.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        # Its stdout closed but it lives on: it is of no use any more.
        proc.kill()
        return proc.wait()
