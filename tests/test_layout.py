"""The layout keeps its shape: small modules, and MLX imported only where the
engine runs (statically checked here; tests/test_layers.py checks a real kernel)."""

import ast
from pathlib import Path

import mlx_magic

ROOT = Path(mlx_magic.__file__).parent
MLX = ("mlx", "mlx_lm", "mlx_vlm")
# Where importing MLX at a module's top is allowed: the layers that only run
# on the runtime's side.
MLX_ROOMS = ("engine/", "models/gguf/convert.py", "testing/", "bench/")


def modules():
    return sorted(ROOT.rglob("*.py"))


def test_no_module_is_over_450_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert long == {}


def top_level_imports(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level only: lazy imports inside functions are fine
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_mlx_is_imported_at_the_top_only_in_the_engine_rooms():
    offenders = []
    for path in modules():
        where = str(path.relative_to(ROOT))
        if where.startswith(MLX_ROOMS):
            continue
        for name in top_level_imports(path):
            if name.split(".")[0] in MLX:
                offenders.append(f"{where}: {name}")
    assert offenders == []


def test_the_display_and_magics_do_not_import_the_engine_at_the_top():
    offenders = []
    for room in ("display", "magics", "images", "models", "runtime/remote", "runtime/process"):
        for path in (ROOT / room).rglob("*.py"):
            for name in top_level_imports(path):
                if name.startswith(("mlx_magic.engine", "mlx_magic.runtime.thread")):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_the_package_leaves_the_benchmark_and_matplotlib_outside():
    # The benchmark lives in benchmarks/ at the repository's root, out of the
    # wheel; matplotlib (a test extra) is imported only inside functions.
    assert not (ROOT / "bench").exists()
    assert not (ROOT / "tiny_models.py").exists()  # one path: mlx_magic.testing.tiny_models
    offenders = []
    for path in modules():
        for name in top_level_imports(path):
            if name.split(".")[0] in ("benchmarks", "matplotlib"):
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []
    for path in modules():  # nor lazily: the package never reaches for the benchmark
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            assert not any(n.split(".")[0] == "benchmarks" for n in names), path
