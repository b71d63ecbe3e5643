"""SAM 3.1 folders segment like SAM 3 folders: text and box prompts through
SAM 3.1's own ``predict_multi``, a video through its multiplex tracker.

A tiny random SAM 3.1 built from mlx-vlm's own config classes
(:func:`~mlx_magic.testing.tiny_models.build_tiny_sam31`) runs mlx-vlm's real
``load_model``, ``Sam31Processor``, ``Sam3Predictor``, ``sam3_1.generate.predict_multi``
and tracker. Where the result matters the predictor's post-processing answers
with known masks (it is SAM 3's, which SAM 3.1 shares), and everything after it
is real.
"""

import json

import numpy as np
import pytest
from IPython.core.error import UsageError
from mlx_vlm.models.sam3 import generate as sam3_generate
from mlx_vlm.models.sam3_1 import generate as sam31_generate
from mlx_vlm.models.sam3_1.sam3_1 import Model as Sam31Model
from PIL import Image
from test_segment import segmenting_with

from mlx_magic.models.resolve import model_kind, resolve_model
from mlx_magic.testing.scripted import forced_masks

from conftest import magics_of, one_line, run

pytestmark = pytest.mark.vision

# red is 120×80 (the vlm_shell's image).
CAR_1 = (slice(10, 30), slice(5, 45))  # 20 × 40 = 800 px
CAR_2 = (slice(40, 70), slice(60, 100))  # 30 × 40 = 1200 px
CUP = (slice(50, 60), slice(10, 20))  # 10 × 10 = 100 px


def _pixels(*regions, size=(80, 120)):
    masks = np.zeros((len(regions), *size), bool)
    for index, (rows, cols) in enumerate(regions):
        masks[index, rows, cols] = True
    return masks


@pytest.fixture
def sam31_shell(vlm_shell, tiny_sam31):
    """The vision shell with the tiny SAM 3.1 as its segmenter; settings restored after."""
    yield from segmenting_with(vlm_shell, tiny_sam31)


@pytest.fixture
def sam31_calls(monkeypatch):
    """Each call of SAM 3.1's own ``predict_multi`` (its prompts), and each of
    the shared predictor's ``predict`` (its prompt and box prompts); the real ones run."""
    calls = {"predict_multi": [], "predict": []}
    predict_multi, predict = sam31_generate.predict_multi, sam3_generate.Sam3Predictor.predict

    def recording_predict_multi(predictor, image, prompts, *args, **kwargs):
        calls["predict_multi"].append(list(prompts))
        return predict_multi(predictor, image, prompts, *args, **kwargs)

    def recording_predict(self, image, text_prompt, boxes=None, score_threshold=None):
        calls["predict"].append(
            (text_prompt, None if boxes is None else np.asarray(boxes).tolist())
        )
        return predict(self, image, text_prompt, boxes=boxes, score_threshold=score_threshold)

    monkeypatch.setattr(sam31_generate, "predict_multi", recording_predict_multi)
    monkeypatch.setattr(sam3_generate.Sam3Predictor, "predict", recording_predict)
    return calls


@pytest.mark.parametrize("model_type", ["sam3.1_video", "sam3_1", "SAM3.1_video"])
def test_a_sam31_folder_resolves_as_a_segmenter(tiny_sam31, model_type):
    config = json.loads((tiny_sam31 / "config.json").read_text())
    assert config["model_type"] == "sam3.1_video"  # as mlx-community's conversions say
    assert resolve_model(str(tiny_sam31)).kind == "segmenter"
    assert model_kind({**config, "model_type": model_type}) == "segmenter"


def test_text_prompts_run_sam31s_own_predict_multi(sam31_shell, tiny_sam31, sam31_calls, capsys):
    """Two prompts: SAM 3.1's predict_multi runs the backbone once and its
    three-headed neck (SAM 3's would fail on the neck's three feature sets)."""
    with forced_masks(_pixels(CAR_1, CAR_2), _pixels(CUP)):
        run(sam31_shell, "%%mlx_vision -i red --segment\ncar, cup")
    assert sam31_calls["predict_multi"] == [["car", "cup"]]
    result = sam31_shell.user_ns["_mlx"]
    # Best first (scores 0.9, 0.8, … per prompt).
    assert [(m.label, m.area, m.box) for m in result.masks] == [
        ("car", 800, (5, 10, 45, 30)),
        ("cup", 100, (10, 50, 20, 60)),
        ("car", 1200, (60, 40, 100, 70)),
    ]
    assert result.masks[2].mask[CAR_2].all() and result.masks[2].mask.sum() == 1200
    printed = capsys.readouterr().out
    assert f"[2 cars · 1 cup · {tiny_sam31.name} · {result.took_s:.2f} s]" in printed
    warm = magics_of(sam31_shell).backend.models()
    assert (tiny_sam31.name, "segmenter") in [(m.name, m.kind) for m in warm]


def test_the_random_sam31_finds_masks_of_its_own(sam31_shell):
    """Nothing scripted: the tiny model's own detections, through the whole path."""
    run(sam31_shell, "%config MLXMagics.segment_threshold = 0.0")
    run(sam31_shell, "%%mlx_vision -i red --segment\ncar")
    masks = sam31_shell.user_ns["_mlx"].masks
    assert 1 <= len(masks) <= 8
    assert all(m.label == "car" and 0 < m.score < 1 and m.mask.shape == (80, 120) for m in masks)


