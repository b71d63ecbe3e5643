"""Image sources for %%mlx_vision: variables, outputs, data URIs, URLs and files."""

import base64
import io
import os
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlx_magic.images import (
    DecodedImageCache,
    ImageSourceError,
    LoadedImage,
    load_images,
    png_bytes,
    thumbnail,
)

from conftest import make_shell

# --- helpers -------------------------------------------------------------------


def encode(image, fmt="PNG", **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def save(path, image, **options):
    image.save(path, **options)
    return path


def two_colour(size=(40, 20)):
    """Left half red, right half blue: orientation shows in the pixels."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    return image


def load_one(source, namespace=None, **options):
    images = load_images([source], namespace or {}, **options)
    assert len(images) == 1
    return images[0]


def error_for(source, namespace=None, **options):
    with pytest.raises(ImageSourceError) as info:
        load_images([source], namespace or {}, **options)
    message = str(info.value)
    assert "\n" not in message
    return message


def close(pixel, expected, tolerance=40):
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected))


def png_claiming(width, height):
    """A tiny PNG whose header claims ``width``×``height`` pixels."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def in_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- files -----------------------------------------------------------------------


def test_png_file_loads_as_rgb_with_caption_and_size(in_dir):
    save(in_dir / "photo.png", Image.new("RGB", (64, 48), (10, 200, 30)))
    loaded = load_one("photo.png")
    assert isinstance(loaded, LoadedImage)
    assert loaded.image.mode == "RGB"
    assert loaded.image.size == loaded.original_size == (64, 48)
    assert loaded.image.getpixel((5, 5)) == (10, 200, 30)
    assert loaded.source == "photo.png"
    assert loaded.caption == "photo.png · 64×48"


def test_exif_orientation_6_is_applied(in_dir):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to view
    save(in_dir / "phone.jpg", two_colour((40, 20)), exif=exif.tobytes(), quality=95)
    loaded = load_one("phone.jpg")
    assert loaded.original_size == (40, 20)
    assert loaded.image.size == (20, 40)
    # 90° clockwise moves the left (red) half to the top.
    assert close(loaded.image.getpixel((10, 5)), (255, 0, 0))
    assert close(loaded.image.getpixel((10, 35)), (0, 0, 255))
    assert loaded.caption == "phone.jpg · 20×40"


def test_rgba_is_composited_on_white(in_dir):
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))  # transparent black
    image.putpixel((0, 0), (255, 0, 0, 255))
    image.putpixel((1, 0), (0, 0, 255, 128))
    save(in_dir / "alpha.png", image)
    loaded = load_one("alpha.png")
    assert loaded.image.mode == "RGB"
    assert loaded.image.getpixel((5, 5)) == (255, 255, 255)
    assert loaded.image.getpixel((0, 0)) == (255, 0, 0)
    assert close(loaded.image.getpixel((1, 0)), (127, 127, 255), tolerance=2)


def test_palette_with_transparency_and_grey_files(in_dir):
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((1, 1), 1)
    save(in_dir / "pal.png", palette, transparency=0)
    save(in_dir / "grey.png", Image.new("L", (4, 4), 77))
    pal, grey = load_images(["pal.png", "grey.png"], {})
    assert pal.image.getpixel((0, 0)) == (255, 255, 255)
    assert pal.image.getpixel((1, 1)) == (0, 255, 0)
    assert grey.image.mode == "RGB" and grey.image.getpixel((0, 0)) == (77, 77, 77)


def test_16_bit_grey_is_scaled_not_clipped(in_dir):
    deep = np.full((4, 4), 32768, dtype=np.uint16)
    save(in_dir / "deep.png", Image.fromarray(deep))
    assert load_one("deep.png").image.getpixel((0, 0)) == (128, 128, 128)


def test_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    save(tmp_path / "home.png", Image.new("RGB", (3, 2)))
    loaded = load_one("~/home.png")
    assert loaded.image.size == (3, 2) and loaded.source == "~/home.png"


