"""Which coordinate convention a model answers in, from its mlx-vlm
``model_type`` or, for a remote server, from the model's name.

=============  ==========================================  =====================================
family         answer syntax                               numbers
=============  ==========================================  =====================================
qwen2_vl       ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``  0–1000 of the image
qwen2_5_vl     ``{"bbox_2d": [...]}`` JSON, or the tags    pixels of the image as resized by
                                                           the processor (multiples of 28)
qwen3_vl       the same JSON (or tags)                     0–1000 of the image
paligemma      ``<loc y1><loc x1><loc y2><loc x2> label``  0–1023 bins: value / 1024 of the image
molmo          ``<point x=".." y=".." alt="..">``           percent (0–100) of the image
=============  ==========================================  =====================================

Qwen3.5 (``qwen3_5``, ``qwen3_5_moe``) is natively multimodal and grounds like
Qwen3-VL, so it reads as ``qwen3_vl``. Molmo2 and MolmoPoint point in other
syntaxes (a ``coords`` list, pointing tokens) and are not recognised.
"""

from __future__ import annotations

import re
from typing import Optional

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "paligemma", "molmo")
"""Every family :func:`grounding_family` can return."""

MODEL_TYPES = {
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_5_vl",
    "qwen3_vl": "qwen3_vl",
    "qwen3_vl_moe": "qwen3_vl",
    "qwen3_5": "qwen3_vl",
    "qwen3_5_moe": "qwen3_vl",
    "paligemma": "paligemma",
    "molmo": "molmo",
}
"""mlx-vlm ``model_type`` (its ``mlx_vlm/models/<model_type>`` folder) → family."""

# Tried in order on the lowercased name with "_" and spaces turned into "-":
# the Qwen2.5 pattern must come before the Qwen2 one.
NAME_PATTERNS = (
    (re.compile(r"qwen-?2(?:\.|-)?5-?vl"), "qwen2_5_vl"),
    (re.compile(r"qwen-?2-?vl"), "qwen2_vl"),
    (re.compile(r"qwen-?3(?:\.\d+)?-?vl|qwen-?3(?:\.|-)5(?![\d.])"), "qwen3_vl"),
    (re.compile(r"paligemma"), "paligemma"),
    # Molmo2 and MolmoPoint answer in other syntaxes; MolmoE and GraspMolmo do not.
    (re.compile(r"molmo(?!-?(?:2|point|act))"), "molmo"),
)


def grounding_family(model_type: Optional[str], model_name: str = "") -> Optional[str]:
    """The coordinate convention for a model.

    Args:
        model_type: mlx-vlm's config ``model_type`` ("qwen2_vl", "qwen2_5_vl",
            "qwen3_vl", "qwen3_vl_moe", "paligemma", "molmo", ...), when known.
            A type that names no family falls back to the name.
        model_name: The model's name or path, for servers that report no
            type: "Qwen2.5-VL-7B-Instruct", "qwen/qwen3-vl-8b",
            "paligemma2-3b-mix-448", "mlx-community/Molmo-7B-D-0924-4bit"...

    Returns:
        One of :data:`FAMILIES`, or ``None`` when the convention is unknown
        (the detector then reads each syntax by its own rule).
    """
    if model_type:
        family = MODEL_TYPES.get(model_type.strip().lower().replace("-", "_"))
        if family is not None:
            return family
    name = re.sub(r"[\s_]+", "-", (model_name or "").strip().lower())
    for pattern, family in NAME_PATTERNS:
        if pattern.search(name):
            return family
    return None
