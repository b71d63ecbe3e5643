"""Grounding: boxes and points found in answers of each model family, mapped
to the pixels of the image as sent, tracked while streaming, drawn and cropped."""

import ast
import json
import math
import random
import re
import time
from pathlib import Path

import pytest
from PIL import Image

import mlx_magic.grounding as grounding_package
from mlx_magic.grounding import (
    PALETTE,
    REGION_ATTRIBUTE,
    Box,
    Grounding,
    GroundingTracker,
    ImageGeometry,
    Point,
    crop_region,
    draw_grounding,
    find_grounding,
    grounding_family,
    region_context,
)
from mlx_magic.grounding.coordinates import estimated_processed_size

# 640×480 as sent; Qwen2.5-VL's processor resizes it to 644×476 (multiples of 28).
PHOTO = ImageGeometry((640, 480), (644, 476))
PHOTO_UNPROCESSED = ImageGeometry((640, 480))

WHITE = (255, 255, 255)


def boxes(text, family=None, geometry=PHOTO):
    return [
        (b.label, b.x1, b.y1, b.x2, b.y2, b.format)
        for b in find_grounding(text, family, [geometry]).boxes
    ]


def points(text, family=None, geometry=PHOTO):
    return [(p.label, p.x, p.y, p.format) for p in find_grounding(text, family, [geometry]).points]


def approx(rows):
    return [
        # Coordinates are kept to hundredths of a pixel.
        tuple(pytest.approx(v, abs=0.005) if isinstance(v, float) else v for v in row)
        for row in rows
    ]


# --- Qwen2.5-VL: JSON in pixels of the processed image ---------------------------


def test_qwen2_5_json_is_mapped_from_processed_pixels():
    # x: 640/644 of the number, y: 480/476 of it.
    answer = (
        "Here they are:\n```json\n[\n"
        '  {"bbox_2d": [161, 119, 483, 357], "label": "cat"},\n'
        '  {"bbox_2d": [0, 0, 644, 476], "label": "room", "confidence": 0.9}\n'
        "]\n```"
    )
    assert boxes(answer, "qwen2_5_vl") == approx(
        [
            ("cat", 160.0, 120.0, 480.0, 360.0, "qwen2_5_vl"),
            ("room", 0.0, 0.0, 640.0, 480.0, "qwen2_5_vl"),
        ]
    )


def test_qwen2_5_single_unfenced_object_and_points():
    answer = 'The cup is at {"label": "cup", "point_2d": [483, 119]} and {"bbox_2d": [161, 119, 483, 357]}.'
    assert points(answer, "qwen2_5_vl") == approx([("cup", 480.0, 120.0, "qwen2_5_vl")])
    assert boxes(answer, "qwen2_5_vl") == approx([("", 160.0, 120.0, 480.0, 360.0, "qwen2_5_vl")])


def test_qwen2_5_without_a_processed_size_uses_the_default_processor_resize():
    assert estimated_processed_size((640, 480)) == (644, 476)
    # Above 12.8 megapixels the processor shrinks the image.
    assert estimated_processed_size((8000, 6000)) == (4116, 3080)
    answer = '[{"bbox_2d": [161, 119, 483, 357], "label": "cat"}]'
    assert boxes(answer, "qwen2_5_vl", PHOTO_UNPROCESSED) == boxes(answer, "qwen2_5_vl")


def test_qwen2_5_box_tags_are_processed_pixels_too():
    answer = "<|object_ref_start|>cat<|object_ref_end|><|box_start|>(161,119),(483,357)<|box_end|>"
    assert boxes(answer, "qwen2_5_vl") == approx(
        [("cat", 160.0, 120.0, 480.0, 360.0, "qwen2_5_vl")]
    )


# --- Qwen3-VL: the same JSON, 0–1000 -------------------------------------------------


def test_qwen3_json_is_relative_to_1000():
    answer = '```json\n[{"bbox_2d": [250, 500, 750, 1000], "label": "dog"}, {"point_2d": [500, 250], "label": "nose"}]\n```'
    assert boxes(answer, "qwen3_vl") == approx([("dog", 160.0, 240.0, 480.0, 480.0, "qwen3_vl")])
    assert points(answer, "qwen3_vl") == approx([("nose", 320.0, 120.0, "qwen3_vl")])


