"""Flags are split as a shell splits them: quotes group words and are removed
(IPython's own splitter keeps them), in every magic."""

import pytest
from IPython.core.error import UsageError
from PIL import Image

from mlx_magic.magics.arguments import parse_flags
from mlx_magic.magics.edge import as_usage_errors
from mlx_magic.magics.mlx_magics import MLXMagics

from conftest import magics_of, run


def test_quotes_group_and_are_removed():
    args = parse_flags(MLXMagics.mlx_cell, '-s "Answer in French." -c "a b" -o out', "%%mlx")
    assert args.system == "Answer in French."
    assert args.chat == "a b"
    args = parse_flags(MLXMagics.mlx_vision_cell, "-i 'shots/*.png' -i plain", "%%mlx_vision")
    assert args.image == ["shots/*.png", "plain"]


@pytest.mark.parametrize(
    "line, words",
    [
        ('-s "unclosed', "close the quote"),
        ("--help", "%%mlx? shows the manual"),
        ("-h", "%%mlx? shows the manual"),
    ],
)
def test_bad_lines_are_one_usage_error(line, words):
    with pytest.raises(UsageError) as caught, as_usage_errors():
        parse_flags(MLXMagics.mlx_cell, line, "%%mlx")
    assert type(caught.value) is UsageError and words in str(caught.value)


@pytest.mark.parametrize(
    "cell",
    ['%%mlx -s "unclosed\nHi', "%%mlx --help\nHi", "%%mlx -o class\nHi", "%%mlx -b -o class\nHi"],
)
def test_bad_lines_in_a_cell_change_nothing(shell, cell):
    shell.user_ns["_mlx"] = "before"
    with pytest.raises(UsageError):
        run(shell, cell)
    assert shell.user_ns["_mlx"] == "before"
    assert not magics_of(shell).session.runtime_started


@pytest.mark.vision
def test_a_quoted_glob_with_spaces_sends_every_match(vlm_shell, tmp_path):
    folder = tmp_path / "my shots"
    folder.mkdir()
    for index, colour in enumerate(["red", "blue"]):
        Image.new("RGB", (32, 24), colour).save(folder / f"shot {index}.png")
    run(vlm_shell, f'%%mlx_vision -n 1 -c quoted -i "{folder}/*.png"\nWhat is it?')
    turn = magics_of(vlm_shell).session.conversations.get("quoted").turns[0]
    names = [name.split(" · ")[0] for name in turn.image_names]
    assert len(names) == 2  # captions shorten long paths from the left
    assert names[0].endswith("my shots/shot 0.png") and names[1].endswith("my shots/shot 1.png")
