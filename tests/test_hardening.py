"""What a hostile new user tried, one cause at a time: each mistake is one
UsageError line naming the fix, nothing else reaches the cell, and nothing
else changes."""

import io
import logging
import shutil
import warnings

import pytest
from IPython.core.error import UsageError
from PIL import Image

from conftest import magics_of, run


def corrupt_exif_jpeg() -> bytes:
    buffer = io.BytesIO()
    broken_exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03\x00"
    Image.new("RGB", (8, 8), "red").save(buffer, "JPEG", exif=broken_exif)
    return buffer.getvalue()


def test_a_corrupt_exif_block_is_no_warning(tmp_path):
    from mlx_magic.images import load_images

    path = tmp_path / "broken-exif.jpg"
    path.write_bytes(corrupt_exif_jpeg())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [loaded] = load_images([str(path)], {})
    assert loaded.image.size == (8, 8)
    assert not [w for w in caught if "EXIF" in str(w.message)]


def test_an_empty_image_is_one_line(shell):
    run(shell, "from PIL import Image; empty = Image.new('RGB', (0, 0))")
    with pytest.raises(UsageError, match=r"is empty \(0×0 pixels\)"):
        run(shell, "%%mlx_vision -m x -i empty\nWhat is it?")


@pytest.mark.vision
def test_a_vision_folder_without_weights_is_one_line_and_nothing_else(
    shell, tiny_vlm, tmp_path, capsys, caplog
):
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_vlm, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    run(shell, "from PIL import Image; red = Image.new('RGB', (32, 24), 'red')")
    capsys.readouterr()
    with caplog.at_level(logging.WARNING), pytest.raises(UsageError) as caught:
        run(shell, f"%%mlx_vision -m {folder} -i red\nWhat is it?")
    assert type(caught.value) is UsageError
    assert "has no weights" in str(caught.value) and "\n" not in str(caught.value)
    assert "ERROR" not in capsys.readouterr().err
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert magics_of(shell).session.runtime.models() == []
