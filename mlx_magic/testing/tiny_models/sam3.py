"""The tiny SAM 3 (``model_type: sam3_video``) and SAM 3.1 (``sam3.1_video``) for
mlx-vlm's segmenters: configs, tokenizer, builds.

SAM 3 has two shapes: the image one (8 × 8 patches: fast, for everything but
tracking) and the tracking one (``video=True``): SAM 3's 72 × 72 patches, which
mlx-vlm's video predictor (``Sam3VideoPredictor``) needs. It resizes each mask
it remembers to 1152 pixels, 72 × 72 after its memory encoder's stride of 16,
and adds it to the frame's features (``mlx_vlm/models/sam3/generate.py``,
``_update_memory``): on the 8 × 8 grid that fails with "Shapes (1,8,8,32) and
(1,72,72,32) cannot be broadcast". SAM 3.1 has one: its multiplex tracker
reads every size from the config, so the 8 × 8 grid tracks too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mlx_magic.testing.tiny_models import weights
from mlx_magic.testing.tiny_models.folders import atomic_build, write_json

#: The side images are resized to (SAM 3's is 1008): 8 × 8 patches of 14 pixels.
IMAGE_SIDE = 112
#: The tracking shape's side: SAM 3's 72 × 72 patches, of 2 pixels.
TRACKING_SIDE, TRACKING_PATCH = 144, 2
#: Detection queries: at most this many masks per prompt.
QUERIES = 8
_WIDTH = 32
#: The bias of SAM 3.1's propagation decoder's object presence head.
_SAM31_PRESENCE_BIAS = "tracker_model.sam_mask_decoder.pred_obj_score_head.proj_out.bias"


def build_tiny_sam3(folder: str | os.PathLike, *, seed: int = 0, video: bool = False) -> Path:
    """A tiny random SAM 3 (``model_type: sam3_video``) in ``folder``; returns it.

    Built from mlx-vlm's own config classes (``mlx_vlm.models.sam3.config``)
    with every part shrunk (32 wide, one or two layers, 112-pixel images, 8
    queries), so ``mlx_vlm.utils.load_model``, ``Sam3Processor`` and
    ``Sam3Predictor`` run for real; the folder holds ``config.json``,
    ``model.safetensors``, ``processor_config.json`` and a small CLIP BPE
    tokenizer (``tokenizer.json``), so nothing is asked of the hub. Its scores
    are noise (about 0.15): tests that need masks use a low threshold or
    script them. About 1.7 MB.

    With ``video``, the tracking shape: 144-pixel images in SAM 3's 72 × 72
    patches (see the module's docstring), windowed attention only, every
    feature level at 72 × 72, no DETR encoder or memory attention layer, so
    ``Sam3VideoPredictor`` runs too (about a second a frame and object on a
    CPU, most of it its memory encoder at 1152 pixels); an image costs ten
    times the image shape's.

    Idempotent, as the other tiny models.
    """
    recipe = {"kind": "sam3", "seed": int(seed), **({"video": True} if video else {})}
    return atomic_build(Path(folder), recipe, lambda tmp: _fill_sam3(tmp, int(seed), video))


def build_tiny_sam31(folder: str | os.PathLike, *, seed: int = 0) -> Path:
    """A tiny random SAM 3.1 (``model_type: sam3.1_video``) in ``folder``; returns it.

    SAM 3's tiny image shape (:func:`build_tiny_sam3`: 32 wide, 112-pixel
    images in 8 × 8 patches, 8 queries) in SAM 3.1's layout, from mlx-vlm's own
    config classes (``mlx_vlm.models.sam3_1.config``): the three-headed
    vision neck (detection, interactive, propagation) at 4×, 2× and 1×, and the
    multiplex tracker with 2 objects a bucket, its memory on the 8 × 8 grid. So
    ``mlx_vlm.utils.load_model``, ``Sam31Processor``, ``Sam3Predictor``, SAM
    3.1's ``predict_multi`` and its tracker (``Model.track_init`` /
    ``track_step``) run for real, a frame in a few hundredths of a second on a
    CPU. The same files as the tiny SAM 3. About 2 MB. Idempotent.
    """
    recipe = {"kind": "sam3.1", "seed": int(seed)}
    return atomic_build(
        Path(folder), recipe, lambda tmp: _fill_sam3(tmp, int(seed), False, sam31=True)
    )


def sam31_config(vocab_size: int) -> dict:
    """The tiny SAM 3.1's ``config.json``: the tiny SAM 3's image shape
    (:func:`sam3_config`) in SAM 3.1's layout."""
    config = sam3_config(vocab_size)
    grid = IMAGE_SIDE // 14  # the image shape's 8 × 8 patches
    for vision in (
        config["detector_config"]["vision_config"],
        config["tracker_config"]["vision_config"],
    ):
        # SAM 3.1's neck: three scales, no 0.5× level.
        vision["scale_factors"] = [4.0, 2.0, 1.0]
        vision["backbone_feature_sizes"] = [[grid * 4] * 2, [grid * 2] * 2, [grid] * 2]
    tracker = config["tracker_config"]
    del tracker["memory_encoder_output_channels"]  # SAM 3.1's memory is as wide as its features
    multiplex = 2  # objects a bucket (SAM 3.1's: 16): three objects make two buckets
    tracker.update(
        {
            "model_type": "sam3.1_tracker_video",
            "multiplex_count": multiplex,
            "mask_decoder_config": {
                "hidden_size": _WIDTH,
                "num_attention_heads": 2,
                "mlp_dim": 2 * _WIDTH,
                "multiplex_count": multiplex,
            },
            "memory_attention_num_attention_heads": 2,
            # The mask downsampler's first layer reads two channels an object slot.
            "mask_downsampler_first_channels": multiplex,
            # Its stride is 16 in all: the memory lands on the 8 × 8 grid.
            "mask_downsampler_input_size": 16 * grid,
            "num_maskmem": 2,
            "max_object_pointers_in_encoder": 2,
        }
    )
    config["detector_config"]["model_type"] = "sam3.1"
    return {**config, "architectures": ["Sam3_1VideoModel"], "model_type": "sam3.1_video"}


