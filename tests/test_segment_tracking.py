"""``-v --segment`` a frame a call: the strip is drawn as each frame is tracked,
an interrupt keeps the frames done, and the tracker waits in the runtime between calls.

The real tiny SAM 3 (tracking shape) and SAM 3.1 run, their first-frame
detections scripted (:func:`~mlx_magic.testing.scripted.forced_masks`); their
trackers, the runtime, the drawing and ``_mlx`` are the real ones.
"""

import numpy as np
import pytest
from PIL import Image
from test_segment import segmenting_with

from mlx_magic.display.masks_view import MasksDisplay
from mlx_magic.engine import segmentation
from mlx_magic.errors import UserError
from mlx_magic.runtime.interface import Runtime
from mlx_magic.testing.scripted import forced_masks
from mlx_magic.vocabulary.masks import SegmentRequest

from conftest import magics_of, run

pytestmark = pytest.mark.vision

BALL = np.zeros((80, 120), bool)
BALL[30:50, 12:36] = True
CUP = np.zeros((80, 120), bool)
CUP[50:60, 70:90] = True


@pytest.fixture(scope="module")
def tiny_sam3_video(tmp_path_factory):
    from mlx_magic.testing.tiny_models import build_tiny_sam3

    return build_tiny_sam3(tmp_path_factory.mktemp("models") / "tiny-sam3-video", video=True)


@pytest.fixture(params=["sam3", "sam3.1"])
def tracking_shell(request, vlm_shell, tiny_sam31):
    """The vision shell with a segmenter that tracks (SAM 3's tracking shape, or
    SAM 3.1), how many frames to give it and what its detector finds on the
    first one (SAM 3's tiny tracker is the slow one: fewer)."""
    if request.param == "sam3.1":
        folder, count, found = tiny_sam31, 4, np.stack([BALL, CUP])
    else:
        folder, count, found = request.getfixturevalue("tiny_sam3_video"), 3, BALL[None]
    vlm_shell.user_ns["frames"] = [Image.new("RGB", (120, 80), "white") for _ in range(count)]
    for shell in segmenting_with(vlm_shell, folder):
        yield shell, folder, count, found


@pytest.fixture
def events(monkeypatch):
    """Each runtime segment call (its tracking id and frames sent) and each
    redraw of the strip (frames done, note), in order; the real ones run."""
    happened = []
    segment, show = Runtime.segment, MasksDisplay.show

    def recording_segment(self, asked):
        happened.append(("call", asked.tracking, len(asked.images)))
        return segment(self, asked)

    def recording_show(self, masks, done, note, pictures=None):
        happened.append(("show", done, note))
        return show(self, masks, done, note, pictures)

    monkeypatch.setattr(Runtime, "segment", recording_segment)
    monkeypatch.setattr(MasksDisplay, "show", recording_show)
    return happened


def _one_call(shell, folder, found):
    """The masks of one runtime call that tracks every frame (as before frames came a call each)."""
    session = magics_of(shell).session
    frames = tuple(shell.user_ns["frames"])
    asked = SegmentRequest(session.resolve(str(folder)), frames, ("ball",), track=True)
    with forced_masks(found):
        found = session.runtime.segment(asked)
    return _keyed(found.masks)


def _keyed(masks):
    return [(m.label, m.track, m.image, m.counts, round(m.score, 5)) for m in masks]


def test_the_strip_is_drawn_frame_by_frame_and_ends_as_one_call_would(tracking_shell, events):
    shell, folder, count, found = tracking_shell
    with forced_masks(found):
        run(shell, "%%mlx_vision -v frames --fps 2 --segment\nball")
    result = shell.user_ns["_mlx"]
    # A call a frame, each frame drawn before the next is asked for; the last
    # one is drawn with the footer. The frames are sent once.
    calls = [event for event in events if event[0] == "call"]
    (tracking,) = {call[1] for call in calls}
    assert tracking and [call[2] for call in calls] == [count] + [0] * (count - 1)
    expected = []
    for done in range(1, count):
        expected += [("call", tracking, count if done == 1 else 0)]
        expected += [("show", done, f"tracking with {folder.name}: {done} of {count} frames…")]
    assert events == expected + [("call", tracking, 0)]
    # Frame by frame, the same masks, ids and frames as one call through them all.
    assert result.masks and _keyed(result.masks) == _one_call(shell, folder, found)
    assert {m.track for m in result.masks} == set(range(1, len(found) + 1))
    assert result.timestamps == tuple(round(i / 2, 2) for i in range(count))
    assert len(result.images) == count and not result.stopped
    counted = "2 balls" if len(found) == 2 else "1 ball"
    assert result.footer.startswith(f"{counted} tracked through {count} frames · {folder.name} · ")
    assert segmentation._tracking is None  # done: the tracker is not kept