def test_glob_expands_sorted_and_skips_directories(in_dir):
    for name, width in [("b.png", 2), ("a.png", 1), ("c.png", 3)]:
        save(in_dir / name, Image.new("RGB", (width, 1)))
    (in_dir / "d.png").mkdir()  # a directory that matches the glob
    loaded = load_images(["*.png"], {})
    assert [image.source for image in loaded] == ["a.png", "b.png", "c.png"]
    assert [image.image.width for image in loaded] == [1, 2, 3]


def test_literal_name_with_glob_characters_wins(in_dir):
    save(in_dir / "scan[1].png", Image.new("RGB", (5, 5)))
    assert load_one("scan[1].png").image.size == (5, 5)


def test_glob_matching_nothing(in_dir):
    assert "'*.webp' matches no files" in error_for("*.webp")


def test_missing_file_is_named(in_dir):
    assert error_for("nope.png") == "file not found: 'nope.png'"


def test_directory_is_an_error(in_dir):
    (in_dir / "shots").mkdir()
    message = error_for("shots")
    assert "'shots' is a directory" in message and "shots/*.png" in message


def test_text_file_is_not_an_image(in_dir):
    (in_dir / "notes.txt").write_text("just words\n" * 20)
    assert "'notes.txt' is not an image" in error_for("notes.txt")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_is_an_error(in_dir, fmt):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    data = encode(noise, fmt)
    (in_dir / "cut.img").write_bytes(data[: len(data) // 2])
    message = error_for("cut.img")
    assert "'cut.img'" in message and "truncated" in message


def test_decompression_bomb_is_refused(in_dir):
    (in_dir / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    assert os.path.getsize(in_dir / "bomb.png") < 100
    message = error_for("bomb.png")
    assert "'bomb.png'" in message and "decompression bomb" in message


def test_own_pixel_limit_checked_from_the_header(in_dir):
    # 64 megapixels: under Pillow's limit, over our 50-megapixel default.
    (in_dir / "big.png").write_bytes(png_claiming(8000, 8000))
    assert "more than the 50-megapixel limit" in error_for("big.png")
    save(in_dir / "small.png", Image.new("RGB", (20, 10)))
    assert "200×" not in error_for("small.png", max_pixels=100)
    assert "20×10" in error_for("small.png", max_pixels=100)


# --- variables -------------------------------------------------------------------


def test_pil_variable_is_copied_not_shared():
    image = Image.new("RGB", (8, 6), (1, 2, 3))
    loaded = load_one("img", {"img": image})
    assert loaded.image is not image
    assert loaded.caption == "img · 8×6"
    loaded.image.putpixel((0, 0), (9, 9, 9))
    assert image.getpixel((0, 0)) == (1, 2, 3)


def test_grey_uint8_array():
    array = np.full((3, 5), 200, dtype=np.uint8)
    loaded = load_one("arr", {"arr": array})
    assert loaded.image.size == loaded.original_size == (5, 3)
    assert loaded.image.getpixel((4, 2)) == (200, 200, 200)


def test_rgb_and_rgba_arrays():
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)  # fully transparent
    loaded_rgb, loaded_rgba = load_images(["rgb", "rgba"], {"rgb": rgb, "rgba": rgba})
    assert loaded_rgb.image.getpixel((2, 1)) == (0, 255, 0)
    assert loaded_rgba.image.getpixel((0, 0)) == (255, 255, 255)


def test_float_array_in_unit_range():
    array = np.zeros((2, 2, 3), dtype=np.float32)
    array[0, 0] = (1.0, 0.5, 0.0)
    loaded = load_one("x", {"x": array})
    assert loaded.image.getpixel((0, 0)) == (255, 128, 0)


@pytest.mark.parametrize(
    "array", [np.full((2, 2), 1.5), np.full((2, 2), -0.1), np.full((2, 2), np.nan)]
)
def test_float_array_outside_unit_range(array):
    assert "must be in [0, 1]" in error_for("x", {"x": array})


@pytest.mark.parametrize(
    "array, shown",
    [
        (np.zeros((2, 2, 2), np.uint8), "shape (2, 2, 2) dtype uint8"),
        (np.zeros((4,), np.uint8), "shape (4,) dtype uint8"),
        (np.zeros((2, 2, 3, 1), np.uint8), "shape (2, 2, 3, 1) dtype uint8"),
        (np.zeros((0, 4), np.uint8), "shape (0, 4) dtype uint8"),
        (np.zeros((2, 2), np.int64), "shape (2, 2) dtype int64"),
        (np.zeros((2, 2), bool), "shape (2, 2) dtype bool"),
    ],
)
def test_bad_array_shape_or_dtype_is_named(array, shown):
    message = error_for("x", {"x": array})
    assert message.startswith("'x'") and shown in message


def test_bytes_and_bytearray_variables():
    data = encode(Image.new("RGB", (7, 3), (0, 9, 0)))
    one, two = load_images(["raw", "buf"], {"raw": data, "buf": bytearray(data)})
    assert one.image.size == two.image.size == (7, 3)
    assert one.cache_key == two.cache_key


def test_bytes_that_are_not_an_image():
    assert "'raw' is not an image" in error_for("raw", {"raw": b"hello"})


def test_path_variable_is_a_file_without_globbing(in_dir):
    save(in_dir / "p.png", Image.new("RGB", (2, 9)))
    assert load_one("where", {"where": in_dir / "p.png"}).image.size == (2, 9)
    assert "file not found" in error_for("where", {"where": Path("*.png")})


def test_str_variable_is_not_dereferenced(in_dir):
    save(in_dir / "p.png", Image.new("RGB", (2, 2)))
    message = error_for("fname", {"fname": "p.png"})
    assert "'fname' is a str" in message and "{fname}" in message
    # ...while a file named like the variable is still a file.
    save(in_dir / "fname", Image.new("RGB", (3, 3)), format="PNG")
    assert load_one("fname", {"fname": "p.png"}).image.size == (3, 3)


def test_sources_must_be_a_list():
    with pytest.raises(TypeError):
        load_images("photo.png", {})
    assert load_images([], {}) == []


def test_unknown_name_and_unsupported_value():
    assert error_for("xyz") == "no variable, file or URL named 'xyz'"
    assert "'n' is of type int, not an image" in error_for("n", {"n": 3})


def test_ipython_image_data_and_filename(in_dir):
    from IPython.display import Image as IPythonImage

    save(in_dir / "i.png", Image.new("RGB", (6, 4)))
    embedded = IPythonImage(data=encode(Image.new("RGB", (5, 5))))
    by_name = IPythonImage(filename=str(in_dir / "i.png"), embed=False)
    assert by_name.data is None  # so the filename is what gets used
    a, b = load_images(["a", "b"], {"a": embedded, "b": by_name})
    assert a.image.size == (5, 5) and b.image.size == (6, 4)


def test_matplotlib_figure_rendered_at_its_dpi():
    figure_module = pytest.importorskip("matplotlib.figure")
    figure = figure_module.Figure(figsize=(2, 1), dpi=50)
    figure.add_subplot().plot([0, 1], [1, 0])
    loaded = load_one("fig", {"fig": figure})
    assert loaded.image.size == (100, 50)
    assert loaded.image.mode == "RGB"


def test_figure_detection_does_not_import_matplotlib():
    class FakeFigure:
        dpi = 72

        def savefig(self, file, format, dpi):
            assert (format, dpi) == ("png", "figure")
            Image.new("RGB", (3, 3)).save(file, format="PNG")

    assert load_one("f", {"f": FakeFigure()}).image.size == (3, 3)


# --- earlier outputs -------------------------------------------------------------


def test_output_references():
    first, second = Image.new("RGB", (1, 1)), Image.new("RGB", (2, 2))
    namespace = {
        "Out": {3: first, 4: second},
        "_3": first,
        "_4": second,
        "_": second,
        "__": first,
        "___": "",
    }
    assert load_one("Out[3]", namespace).image.size == (1, 1)
    assert load_one("_3", namespace).image.size == (1, 1)
    assert load_one("_", namespace).image.size == (2, 2)
    assert load_one("__", namespace).image.size == (1, 1)
    assert load_one("Out[4]", namespace).caption == "Out[4] · 2×2"
    assert error_for("Out[9]", namespace).startswith("no output 9")
    assert error_for("_9", namespace).startswith("no output 9")
    assert error_for("___", namespace).startswith("no output for '___' yet")
    assert "is of type list, not an image" in error_for("_5", {"Out": {5: [1]}})


def test_output_references_in_a_real_shell():
    shell = make_shell()
    try:
        shell.user_ns["Image"] = Image
        for cell in ["1 + 1", "Image.new('RGB', (4, 3))"]:
            shell.run_cell(cell, store_history=True).raise_error()
        namespace = shell.user_ns
        for source in ["_", "_2", "Out[2]"]:
            assert load_one(source, namespace).image.size == (4, 3)
        assert "'Out[1]' is of type int" in error_for("Out[1]", namespace)
        assert error_for("Out[7]", namespace).startswith("no output 7")
    finally:
        shell.clear_instance()


# --- data URIs -------------------------------------------------------------------


def test_data_uri():
    data = encode(Image.new("RGB", (9, 4), (1, 1, 1)))
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    loaded = load_one(uri)
    assert loaded.image.size == (9, 4)
    assert loaded.source == uri
    assert loaded.caption == "data:image/png;base64,… · 9×4"


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("data:text/plain;base64,aGVsbG8=", "text/plain, not an image/* type"),
        ("data:,hello", "text/plain, not an image/* type"),
        ("data:image/png;base64,@@@not-base64@@@", "invalid base64"),
        ("data:image/png;base64", "no ','"),
        ("data:image/png;base64,aGVsbG8=", "is not an image"),
    ],
)
def test_bad_data_uris(uri, expected):
    assert expected in error_for(uri)


