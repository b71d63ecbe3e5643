"""The layout keeps its shape: small modules, layers whose imports only run down,
no import cycles, and MLX imported only by the engine (statically checked here;
tests/test_layers.py checks a real kernel)."""

import ast
from pathlib import Path

import mlx_magic

ROOT = Path(mlx_magic.__file__).parent
MLX = ("mlx", "mlx_lm", "mlx_vlm")
# The layers, bottom first: a room may import only rooms on lower floors
# (never one beside it), at the top of a module or inside a function alike.
LAYERS = (
    ("errors", "units", "locking"),
    ("vocabulary",),
    ("images", "grounding"),
    ("models",),
    ("engine", "testing"),
    ("runtime",),
    ("display",),
    ("magics",),
    ("kernelspec",),
    ("__init__", "__main__", "worker"),
)
FLOOR = {room: floor for floor, rooms in enumerate(LAYERS) for room in rooms}
# Where MLX may be imported at all: the engine, and the helpers that build
# tiny models with mlx-lm's and mlx-vlm's own classes.
MLX_ROOMS = ("engine", "testing")


def modules():
    return sorted(ROOT.rglob("*.py"))


def module_name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_module_is_over_450_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert long == {}


def top_level_imports(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level only
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def every_import(path, known=()):
    """(line, module) for each import anywhere in the file (inside functions and
    ``if TYPE_CHECKING:`` too); ``from package import submodule`` counts as the
    submodule when it is one of ``known``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            submodules = [f"{node.module}.{a.name}" for a in node.names]
            if all(name in known for name in submodules):
                for name in submodules:
                    yield node.lineno, name
            else:
                yield node.lineno, node.module


def test_the_layers_are_known_and_every_import_runs_down():
    names = {module_name(path) for path in modules()}
    rooms = {room_of(name) for name in names}
    assert rooms <= set(FLOOR), f"rooms missing from LAYERS: {rooms - set(FLOOR)}"
    offenders = []
    for path in modules():
        mine = room_of(module_name(path))
        for line, name in every_import(path, known=names):
            if name.split(".")[0] != "mlx_magic":
                continue
            theirs = room_of(name)
            if theirs != mine and FLOOR[theirs] >= FLOOR[mine]:
                offenders.append(f"{path.relative_to(ROOT)}:{line} ({mine}) imports {name}")
    assert offenders == []


def test_mlx_is_imported_only_by_the_engine():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in modules()
        if room_of(module_name(path)) not in MLX_ROOMS
        for line, name in every_import(path)
        if name.split(".")[0] in MLX
    ]
    assert offenders == []


def test_the_display_and_magics_do_not_import_the_engine_at_the_top():
    offenders = []
    for room in ("display", "magics", "images", "models", "runtime/remote", "runtime/process"):
        for path in (ROOT / room).rglob("*.py"):
            for name in top_level_imports(path):
                if name.startswith(("mlx_magic.engine", "mlx_magic.runtime.thread")):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_no_two_modules_import_each_other_even_through_others():
    paths = {module_name(path): path for path in modules()}
    graph = {
        name: {m for _, m in every_import(path, known=paths) if m in paths and m != name}
        for name, path in paths.items()
    }
    cycles = []
    state: dict = {}  # 1: on the path being walked, 2: done

    def walk(name, trail):
        state[name] = 1
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycles.append(" -> ".join(trail[trail.index(other) :] + [other]))
            elif other not in state:
                walk(other, trail + [other])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert cycles == []


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


def test_the_engine_reads_job_controls_and_never_writes_to_a_job():
    # The engine reads what it may of a job (vocabulary.job.JobControls: the
    # request, the caller's flags) and hands its events back as values; the
    # runtime holds the Job and puts them in it. No engine code calls emit.
    offenders = []
    for path in (ROOT / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "mlx_magic.vocabulary.job":
                offenders += [
                    f"{path.relative_to(ROOT)}: {a.name}"
                    for a in node.names
                    if a.name != "JobControls"
                ]
            if isinstance(node, ast.Attribute) and node.attr in ("emit", "wait_for_first_text"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert offenders == []


def test_generations_start_in_one_place_and_are_read_in_one_loop():
    # Session.start is the one caller of the runtime's generate methods above
    # the runtime; display/following.follow the one reader of a job's events.
    starts, reads = [], []
    for folder in ("magics", "display"):
        for path in (ROOT / folder).rglob("*.py"):
            name = str(path.relative_to(ROOT))
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Attribute):
                    continue
                if node.attr in ("generate", "generate_together") and name != "magics/session.py":
                    starts.append(f"{name}:{node.lineno}")
                if node.attr in ("next_event", "waiting_events") and name != "display/following.py":
                    reads.append(f"{name}:{node.lineno}")
    assert (starts, reads) == ([], [])