def test_objects_nested_before_the_key_and_braces_in_strings():
    answer = (
        '{"objects": [{"meta": {"note": "a } brace"}, "bbox_2d": [250, 500, 750, 1000], '
        '"label": "dog {big}"}, {"a": {"b": {}}, "point_2d": [500, 250], "label": "nose"}]}'
    )
    assert boxes(answer, "qwen3_vl") == approx(
        [("dog {big}", 160.0, 240.0, 480.0, 480.0, "qwen3_vl")]
    )
    assert points(answer, "qwen3_vl") == approx([("nose", 320.0, 120.0, "qwen3_vl")])


def test_python_style_dicts_are_read_loosely():
    answer = "[{'bbox_2d': [250, 500, 750, 1000], 'label': 'dog',}]"
    assert boxes(answer, "qwen3_vl") == approx([("dog", 160.0, 240.0, 480.0, 480.0, "qwen3_vl")])


# --- Qwen2-VL: box tags, 0–1000 ------------------------------------------------------


def test_qwen2_tags_with_labels_and_several_boxes_per_reference():
    answer = (
        "I see <|object_ref_start|>two cats<|object_ref_end|>"
        "<|box_start|>(100,200),(500,1000)<|box_end|>, <|box_start|>(500,0),(1000,500)<|box_end|>"
        " and a box on its own: <|box_start|>(0,0),(250,250)<|box_end|>"
    )
    assert boxes(answer, "qwen2_vl") == approx(
        [
            ("two cats", 64.0, 96.0, 320.0, 480.0, "qwen2_vl"),
            ("two cats", 320.0, 0.0, 640.0, 240.0, "qwen2_vl"),
            ("", 0.0, 0.0, 160.0, 120.0, "qwen2_vl"),
        ]
    )
    # Unknown family: tags read as Qwen2-VL's 0–1000.
    assert boxes(answer) == boxes(answer, "qwen2_vl")


# --- PaliGemma: <loc> tokens, y first, value / 1024 ------------------------------------


def test_paligemma_locations_are_y_first_over_1024():
    answer = (
        "<loc0256><loc0128><loc0768><loc0512> cat ; "
        "<loc0000><loc0512><loc0512><loc1023><seg012><seg099><seg003> dog on a mat"
    )
    assert boxes(answer, "paligemma") == approx(
        [
            ("cat", 80.0, 120.0, 320.0, 360.0, "paligemma"),
            ("dog on a mat", 320.0, 0.0, 639.375, 240.0, "paligemma"),
        ]
    )
    assert boxes(answer) == boxes(answer, "paligemma")


# --- Molmo: point tags in percent ------------------------------------------------------


def test_molmo_points_are_percent():
    answer = (
        '<point x="50.0" y="25" alt="a cat">a cat</point> and '
        '<points x1="10" y1="20" x2="30.5" y2="40" alt="dogs &amp; pups">dogs</points>'
    )
    assert points(answer, "molmo") == approx(
        [
            ("a cat", 320.0, 120.0, "molmo"),
            ("dogs & pups", 64.0, 96.0, "molmo"),
            ("dogs & pups", 195.2, 192.0, "molmo"),
        ]
    )
    assert points(answer) == points(answer, "molmo")


# --- unknown family: bare bbox_2d JSON -------------------------------------------------


def test_unknown_family_reads_numbers_over_1000_as_pixels():
    big = ImageGeometry((2000, 1500), (2016, 1512))
    answer = '[{"bbox_2d": [1008, 756, 2016, 1512], "label": "car"}]'
    assert boxes(answer, None, big) == approx(
        [("car", 1000.0, 750.0, 2000.0, 1500.0, "qwen2_5_vl")]
    )
    # Without a processed size: pixels of the image as sent.
    answer = '[{"bbox_2d": [1000, 750, 1500, 1500], "label": "car"}]'
    assert boxes(answer, None, ImageGeometry((2000, 1500))) == approx(
        [("car", 1000.0, 750.0, 1500.0, 1500.0, "qwen2_5_vl")]
    )


def test_unknown_family_reads_numbers_up_to_1000_as_relative():
    answer = '[{"bbox_2d": [250, 500, 750, 1000], "label": "dog"}]'
    assert boxes(answer, None) == boxes(answer, "qwen3_vl")