# --- URLs ------------------------------------------------------------------------

OK_PNG = encode(Image.new("RGB", (12, 8), (0, 128, 0)))


class Handler(BaseHTTPRequestHandler):
    release = threading.Event()

    def do_GET(self):
        if self.path == "/ok.png":
            self._send(200, OK_PNG, "image/png")
        elif self.path == "/big.png":
            self._send(200, b"\0" * 5000, "image/png")
        elif self.path == "/big-unsized":  # no Content-Length: the cap applies while reading
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"\0" * 5000)
        elif self.path == "/slow.png":
            self.release.wait(5)
            self._send(200, OK_PNG, "image/png")
        elif self.path == "/trickle.png":  # a byte every 50 ms: never idle long enough to time out
            self._slowly(200, lambda: self.release.wait(0.05))
        elif self.path == "/huge-declared":  # claims 10 GB, then stalls
            self._slowly(10_000_000_000, lambda: self.release.wait(5) or True)
        elif self.path == "/page":
            self._send(200, b"<html>hi</html>", "text/html")
        elif self.path == "/to-ok":
            self._redirect("/ok.png")
        elif self.path == "/to-ftp":
            self._redirect("ftp://127.0.0.1/ok.png")
        else:
            self._send(404, b"missing", "text/plain")

    def _send(self, status, body, content_type):
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (the timeout test)
            pass

    def _slowly(self, length, stop):
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            for _ in range(length):
                self.wfile.write(b"\0")
                self.wfile.flush()
                if stop():
                    break
        except OSError:
            pass

    def _redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_root():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    Handler.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def url(http_root, monkeypatch):
    # A proxy in the environment must not intercept the local server.
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    return lambda path: http_root + path