def sam3_config(vocab_size: int, video: bool = False) -> dict:
    """The tiny model's ``config.json``: SAM 3's layout, every size shrunk
    (``video``: the tracking shape)."""
    width = {"hidden_size": _WIDTH, "num_attention_heads": 2}
    layers = {**width, "intermediate_size": 2 * _WIDTH}
    side, grid = (TRACKING_SIDE, TRACKING_SIDE // TRACKING_PATCH) if video else (IMAGE_SIDE, 8)
    backbone = {
        **layers,
        "num_hidden_layers": 2,
        "image_size": side,
        "patch_size": side // grid,
        "window_size": 8 if video else 4,
        # A global layer over 72 × 72 patches costs seconds on a CPU: windows only.
        "global_attn_indexes": [] if video else [1],
        "pretrain_image_size": 8 * (side // grid) if video else 56,
    }
    levels = [1.0, 1.0, 1.0, 0.5] if video else [4.0, 2.0, 1.0, 0.5]
    vision = {
        "backbone_config": backbone,
        "fpn_hidden_size": _WIDTH,
        "scale_factors": levels,
        "backbone_feature_sizes": [[int(grid * level)] * 2 for level in levels[:3]],
    }
    text = {
        **layers,
        "num_hidden_layers": 1,
        "vocab_size": vocab_size,
        "max_position_embeddings": 32,
        "projection_dim": _WIDTH,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }
    detector = {
        "vision_config": vision,
        "text_config": text,
        # The tracking shape: no layer attending over 72 × 72 tokens (seconds on a CPU).
        "detr_encoder_config": {**layers, "num_layers": 0 if video else 1},
        "detr_decoder_config": {**layers, "num_layers": 1, "num_queries": QUERIES},
        "geometry_encoder_config": {**layers, "num_layers": 1},
        "mask_decoder_config": width,
    }
    tracker = {
        "image_size": side,
        "vision_config": vision,
        "mask_decoder_config": {**width, "mlp_dim": 2 * _WIDTH, "iou_head_hidden_dim": _WIDTH},
        "prompt_encoder_config": {
            "hidden_size": _WIDTH,
            "image_size": side,
            "patch_size": side // grid,
        },
        "memory_attention_hidden_size": _WIDTH,
        "memory_attention_num_layers": 0 if video else 1,
        "memory_attention_feed_forward_hidden_size": 2 * _WIDTH,
        "memory_attention_rope_feat_sizes": [grid, grid],
        "memory_encoder_hidden_size": _WIDTH,
        "memory_encoder_output_channels": 16,
        "mask_downsampler_embed_dim": _WIDTH,
        "memory_fuser_embed_dim": _WIDTH,
        "memory_fuser_num_layers": 1,
        "memory_fuser_intermediate_dim": 2 * _WIDTH,
        **({"num_maskmem": 2} if video else {}),
    }
    return {
        "architectures": ["Sam3VideoModel"],
        "model_type": "sam3_video",
        "detector_config": detector,
        "tracker_config": tracker,
        "low_res_mask_size": grid if video else 32,
    }


def _fill_sam3(folder: Path, seed: int, video: bool, sam31: bool = False) -> None:
    """Write a tiny SAM 3 (``sam31``: SAM 3.1) into ``folder`` (an empty temporary folder)."""
    from mlx_vlm.models import sam3, sam3_1

    vocab_size = write_clip_tokenizer(folder)
    config = sam31_config(vocab_size) if sam31 else sam3_config(vocab_size, video)
    side = config["tracker_config"]["image_size"]
    write_json(folder / "config.json", config)
    # Sam3Processor.from_pretrained reads the image size, mean and std here.
    write_json(
        folder / "processor_config.json",
        {
            "processor_class": "Sam3Processor",
            "image_processor": {
                "size": {"height": side, "width": side},
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
            },
        },
    )
    family: Any = sam3_1 if sam31 else sam3
    model = family.Model(family.ModelConfig.from_dict(json.loads(json.dumps(config))))
    # SAM 3.1's tracker loses an object whose presence logit is below 0, and a
    # random one is about as often below as above: a bias of 4 keeps the tiny
    # tracker's objects through the frames (its masks are still noise).
    present = {_SAM31_PRESENCE_BIAS: 4.0} if sam31 else {}
    weights.save_random_weights(model, folder / "model.safetensors", seed, [], present)


def write_clip_tokenizer(folder: Path) -> int:
    """A CLIP BPE tokenizer (transformers' ``CLIPTokenizer``) over the 256
    byte symbols, each also as a word end, and a few merges; returns its size.

    SAM 3 reads prompts with CLIP's tokenizer; mlx-vlm's processor would fetch
    openai/clip-vit-base-patch32 from the hub, and the engine loads the
    folder's own instead (:func:`mlx_magic.engine.segmentation.load_segmenter`).
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    for suffix in ("", "</w>"):
        for symbol in symbols:
            vocab[symbol + suffix] = len(vocab)
    merges = [("c", "a"), ("ca", "r</w>"), ("c", "u"), ("cu", "p</w>")]
    for first, second in merges:
        vocab.setdefault(first + second, len(vocab))
    CLIPTokenizer(vocab=vocab, merges=merges).save_pretrained(str(folder))
    return len(vocab)
