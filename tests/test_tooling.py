"""The house rules run with the tests: ruff (lint and format) and mypy, as
configured in pyproject.toml."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name):
    path = BIN / name
    if not path.exists():
        path = Path(shutil.which(name) or name)
    return str(path)


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "mlx_magic", "tests", "benchmarks", "scripts"],
        ["ruff", "format", "--check", "mlx_magic", "tests", "benchmarks", "scripts"],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_passes(command):
    done = subprocess.run(
        [tool(command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