def test_url_ok_and_redirect(url):
    loaded = load_one(url("/ok.png"))
    assert loaded.image.size == (12, 8)
    assert loaded.image.getpixel((0, 0)) == (0, 128, 0)
    assert loaded.caption.endswith("/ok.png · 12×8")
    assert load_one(url("/to-ok")).cache_key == loaded.cache_key


def test_ipython_image_with_url(url):
    from IPython.display import Image as IPythonImage

    assert load_one("shown", {"shown": IPythonImage(url=url("/ok.png"))}).image.size == (12, 8)
    local = IPythonImage(url="file:///etc/hostname")
    assert "only http:// and https://" in error_for("local", {"local": local})


def test_url_404_names_url_and_status(url):
    assert error_for(url("/nothing.png")) == f"{url('/nothing.png')}: HTTP 404 Not Found"


@pytest.mark.parametrize("path", ["/big.png", "/big-unsized"])
def test_url_too_large(url, path):
    message = error_for(url(path), max_bytes=1000)
    assert message.startswith(url(path)) and "1,000-byte limit" in message


def test_declared_length_is_refused_before_reading(url):
    started = time.monotonic()
    message = error_for(url("/huge-declared"), url_timeout_s=3)
    assert message.endswith("10,000,000,000 bytes is more than the 20,000,000-byte limit")
    assert time.monotonic() - started < 2


