"""One error hierarchy (mlx_magic.errors), and user mistakes that are exactly
UsageError at the edge, raised from their cause so %tb can show it."""

import inspect

import pytest
from IPython.core.error import UsageError

from mlx_magic import errors
from mlx_magic.errors import (
    GenerationInterrupted,
    ImageSourceError,
    MLXMagicError,
    ModelLoadError,
    TemplateError,
    UnsupportedGGUF,
    UserError,
)

from conftest import run


def test_every_error_class_is_in_the_one_tree():
    classes = [
        value
        for value in vars(errors).values()
        if inspect.isclass(value) and issubclass(value, BaseException)
    ]
    assert len(classes) >= 16
    for cls in classes:
        if cls is GenerationInterrupted:
            assert issubclass(cls, KeyboardInterrupt)
            continue
        assert issubclass(cls, MLXMagicError), cls
        assert cls.__name__ in errors.__doc__, f"{cls.__name__} is missing from the tree"
    for user_facing in (ModelLoadError, UnsupportedGGUF, ImageSourceError, TemplateError):
        assert issubclass(user_facing, UserError)


def test_no_module_defines_its_own_exception_classes():
    import importlib
    import pkgutil

    import mlx_magic

    own = []
    for info in pkgutil.walk_packages(mlx_magic.__path__, "mlx_magic."):
        if info.name.endswith("__main__") or info.name in ("mlx_magic.errors", "mlx_magic.worker"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
            ):
                own.append(f"{info.name}.{name}")
    # One exception: a KeyError that string.Formatter must see as a KeyError.
    assert own == ["mlx_magic.magics.templating._UnknownName"]


@pytest.mark.parametrize(
    "cell, cause",
    [
        ("%%mlx -m /no/such/model\nHi", ModelLoadError),
        ("%%mlx\nWhat is {undefined_name_here}?", TemplateError),
        ("%%mlx_vision -m /no/such/model -i /no/such/picture.png\nHi", ImageSourceError),
    ],
)
def test_a_user_mistake_is_exactly_usage_error_from_its_cause(shell, cell, cause):
    with pytest.raises(UsageError) as caught:
        run(shell, cell)
    assert type(caught.value) is UsageError
    assert isinstance(caught.value.__cause__, cause), caught.value.__cause__
    assert "\n" not in str(caught.value)


def test_only_the_edge_raises_usage_error():
    # Below and inside the magics, mistakes are UserErrors; one module turns
    # them into IPython's UsageError (mlx_magic.magics.edge).
    import ast
    from pathlib import Path

    import mlx_magic

    root = Path(mlx_magic.__file__).parent
    users = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if any(
            isinstance(node, ast.Name) and node.id == "UsageError"
            for node in ast.walk(ast.parse(path.read_text()))
        )
    )
    assert users == ["magics/edge.py"]


def test_an_error_of_the_worker_comes_back_as_its_own_class():
    from mlx_magic.errors import Cancelled, RPCError, WorkerError
    from mlx_magic.runtime.process import rpc

    def round_trip(error):
        return rpc.exception_from_error(rpc.error_for_exception(1, error)["error"])

    for cls in (ModelLoadError, ImageSourceError, TemplateError, WorkerError, Cancelled):
        back = round_trip(cls("one line to fix"))
        assert type(back) is cls and str(back) == "one line to fix"
    # A name that is not one of mlx_magic's errors never builds that class.
    for foreign in (ValueError("no"), KeyError("k")):
        back = round_trip(foreign)
        assert type(back) is RPCError and back.remote_type == type(foreign).__name__
    assert type(rpc.decode_exception({"type": "one_line", "message": "x"})) is RPCError


def test_a_missing_optional_part_is_one_line_naming_its_extra(shell, monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "nbformat", None)  # import nbformat now fails
    with pytest.raises(UsageError) as caught:
        run(shell, f"%mlx replay {tmp_path / 'saved.ipynb'}:0")
    assert type(caught.value) is UsageError and "\n" not in str(caught.value)
    assert "pip install 'mlx_magic[notebook]'" in str(caught.value)
    assert isinstance(caught.value.__cause__, errors.MissingExtra)
