"""%mlx embed over images: an image that cannot be read or embedded is a failed
row with its one-line reason (as --map's failed rows); the others are embedded,
and %mlx nearest / %mlx plot read the rows that have vectors."""

import numpy as np
import pytest

from conftest import make_shell, run

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def image_embedder(tmp_path_factory):
    from mlx_magic.testing.tiny_models.embedders import build_tiny_image_embedder

    return build_tiny_image_embedder(tmp_path_factory.mktemp("models") / "tiny-vl-embedder")


def test_images_that_fail_are_rows_that_say_why_and_the_rest_embed(image_embedder, tmp_path):
    from PIL import Image

    Image.new("RGB", (80, 64), "red").save(tmp_path / "red.png")
    Image.new("RGB", (64, 80), "blue").save(tmp_path / "blue.png")
    (tmp_path / "broken.png").write_text("not a picture")
    # Readable, but mlx-vlm's processor refuses it (aspect ratio beyond 200).
    Image.new("RGB", (1, 400), "green").save(tmp_path / "thin.png")
    names = ["red.png", "broken.png", "blue.png", "missing.png", "thin.png"]
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        shell.user_ns["files"] = [str(tmp_path / name) for name in names]
        run(shell, f"%config MLXMagics.default_embedding_model = {str(image_embedder)!r}")
        run(shell, "%mlx embed files -i {item} -o photos")
        photos = shell.user_ns["photos"]
        assert photos.vectors.shape == (5, 64)
        embedded = ~np.isnan(photos.vectors).any(axis=1)
        assert list(embedded) == [True, False, True, False, False]
        assert photos.errors[0] is None and photos.errors[2] is None
        for position in (1, 3, 4):
            reason = photos.errors[position]
            assert isinstance(reason, str) and "\n" not in reason, reason
        assert "broken.png" in photos.errors[1] and "missing.png" in photos.errors[3]
        assert "aspect ratio" in photos.errors[4]
        table = photos.table
        assert list(table["error"].isna()) == [True, False, True, False, False]
        assert "3 failed" in photos.summary and "<td></td>" in photos._repr_html_()
        # The rows that failed keep their place; nearest and plot leave them out.
        hits = run(shell, f"%mlx nearest -i {str(tmp_path / 'blue.png')!r} photos -k 2")
        assert hits.positions == [2, 0]
        assert hits.scores[0] == pytest.approx(1.0, abs=1e-4)
        run(shell, "%mlx plot photos")
        assert photos.points.shape == (5, 2)
        assert list(~np.isnan(photos.points).any(axis=1)) == list(embedded)
        # The same vectors as when only the good images are embedded.
        shell.user_ns["good"] = [str(tmp_path / "red.png"), str(tmp_path / "blue.png")]
        run(shell, "%mlx embed good -i {item} -o clean")
        assert np.allclose(shell.user_ns["clean"].vectors, photos.vectors[embedded], atol=1e-5)
        assert shell.user_ns["clean"].errors == []
    finally:
        shell.extension_manager.unload_extension("mlx_magic")


def test_when_no_image_can_be_embedded_it_is_one_line(image_embedder, tmp_path):
    from IPython.core.error import UsageError

    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        shell.user_ns["files"] = [str(tmp_path / "missing.png")]
        run(shell, f"%config MLXMagics.default_embedding_model = {str(image_embedder)!r}")
        shell.user_ns["_mlx"] = "before"
        with pytest.raises(UsageError) as caught:
            run(shell, "%mlx embed files -i {item}")
        assert "could be embedded" in str(caught.value) and "missing.png" in str(caught.value)
        assert shell.user_ns["_mlx"] == "before"
    finally:
        shell.extension_manager.unload_extension("mlx_magic")