def test_trickling_server_hits_the_overall_deadline(url):
    started = time.monotonic()
    message = error_for(url("/trickle.png"), url_timeout_s=0.4)
    assert message == f"{url('/trickle.png')}: timed out after 0.4 s"
    assert time.monotonic() - started < 2


def test_url_timeout(url):
    started = time.monotonic()
    message = error_for(url("/slow.png"), url_timeout_s=0.3)
    assert time.monotonic() - started < 3
    assert message == f"{url('/slow.png')}: timed out after 0.3 s"


def test_url_that_is_not_an_image_says_what_it_got(url):
    assert "is not an image Pillow can read (got text/html)" in error_for(url("/page"))


def test_redirect_to_other_scheme_is_refused(url):
    message = error_for(url("/to-ftp"))
    assert message.startswith(url("/to-ftp")) and "only http:// and https://" in message


@pytest.mark.parametrize(
    "source", ["file:///etc/passwd", "ftp://example.com/a.png", "javascript:alert(1)"]
)
def test_non_http_schemes_are_not_fetched(source):
    assert "only http:// and https:// URLs are fetched" in error_for(source)


def test_unreachable_url_is_one_line(url):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: refused
        message = error_for(f"http://127.0.0.1:{port}/x.png", url_timeout_s=2)
    assert message.startswith(f"http://127.0.0.1:{port}/x.png: ")


# --- keys, thumbnails, PNG ---------------------------------------------------------


