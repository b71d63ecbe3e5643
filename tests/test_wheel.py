"""A wheel built from pyproject.toml carries every sub-package: installed in a
fresh virtual environment, it runs the quickstart notebook.

The fresh environment gets the wheel alone; the dependencies (MLX, mlx-lm,
IPython, ...) are the test environment's, reached through a ``.pth`` line, so
the test needs no second install of MLX (building the wheel fetches setuptools,
as any isolated build does). The checkout's editable install is not visible
there (a ``.pth`` line adds a folder without processing the ``.pth`` files
inside it), so ``mlx_magic`` can only come from the wheel; the test checks it.
"""

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import mlx_magic

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.kernel, pytest.mark.model]


def test_wheel_in_a_fresh_venv_runs_the_quickstart(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    [wheel] = wheels.glob("mlx_magic-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    source = Path(mlx_magic.__file__).parent
    expected = {"mlx_magic/" + str(path.relative_to(source)) for path in source.rglob("*.py")}
    assert expected <= set(names), sorted(expected - set(names))

    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=300,
    )
    fresh_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (fresh_site / "test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    where = subprocess.run(
        [str(python), "-c", "import mlx_magic; print(mlx_magic.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert where.startswith(str(fresh_site)), where

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [
            str(python),
            str(ROOT / "scripts" / "run_notebook.py"),
            str(ROOT / "notebooks" / "01-quickstart.ipynb"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Paris" in run.stdout
    assert "tok/s" in run.stdout  # the footer of a real answer