def test_box_prompts_keep_the_mask_that_covers_each_box(sam31_shell, sam31_calls):
    """@boxes with the masks of the latest answer: one call for the label, with
    the boxes, and each box keeps the mask that best covers it."""
    with forced_masks(_pixels(CAR_1, CAR_2)):
        run(sam31_shell, "%%mlx_vision -i red --segment\ncar")
    # Found the other way round: each box still keeps its own car.
    with forced_masks(_pixels(CAR_2, CAR_1)):
        run(sam31_shell, "%mlx segment @boxes")
    text, boxes = sam31_calls["predict"][-1]
    assert text == "car" and np.allclose(boxes, [[5, 10, 45, 30], [60, 40, 100, 70]])
    result = sam31_shell.user_ns["_mlx"]
    assert [(m.label, m.box) for m in result.masks] == [
        ("car", (5, 10, 45, 30)),
        ("car", (60, 40, 100, 70)),
    ]
    assert result.footer.startswith("2 cars · tiny-sam31 · ")


@pytest.fixture
def tracker_steps(monkeypatch):
    """The frames SAM 3.1's tracker is started on and stepped to (the real one runs)."""
    steps = []
    track_init, track_step = Sam31Model.track_init, Sam31Model.track_step

    def recording_init(self, backbone_features, detection_masks, state=None):
        steps.append(("init", detection_masks.shape[0]))
        return track_init(self, backbone_features, detection_masks, state)

    def recording_step(self, state, backbone_features, frame_idx, run_mem_encoder=True):
        steps.append(("step", frame_idx))
        return track_step(self, state, backbone_features, frame_idx, run_mem_encoder)

    monkeypatch.setattr(Sam31Model, "track_init", recording_init)
    monkeypatch.setattr(Sam31Model, "track_step", recording_step)
    return steps


def test_a_video_is_tracked_by_sam31s_multiplex_tracker(sam31_shell, tracker_steps, capsys):
    """-v with --segment: the first frame's detections condition SAM 3.1's
    tracker (their masks), which follows them through the frames; each object
    keeps its id (1, 2, 3 in the detections' order; the tiny tracker holds two
    objects a bucket, so three take two)."""
    sam31_shell.user_ns["frames"] = [Image.new("RGB", (120, 80), "white") for _ in range(3)]
    found = _pixels(CAR_1, CUP, CAR_2)
    with forced_masks(found):
        run(sam31_shell, "%%mlx_vision -v frames --fps 3 --segment\nball")
    assert tracker_steps == [("init", 3), ("step", 1), ("step", 2)]
    result = sam31_shell.user_ns["_mlx"]
    assert {m.track for m in result.masks} == {1, 2, 3}
    assert {m.label for m in result.masks} == {"ball"}
    assert [m.image for m in result.masks] == sorted(m.image for m in result.masks)
    assert {m.image for m in result.masks} == {0, 1, 2}  # the tiny tracker keeps its objects
    assert all(m.mask.shape == (80, 120) and m.area > 0 for m in result.masks)
    assert all(0 <= m.score <= 1 for m in result.masks)
    # On the first frame the tracker's masks are the detections (a pixel off at
    # most, through its 112-pixel square and back).
    first = {m.track: m.mask for m in result.masks if m.image == 0}
    for track, wanted in enumerate(found, 1):
        overlap = (first[track] & wanted).sum() / (first[track] | wanted).sum()
        assert overlap > 0.8
    assert result.timestamps == (0.0, 0.33, 0.67)
    printed = capsys.readouterr().out
    assert "[3 balls tracked through 3 frames · tiny-sam31 · " in printed


def test_a_video_with_nothing_found_on_its_first_frame_tracks_nothing(sam31_shell, tracker_steps):
    sam31_shell.user_ns["frames"] = [Image.new("RGB", (120, 80), "white") for _ in range(2)]
    with forced_masks(np.zeros((0, 80, 120), bool)):
        run(sam31_shell, "%%mlx_vision -v frames --segment\nball")
    assert list(sam31_shell.user_ns["_mlx"].masks) == []
    assert tracker_steps == []


def test_the_command_line_builds_the_tiny_sam31(tiny_sam31, capsys):
    from mlx_magic.testing import tiny_models

    assert tiny_models.main(["sam3.1", str(tiny_sam31)]) == 0  # idempotent: the same folder
    assert capsys.readouterr().out.strip() == str(tiny_sam31)
    marker = json.loads((tiny_sam31 / tiny_models.MARKER).read_text())
    assert marker["kind"] == "sam3.1"


def test_a_sam31_checkpoint_without_mlx_weights_names_a_conversion(sam31_shell, tmp_path):
    # facebook/sam3.1 ships a PyTorch checkpoint: no safetensors for mlx-vlm to load.
    folder = tmp_path / "sam3.1"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "sam3.1_video"}))
    (folder / "sam3.1_multiplex.pt").write_bytes(b"not read")
    with pytest.raises(UsageError) as caught:
        run(sam31_shell, f"%%mlx_vision -i red -m {folder} --segment\ncar")
    assert "has no weights" in one_line(caught)
    assert "mlx-community/sam3.1-bf16" in one_line(caught)