# --- nonsense numbers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bbox",
    [
        "[NaN, 1, 2, 3]",
        "[1, Infinity, 2, 3]",
        "[-200, 10, 300, 400]",  # far below 0
        "[10, 10, 5000, 400]",  # far beyond 1000
        "[10, 10, 10, 400]",  # no width
        "[1, 2, 3]",
        '["a", "b", "c", "d"]',
        "[true, 1, 2, 3]",
        "[[1, 2], [3, 4]]",
    ],
)
def test_nonsense_boxes_are_dropped(bbox):
    assert find_grounding('{"bbox_2d": %s, "label": "x"}' % bbox, "qwen3_vl", [PHOTO]).boxes == ()


def test_reversed_corners_are_swapped_and_overshoot_is_clamped():
    answer = '{"bbox_2d": [750, 1020, 250, 500], "label": "x"}'
    assert boxes(answer, "qwen3_vl") == approx([("x", 160.0, 240.0, 480.0, 480.0, "qwen3_vl")])
    answer = '{"bbox_2d": [-20, -10, 500, 500]}'
    assert boxes(answer, "qwen3_vl") == approx([("", 0.0, 0.0, 320.0, 240.0, "qwen3_vl")])


def test_no_image_means_no_items():
    assert not find_grounding('{"bbox_2d": [1, 2, 3, 4]}', "qwen3_vl", [])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "There is a cat in the middle of the picture.",
        "<|box_start|>(100,200),(300,",
        "<|box_start|>(1,2),(3,4)",
        "<|box_start|>not numbers<|box_end|>",
        "<|box_start|>(1,2),(3,4),(5,6)<|box_end|>",
        '[{"bbox_2d": [100, 200, 300, 400], "label": "c',
        '{"bbox_2d": [100, 200, 300',
        '{"bbox_2d": ',
        '"bbox_2d": [100, 200, 300, 400]',  # no object around it
        "{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
        "}" * 50 + '"bbox_2d"' + "{" * 50,
        "<loc0100><loc0200><loc0300>",
        "<loc0100><loc0200><loc0300><loc99>",
        "<loc0100><loc0200><loc0300><loc1024> cat",
        '<point x="12" y="34" alt="cat"',
        '<point x="abc" y="34" alt="cat">',
        '<point y="34" alt="cat">',
        '<points x1="10" y1="20" x2="30" alt=\'dogs\'',
        '<point\x00x="1"\x00y="2">',
        "(100, 200), (300, 400) is where the cat is",
        "[100, 200, 300, 400]",
        "\ud800<|box_start|>\U0001f600<|box_end|>",
    ],
)
def test_garbage_and_truncated_answers_find_nothing(text):
    for family in (None, "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "paligemma", "molmo"):
        assert not find_grounding(text, family, [PHOTO])


def test_random_garbage_never_raises_and_stays_inside_the_image():
    pieces = [
        "<|box_start|>", "<|box_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
        "(", ")", ",", "{", "}", "[", "]", '"', "'", ":", '"bbox_2d"', '"point_2d"',
        '"label"', "<loc", "0512>", "<loc1023>", "<seg001>", " ; ", "<point", "<points",
        ' x="', ' y="', ' x1="', '" ', ">", "</point>", "\\", "NaN", "-5", "1e9", "999",
        "12.5", "0", "cat", "\n", "```json",
    ]  # fmt: skip
    rng = random.Random(1234)
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 60)))
        for family in (None, "qwen2_5_vl", "paligemma"):
            found = find_grounding(text, family, [PHOTO])
            for box in found.boxes:
                assert 0 <= box.x1 < box.x2 <= 640 and 0 <= box.y1 < box.y2 <= 480
            for point in found.points:
                assert 0 <= point.x <= 640 and 0 <= point.y <= 480


# --- streaming ---------------------------------------------------------------------------

STREAMED = {
    "qwen2_vl": (
        (
            "Sure. <|object_ref_start|>cat<|object_ref_end|><|box_start|>(10,20),(300,400)<|box_end|>"
            "<|box_start|>(500,500),(900,900)<|box_end|> and then "
            "<|object_ref_start|>dog<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>."
        ),
        "<|box_end|>",
    ),
    "qwen2_5_vl": (
        (
            'Here:\n```json\n[\n  {"bbox_2d": [10, 20, 300, 400], "label": "a {curly} cat"},\n'
            '  {"label": "dog", "bbox_2d": [5, 6, 70, 80]},\n  {"bbox_2d": [1, 2, 30, 40]}\n]\n```'
        ),
        "}",
    ),
    "paligemma": (
        (
            "<loc0010><loc0020><loc0300><loc0400> cat ; <loc0100><loc0100><loc0200><loc0200>"
            "<seg001><seg002> dog ; <loc0500><loc0500><loc0900><loc0900> bird"
        ),
        None,
    ),
}


