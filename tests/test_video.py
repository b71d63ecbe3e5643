"""%%mlx_vision -v: a video through mlx-vlm's own reader and video processor (tiny Qwen2-VL)."""

import numpy as np
import pytest
from IPython.core.error import UsageError

from conftest import magics_of, run

pytestmark = pytest.mark.vision


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 3-second, 10 fps mp4 written with OpenCV (mlx-vlm's own video library)."""
    import cv2

    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for index in range(30):
        frame = np.zeros((64, 96, 3), np.uint8)
        cv2.rectangle(frame, (index * 2, 10), (index * 2 + 20, 40), (0, 255, 0), -1)
        writer.write(frame)
    writer.release()
    return path


def test_a_video_file_is_sampled_shown_as_a_strip_and_answered(vlm_shell, clip, capsys):
    run(vlm_shell, f"%%mlx_vision -v {clip} --fps 2 -n 4\nWhat happens?")
    printed = capsys.readouterr().out
    # 3 s at 2 fps: 6 frames, their times from mlx-vlm's reader.
    assert "[video: " in printed and "· 6 frames · 0.0–2.9 s]" in printed
    result = vlm_shell.user_ns["_mlx"]
    assert result.stats.video_tokens > 0 and result.stats.image_tokens == 0
    assert f"({result.stats.video_tokens} video + " in result.footer
    assert result.stats.generation_tokens >= 1


def test_more_frames_cost_more_tokens(vlm_shell, clip):
    counts = []
    for frames in (4, 8):
        run(vlm_shell, f"%%mlx_vision -v {clip} --fps 10 --max-frames {frames} -n 1\nWhat?")
        counts.append(vlm_shell.user_ns["_mlx"].stats.video_tokens)
    assert counts[0] < counts[1]


def test_frames_in_a_variable_are_a_video(vlm_shell, capsys):
    run(vlm_shell, "frames = [red, red.rotate(90, expand=False), noise, noise]")
    run(vlm_shell, "%%mlx_vision -v frames --fps 4 -n 2\nWhat changes?")
    printed = capsys.readouterr().out
    assert "[video: frames · 4 frames · 0.0–0.8 s]" in printed
    run(vlm_shell, "clip_array = np.stack([noise] * 40)")
    run(vlm_shell, "%%mlx_vision -v clip_array --max-frames 8 -n 2\nWhat changes?")
    assert "· 8 frames ·" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, message",
    [
        ("-v missing.mp4", "no variable or video file named 'missing.mp4'"),
        ("-v red", "is a Image, not a video"),
        ("-v noise", r"shape \(64, 96, 3\) is not a video"),
        ("-v frames --chat film", "not in a conversation"),
        ("-v frames --fps 0", "--fps must be above 0"),
        ("-v frames --max-frames 1", "--max-frames must be between 2 and 128"),
        ("-i red --max-frames 4", "--fps and --max-frames are for a video"),
    ],
)
def test_video_mistakes_are_one_line_and_change_nothing(vlm_shell, flags, message):
    run(vlm_shell, "frames = [red, noise]")
    run(vlm_shell, "%%mlx_vision -i red -n 1\nWhat?")
    before = vlm_shell.user_ns["_mlx"]
    with pytest.raises(UsageError, match=message):
        run(vlm_shell, f"%%mlx_vision {flags} -n 2\nWhat?")
    assert vlm_shell.user_ns["_mlx"] is before


def test_a_file_that_is_not_a_video_is_one_line(vlm_shell, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video")
    with pytest.raises(UsageError, match="is not a video this machine can read"):
        run(vlm_shell, f"%%mlx_vision -v {fake} -n 2\nWhat?")
    run(vlm_shell, "%%mlx_vision -i red -n 1\nStill fine?")  # the model is still usable


@pytest.mark.parametrize("kind", ["text", "empty", "sparse 2 GB"])
def test_a_file_that_is_not_a_video_is_refused_before_the_runtime_reads_it(
    vlm_shell, tmp_path, capfd, kind
):
    path = tmp_path / "clip.mp4"
    if kind == "text":
        path.write_text("Dear diary, today I filmed nothing.\n" * 20)
    else:
        path.write_bytes(b"")
        if kind.startswith("sparse"):
            with open(path, "r+b") as file:
                file.truncate(2 << 30)  # zeros, taking no disk
    generations = magics_of(vlm_shell).session.runtime.status().generations
    capfd.readouterr()
    with pytest.raises(UsageError) as caught:
        run(vlm_shell, f"%%mlx_vision -v {path} -n 2\nWhat?")
    assert type(caught.value) is UsageError and "\n" not in str(caught.value)
    assert "is not a video this machine can read" in str(caught.value)
    # The one line the shell shows, and nothing from a video reader.
    assert capfd.readouterr().err.splitlines() == [f"UsageError: {caught.value}"]
    assert magics_of(vlm_shell).session.runtime.status().generations == generations


def test_a_model_without_video_says_so(vlm_shell, monkeypatch):
    # The processor's own answer to "do you take video?" is what is checked.
    import importlib

    video_module = importlib.import_module("mlx_vlm.generate.video")
    monkeypatch.setattr(video_module, "processor_handles_video", lambda processor: False)
    run(vlm_shell, "frames = [red, noise]")
    with pytest.raises(UsageError, match="does not take video .*send some frames as images"):
        run(vlm_shell, "%%mlx_vision -v frames -n 2\nWhat?")