def test_an_interrupt_keeps_the_frames_done_and_the_next_cell_works(
    tracking_shell, monkeypatch, capsys
):
    shell, folder, count, found = tracking_shell
    show = MasksDisplay.show

    def interrupted_at_frame_two(self, masks, done, note, pictures=None):
        show(self, masks, done, note, pictures)
        if done == 2:
            raise KeyboardInterrupt  # the kernel's interrupt, after frame 2 is drawn

    with monkeypatch.context() as patch:
        patch.setattr(MasksDisplay, "show", interrupted_at_frame_two)
        with forced_masks(found), pytest.raises(KeyboardInterrupt) as caught:
            run(shell, "%%mlx_vision -v frames --fps 2 --segment\nball")
    assert f"stopped after frame 2 of {count}; _mlx keeps the masks found" in str(caught.value)
    stopped = shell.user_ns["_mlx"]
    whole = _one_call(shell, folder, found)
    assert _keyed(stopped.masks) == [mask for mask in whole if mask[2] < 2]
    assert stopped.timestamps == (0.0, 0.5) and len(stopped.images) == 2
    counted = "2 balls" if len(found) == 2 else "1 ball"
    assert stopped.footer.startswith(f"{counted} tracked through 2 frames · {folder.name} · ")
    assert stopped.footer.endswith(f" · stopped after frame 2 of {count}")
    assert f"[{counted} tracked through 2 frames · {folder.name} · " in capsys.readouterr().out
    # The runtime and the warm model are there for the next cell, which tracks every frame.
    with forced_masks(found):
        run(shell, "%%mlx_vision -v frames --fps 2 --segment\nball")
    again = shell.user_ns["_mlx"]
    assert _keyed(again.masks) == whole and not again.stopped
    warm = [(m.name, m.kind) for m in magics_of(shell).backend.models()]
    assert (folder.name, "segmenter") in warm


def test_a_new_tracking_replaces_the_one_that_waits(vlm_shell, tiny_sam31):
    session = magics_of(vlm_shell).session
    spec = session.resolve(str(tiny_sam31))
    frames = tuple(Image.new("RGB", (120, 80), "white") for _ in range(3))

    def asked(tracking, images=frames):
        return SegmentRequest(
            spec, images, ("ball",), track=True, tracking=tracking, frames_wanted=1
        )

    with forced_masks(BALL):
        first = session.runtime.segment(asked("one"))
        assert (first.tracked, first.done) == (1, False)
        waiting = segmentation._tracking
        assert waiting is not None and waiting.id == "one"
        other = session.runtime.segment(asked("two"))
    assert (other.tracked, other.done) == (1, False)
    assert segmentation._tracking is not None and segmentation._tracking.id == "two"
    assert waiting.steps.gi_frame is None  # the old tracker was closed: its memory freed
    # The replaced one cannot go on (one line), and the new one can.
    with pytest.raises(UserError) as caught:
        session.runtime.segment(asked("one", ()))
    assert "The video's tracking was ended" in str(caught.value)
    assert segmentation._tracking is None  # that call ended the other one too
    with forced_masks(BALL):
        session.runtime.segment(asked("three"))
    session.runtime.unload()  # unloading the model ends its tracking
    assert segmentation._tracking is None


def test_through_the_worker_process_frames_come_a_call_each(tiny_sam31, events, monkeypatch):
    """The process runtime: the tracker waits in the worker between calls; an
    interrupt keeps the frames done and the worker tracks the next cell."""
    from conftest import make_shell

    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        run(shell, "%mlx runtime process")
        run(shell, "from PIL import Image")
        run(shell, "frames = [Image.new('RGB', (120, 80), 'white') for _ in range(3)]")
        # The worker's tiny SAM 3.1 finds its own (random) instances on the first frame.
        run(shell, "%config MLXMagics.segment_threshold = 0.0")
        cell = f"%%mlx_vision -v frames --segment -m {tiny_sam31}\nball"
        run(shell, cell)
        whole = shell.user_ns["_mlx"]
        assert whole.masks and {m.image for m in whole.masks} <= {0, 1, 2}
        assert [e[:2] for e in events if e[0] == "show"] == [("show", 1), ("show", 2)]
        assert len([e for e in events if e[0] == "call"]) == 3
        segment = Runtime.segment
        calls = []

        def interrupted_at_the_third_call(self, asked):
            calls.append(asked.tracking)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return segment(self, asked)

        with monkeypatch.context() as patch:
            patch.setattr(Runtime, "segment", interrupted_at_the_third_call)
            with pytest.raises(KeyboardInterrupt) as caught:
                run(shell, cell)
        assert "stopped after frame 2 of 3" in str(caught.value)
        kept = shell.user_ns["_mlx"]
        assert _keyed(kept.masks) == [m for m in _keyed(whole.masks) if m[2] < 2]
        run(shell, cell)  # the worker drops the tracking left waiting and tracks anew
        assert _keyed(shell.user_ns["_mlx"].masks) == _keyed(whole.masks)
        assert [m.kind for m in magics_of(shell).backend.models()] == ["segmenter"]
    finally:
        shell.extension_manager.unload_extension("mlx_magic")