def closing_ends(text, closer):
    ends, pos = [], 0
    while (found := text.find(closer, pos)) >= 0:
        pos = found + len(closer)
        ends.append(pos)
    return ends


def feed_one_character_at_a_time(text, family):
    tracker = GroundingTracker(family, [PHOTO])
    counts, changes = [], []
    for end in range(1, len(text) + 1):
        changes.append(tracker.feed(text[:end]))
        counts.append(len(tracker.grounding.boxes) + len(tracker.grounding.points))
    return tracker, counts, changes


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_streamed_boxes_appear_exactly_when_their_closing_token_arrives(family):
    text, closer = STREAMED[family]
    ends = closing_ends(text, closer)
    if family == "qwen2_5_vl":
        ends = [text.index("}", text.index("cat")) + 1, text.index("}", text.index("dog")) + 1]
        ends.append(text.index("}", ends[-1]) + 1)
    assert len(ends) == 3
    tracker, counts, changes = feed_one_character_at_a_time(text, family)
    expected = [sum(1 for e in ends if e <= end) for end in range(1, len(text) + 1)]
    assert counts == expected
    # feed() says True exactly when a box completed.
    assert [i + 1 for i, changed in enumerate(changes) if changed] == ends
    assert tracker.grounding == find_grounding(text, family, [PHOTO])


def test_streamed_paligemma_boxes_appear_with_their_fourth_location():
    text, _ = STREAMED["paligemma"]
    fourth = [match.end() for match in re.finditer(r"(?:<loc\d{4}>){4}", text)]
    assert len(fourth) == 3
    tracker, counts, changes = feed_one_character_at_a_time(text, "paligemma")
    assert counts == [sum(1 for e in fourth if e <= end) for end in range(1, len(text) + 1)]
    assert [box.label for box in tracker.grounding.boxes] == ["cat", "dog", "bird"]
    assert tracker.grounding == find_grounding(text, "paligemma", [PHOTO])


def test_streamed_molmo_points_appear_when_the_tag_closes():
    text = (
        'Two: <point x="10" y="20" alt="cat">cat</point> and '
        '<points x1="30" y1="40" x2="50" y2="60" alt="dogs">dogs</points>'
    )
    first = text.index('">cat') + 2
    second = text.index('">dogs') + 2
    _, counts, changes = feed_one_character_at_a_time(text, "molmo")
    expected = [0 if end < first else 1 if end < second else 3 for end in range(1, len(text) + 1)]
    assert counts == expected
    assert [i + 1 for i, changed in enumerate(changes) if changed] == [first, second]


def test_a_text_that_does_not_extend_the_last_starts_over():
    tracker = GroundingTracker("qwen3_vl", [PHOTO])
    assert tracker.feed('{"bbox_2d": [0, 0, 500, 500], "label": "a"}')
    assert not tracker.feed('{"bbox_2d": [0, 0, 500, 500], "label": "a"} more')
    assert tracker.feed('{"bbox_2d": [500, 500, 1000, 1000], "label": "b"}')
    assert [box.label for box in tracker.grounding.boxes] == ["b"]