def test_cache_key_follows_content_whatever_the_source(in_dir):
    image = two_colour((6, 4))
    save(in_dir / "same.png", image)
    array = np.asarray(image)
    keys = [
        loaded.cache_key
        for loaded in load_images(
            ["img", "arr", "raw", "same.png", "same.png"],
            {"img": image, "arr": array, "raw": encode(image)},
        )
    ]
    assert len(set(keys)) == 1
    changed = image.copy()
    changed.putpixel((0, 0), (0, 0, 0))
    assert load_one("c", {"c": changed}).cache_key != keys[0]
    # Same bytes, different shape: the size is part of the key.
    reshaped = array.reshape(4 * 6 // 3, 3, 3)  # 8 rows × 3 columns
    assert load_one("r", {"r": reshaped}).cache_key != keys[0]


@pytest.mark.parametrize(
    "size, expected", [((1000, 500), (256, 128)), ((300, 900), (85, 256)), ((100, 50), (100, 50))]
)
def test_thumbnail_bounds(size, expected):
    image = Image.new("RGB", size)
    small = thumbnail(image)
    assert small.size == expected
    assert max(small.size) <= 256
    assert image.size == size  # the original is untouched
    assert thumbnail(image, max_side=64).size[0] <= 64
    with pytest.raises(ValueError):
        thumbnail(image, max_side=0)


def test_png_bytes_round_trip():
    image = two_colour((10, 6))
    data = png_bytes(image)
    assert data.startswith(b"\x89PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(image))
    assert png_bytes(Image.new("CMYK", (2, 2))).startswith(b"\x89PNG")


# --- decoded-image cache -----------------------------------------------------------


def test_cache_hits_for_the_same_file_until_it_changes(in_dir):
    cache = DecodedImageCache()
    path = save(in_dir / "c.png", Image.new("RGB", (5, 5), (1, 1, 1)))
    first = load_one("c.png", cache=cache)
    second = load_one("c.png", cache=cache)
    assert cache.stats()["hits"] == 1 and cache.stats()["misses"] == 1
    assert second.cache_key == first.cache_key and second.original_size == (5, 5)
    assert second.image is not first.image  # callers get copies
    second.image.putpixel((0, 0), (9, 9, 9))
    assert load_one("c.png", cache=cache).image.getpixel((0, 0)) == (1, 1, 1)

    save(path, Image.new("RGB", (5, 5), (2, 2, 2)))
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = load_one("c.png", cache=cache)
    assert changed.image.getpixel((0, 0)) == (2, 2, 2)
    assert cache.stats()["misses"] == 2


def test_cache_serves_equal_encoded_bytes_and_rechecks_pixel_limit():
    cache = DecodedImageCache()
    data = encode(Image.new("RGB", (20, 10)))
    load_images(["a", "b"], {"a": data, "b": bytes(data)}, cache=cache)
    assert cache.stats()["hits"] == 1
    with pytest.raises(ImageSourceError, match="megapixel limit"):
        load_images(["a"], {"a": data}, cache=cache, max_pixels=100)


def test_cache_bounds_entries_and_bytes(in_dir):
    for index in range(3):
        save(in_dir / f"{index}.png", Image.new("RGB", (10, 10), (index, 0, 0)))  # 300 B each
    by_count = DecodedImageCache(max_entries=2)
    load_images(["0.png", "1.png", "2.png"], {}, cache=by_count)
    assert by_count.stats()["entries"] == 2 and by_count.stats()["evictions"] == 1
    load_images(["0.png"], {}, cache=by_count)  # evicted first, so a miss
    assert by_count.stats()["hits"] == 0

    by_bytes = DecodedImageCache(max_bytes=700)
    load_images(["0.png", "1.png", "2.png"], {}, cache=by_bytes)
    stats = by_bytes.stats()
    assert stats["entries"] == 2 and stats["bytes"] == 600 <= stats["max_bytes"]
    load_images(["2.png", "1.png"], {}, cache=by_bytes)
    assert by_bytes.stats()["hits"] == 2

    # An image bigger than the whole budget is not cached and evicts nothing.
    save(in_dir / "large.png", Image.new("RGB", (20, 20)))  # 1,200 B
    load_images(["large.png"], {}, cache=by_bytes)
    load_images(["2.png", "1.png"], {}, cache=by_bytes)
    assert by_bytes.stats()["entries"] == 2 and by_bytes.stats()["hits"] == 4


def test_previews_send_each_thumbnail_in_its_smaller_encoding():
    from mlx_magic.display.previews import preview_bundle
    from mlx_magic.images import load_images

    rng = np.random.default_rng(0)
    smooth = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(
        (300, 200), Image.Resampling.BICUBIC
    )
    photo = np.clip(np.asarray(smooth, np.int16) + rng.integers(-8, 9, (200, 300, 3)), 0, 255)
    namespace = {"photo": photo.astype(np.uint8), "drawing": Image.new("RGB", (300, 200), "red")}
    bundle = preview_bundle(load_images(["photo", "drawing"], namespace))
    html_form = bundle["text/html"]
    assert html_form.count("<img") == 2
    photo_uri, drawing_uri = [part.split('"')[0] for part in html_form.split('src="')[1:]]
    assert photo_uri.startswith("data:image/jpeg;base64,")
    assert drawing_uri.startswith("data:image/png;base64,")
    # The photo's thumbnail is much smaller than the PNG it would have been.
    sheet = base64.b64decode(bundle["image/png"])
    assert len(photo_uri) < len(sheet) / 2
    assert Image.open(io.BytesIO(sheet)).size == (256 + 8 + 256, 171)
    assert bundle["text/plain"] == "[image 1: photo · 300×200]\n[image 2: drawing · 300×200]"
