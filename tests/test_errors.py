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