def timed_feed(text, increments=400):
    """Seconds per :meth:`GroundingTracker.feed` call, feeding ``text`` in ``increments`` steps."""
    step = max(1, len(text) // increments)
    tracker = GroundingTracker(None, [PHOTO])
    ends = list(range(step, len(text), step)) + [len(text)]
    started = time.perf_counter()
    for end in ends:
        tracker.feed(text[:end])
    return (time.perf_counter() - started) / len(ends), len(ends), tracker


def test_feed_cost_on_an_8k_token_answer(capsys):
    # ~8,000 tokens ≈ 32,000 characters of prose with an item now and then.
    rng = random.Random(7)
    words = "the a cat dog sits on mat near window light shadow left right top of".split()
    parts = []
    for i in range(540):
        parts.append(" ".join(rng.choice(words) for _ in range(13)) + ". ")
        if i % 40 == 0:
            parts.append(
                '{"bbox_2d": [%d, %d, %d, %d], "label": "obj%d"} ' % (i, i, i + 90, i + 90, i)
            )
        if i % 50 == 25:
            parts.append("<|box_start|>(%d,%d),(%d,%d)<|box_end|> " % (i, i, i + 9, i + 9))
    text = "".join(parts)
    assert len(text) >= 32_000
    per_call, calls, tracker = timed_feed(text)
    once = time.perf_counter()
    whole = find_grounding(text, None, [PHOTO])
    once = time.perf_counter() - once
    assert tracker.grounding == whole
    assert len(whole.boxes) == 14 + 11
    # The worst case: an object that never closes, read again until it is too long.
    unclosed, _, _ = timed_feed('{"bbox_2d": [1, 2, 3, 4], "label": "x" ' + text)
    with capsys.disabled():
        print(
            f"\nfeed(): {calls} calls over {len(text):,} characters: {per_call * 1e6:.0f} µs per call "
            f"({unclosed * 1e6:.0f} µs with an unclosed object at the start); "
            f"the whole text at once: {once * 1e3:.2f} ms"
        )


# --- families ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_type, family",
    [
        ("qwen2_vl", "qwen2_vl"),
        ("qwen2_5_vl", "qwen2_5_vl"),
        ("qwen3_vl", "qwen3_vl"),
        ("qwen3_vl_moe", "qwen3_vl"),
        ("qwen3_5", "qwen3_vl"),
        ("paligemma", "paligemma"),
        ("molmo", "molmo"),
        ("llava", None),
        ("molmo2", None),
        ("idefics3", None),
    ],
)
def test_family_from_model_type(model_type, family):
    assert grounding_family(model_type) == family


@pytest.mark.parametrize(
    "name, family",
    [
        ("Qwen2.5-VL-7B-Instruct", "qwen2_5_vl"),
        ("mlx-community/Qwen2.5-VL-3B-Instruct-4bit", "qwen2_5_vl"),
        ("qwen2_5_vl", "qwen2_5_vl"),
        ("Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl"),
        ("qwen/qwen3-vl-8b", "qwen3_vl"),
        ("qwen3-vl:30b-a3b", "qwen3_vl"),
        ("Qwen3.5-27B", "qwen3_vl"),
        ("paligemma2-3b-mix-448", "paligemma"),
        ("google/paligemma-3b-mix-224", "paligemma"),
        ("Molmo-7B-D", "molmo"),
        ("allenai/MolmoE-1B-0924", "molmo"),
        ("allenai/Molmo2-8B", None),
        ("Qwen2.5-7B-Instruct", None),
        ("gemma-3-4b-it", None),
        ("", None),
    ],
)
def test_family_from_model_name(name, family):
    assert grounding_family(None, name) == family


def test_model_type_wins_over_the_name_and_an_unknown_type_falls_back_to_it():
    assert grounding_family("qwen3_vl", "Qwen2.5-VL-7B") == "qwen3_vl"
    assert grounding_family("custom_vlm", "Qwen2.5-VL-7B") == "qwen2_5_vl"


# --- values --------------------------------------------------------------------------------


def test_as_dict_is_json_safe_and_rounded():
    found = Grounding(
        (Box("cat", 1.26, 2.0, 3.333, 4.96, 0, "qwen3_vl"),), (Point("eye", 5.55, 6.04),)
    )
    assert json.loads(json.dumps(found.as_dict())) == {
        "boxes": [
            {"label": "cat", "x1": 1.3, "y1": 2.0, "x2": 3.3, "y2": 5.0, "image": 0, "format": "qwen3_vl"}
        ],
        "points": [{"label": "eye", "x": 5.5, "y": 6.0, "image": 0, "format": ""}],
    }  # fmt: skip
    assert found and not Grounding()


# --- drawing ---------------------------------------------------------------------------------


def white(width=200, height=100):
    return Image.new("RGB", (width, height), WHITE)


def tagged(image, area, colour):
    """Whether ``area`` lies in a tag of ``colour``: no white left, fill around the glyphs."""
    part = image.crop(area)
    pixels = [part.getpixel((x, y)) for y in range(part.height) for x in range(part.width)]
    return WHITE not in pixels and pixels.count(colour) >= len(pixels) / 4


def test_a_box_is_outlined_in_its_label_colour():
    drawn = draw_grounding(white(), Grounding((Box("cat", 50, 30, 150, 80),)))
    colour = PALETTE[0]
    # Line thickness max(2, 200 / 150) = 2: supervision (OpenCV) draws it 3 pixels wide,
    # centred on its path, which lies 1 pixel in: the outline stays inside the box.
    for xy in [
        (50, 55),
        (52, 55),
        (149, 55),
        (147, 55),
        (100, 30),
        (100, 32),
        (100, 79),
        (100, 77),
    ]:
        assert drawn.getpixel(xy) == colour, xy
    for xy in [(53, 55), (146, 55), (100, 33), (100, 76), (100, 55)]:  # inside
        assert drawn.getpixel(xy) == WHITE, xy
    for xy in [(49, 55), (150, 55), (100, 81), (20, 50), (190, 90), (180, 10)]:  # outside
        assert drawn.getpixel(xy) == WHITE, xy
    # The label tag sits above the box, from its left edge.
    assert tagged(drawn, (52, 22, 62, 29), colour)


def test_the_label_goes_inside_when_there_is_no_room_above_and_the_input_is_untouched():
    image = white()
    drawn = draw_grounding(image, Grounding((Box("cat", 50, 0, 150, 80),)))
    assert tagged(drawn, (52, 2, 62, 9), PALETTE[0])
    assert image.getpixel((55, 5)) == WHITE and drawn is not image


def test_each_label_has_its_colour_and_only_the_shown_image_is_drawn():
    found = Grounding(
        (Box("cat", 10, 40, 60, 90), Box("dog", 120, 40, 190, 90), Box("cat", 70, 40, 110, 90, image=1)),
    )  # fmt: skip
    drawn = draw_grounding(white(), found)
    assert drawn.getpixel((10, 60)) == PALETTE[0]
    assert drawn.getpixel((120, 60)) == PALETTE[1]
    assert drawn.getpixel((70, 60)) == WHITE  # image 1's box
    assert draw_grounding(white(), found, image_index=1).getpixel((70, 60)) == PALETTE[0]


def test_a_point_is_a_dot_with_a_white_ring():
    drawn = draw_grounding(white(), Grounding(points=(Point("", 100, 50),)))
    # Radius max(3, 200 / 100) = 3, ring max(1, 0.75 × 2) = 2 px, inward.
    assert drawn.getpixel((100, 50)) == PALETTE[0]
    assert drawn.getpixel((103, 50)) == WHITE and drawn.getpixel((97, 50)) == WHITE
    assert drawn.getpixel((110, 50)) == WHITE
    dark = Image.new("RGB", (200, 100), (0, 0, 0))
    ringed = draw_grounding(dark, Grounding(points=(Point("", 100, 50),)))
    assert ringed.getpixel((103, 50)) == WHITE and ringed.getpixel((100, 50)) == PALETTE[0]
    assert ringed.getpixel((110, 50)) == (0, 0, 0)


def test_scale_draws_on_a_thumbnail():
    thumb = white(100, 50)
    drawn = draw_grounding(thumb, Grounding((Box("", 50, 30, 150, 80),)), scale=0.5)
    assert drawn.getpixel((25, 27)) == PALETTE[0] and drawn.getpixel((74, 27)) == PALETTE[0]
    assert drawn.getpixel((50, 15)) == PALETTE[0] and drawn.getpixel((50, 39)) == PALETTE[0]
    assert drawn.getpixel((50, 27)) == WHITE and drawn.getpixel((80, 27)) == WHITE
    dotted = draw_grounding(thumb, Grounding(points=(Point("", 160, 20),)), scale=0.5)
    assert dotted.getpixel((80, 10)) == PALETTE[0] and dotted.getpixel((50, 25)) == WHITE


def test_drawing_nothing_or_odd_modes_still_gives_an_image():
    grey = Image.new("L", (40, 20), 255)
    assert draw_grounding(grey, Grounding()).mode == "RGB"
    big = Grounding((Box("a very long label that does not fit", 0, 0, 40, 20),))
    assert draw_grounding(grey, big).size == (40, 20)


def test_tags_of_boxes_at_one_place_are_spread_apart_and_stay_in_the_image():
    # Two labels at one corner: supervision's smart positioning moves one aside,
    # so both are readable (neither tag covers the other).
    found = Grounding((Box("cat", 150, 40, 200, 100), Box("dog", 150, 40, 200, 100)))
    drawn = draw_grounding(white(), found)
    pixels = [drawn.getpixel((x, y)) for y in range(100) for x in range(200)]
    assert pixels.count(PALETTE[0]) > 40 and pixels.count(PALETTE[1]) > 40
    tags = [
        (x, y)
        for y in range(40)
        for x in range(200)
        if drawn.getpixel((x, y)) in (PALETTE[0], PALETTE[1])
    ]
    assert tags and max(x for x, _ in tags) <= 199  # pushed left of the right edge, not cut


def test_an_rgba_image_keeps_its_transparency_where_nothing_is_drawn():
    clear = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    drawn = draw_grounding(clear, Grounding((Box("", 50, 30, 150, 80),)))
    assert drawn.mode == "RGBA"
    assert drawn.getpixel((50, 55)) == (*PALETTE[0], 255)  # the outline is opaque
    assert drawn.getpixel((100, 55)) == (0, 0, 0, 0) and drawn.getpixel((10, 10)) == (0, 0, 0, 0)


# --- crops and regions -------------------------------------------------------------------------


def test_box_crop_cuts_its_image_and_remembers_the_region():
    images = [white(200, 100), Image.new("RGB", (300, 300), (1, 2, 3))]
    piece = Box("cat", 10.4, 20.6, 60.5, 70, image=1).crop(images)
    assert piece.size == (50, 49) and piece.getpixel((0, 0)) == (1, 2, 3)
    parent, region = getattr(piece, REGION_ATTRIBUTE)
    assert parent is images[1] and region == (10, 21, 60, 70)
    assert Box("", 0, 0, 10, 10).crop(images[0]).size == (10, 10)
    # Degenerate boxes still give a pixel.
    assert Box("", 199.9, 99.9, 200, 100).crop(images[0]).size == (1, 1)


def test_box_crop_uses_its_hidden_image_or_says_what_to_pass():
    image = white(200, 100)
    assert Box("", 0, 0, 20, 10, source_image=image).crop().size == (20, 10)
    with pytest.raises(
        ValueError, match=r"^this box has no image: pass the images, e\.g\. box\.crop\(images\)$"
    ):
        Box("", 0, 0, 20, 10).crop()
    with pytest.raises(ValueError, match="image 3"):
        Box("", 0, 0, 20, 10, image=3).crop([image])
    assert Box("", 0, 0, 1, 1, source_image=image) == Box("", 0, 0, 1, 1)


def test_crop_region_checks_the_region_against_the_image():
    image = white(200, 100)
    piece = crop_region(image, 10, 20, 110, 70)
    assert piece.size == (100, 50)
    assert getattr(piece, REGION_ATTRIBUTE) == (image, (10, 20, 110, 70))
    for region in [(10, 20, 300, 70), (-5, 0, 10, 10), (0, 0, 10, 101)]:
        with pytest.raises(ValueError, match="outside the 200×100 image") as error:
            crop_region(image, *region)
        assert "\n" not in str(error.value)
    for region in [(10, 20, 10, 70), (50, 20, 10, 70), (0, 0, 0.2, 10)]:
        with pytest.raises(ValueError, match="is empty.*200×100"):
            crop_region(image, *region)
    with pytest.raises(ValueError, match="finite"):
        crop_region(image, math.nan, 0, 10, 10)


def test_region_context_outlines_the_region_and_dims_the_rest():
    parent = Image.new("RGB", (400, 200), (200, 200, 200))
    context = region_context(parent, (100, 50, 300, 150), 100)
    assert context.size == (100, 50)
    inside = context.getpixel((50, 25))
    outside = context.getpixel((5, 5))
    assert inside == (200, 200, 200)
    assert all(o < 120 for o in outside)
    # The outline runs just outside the region (25..75 × 12..38 at this scale).
    assert context.getpixel((23, 25)) == (255, 214, 0)
    assert region_context(white(50, 20), (0, 0, 10, 10), 256).size == (50, 20)


# --- layout ----------------------------------------------------------------------------------------


def test_the_package_imports_neither_mlx_nor_ipython_at_module_level():
    folder = Path(grounding_package.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("mlx", "mlx_lm", "mlx_vlm", "IPython"), path
                if name.startswith("mlx_magic."):
                    assert name.startswith("mlx_magic.grounding"), (path, name)
