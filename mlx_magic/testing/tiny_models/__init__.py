"""Tiny randomly initialised models, laid out exactly like hub repos.

Tests, CI notebooks and benchmarks need models that go through the *real*
loading and generation code of mlx-vlm and mlx-lm, but cannot download
anything and must run in seconds on a CPU. This package writes such models
into a folder:

* :func:`build_tiny_vlm` - a Qwen2-VL (``model_type: qwen2_vl``) with a
  64-wide, 2-layer language model and a 2-block vision tower, loadable with
  ``mlx_vlm.load`` and driven by ``mlx_vlm.stream_generate`` with images.
* :func:`build_tiny_sam3` - a SAM 3 (``model_type: sam3_video``) shrunk to
  32 wide, for mlx-vlm's ``Sam3Predictor`` (``%%mlx_vision --segment``).
* :func:`build_tiny_sam31` - the same for SAM 3.1 (``model_type: sam3.1_video``),
  with its own ``predict_multi`` and multiplex tracker.
* :func:`build_tiny_llama` - a small llama for ``mlx_lm.load`` /
  ``mlx_lm.stream_generate``, with a ChatML chat template (as SmolLM2 has).

Both share a small byte-level BPE tokenizer, trained here on a fixed text so
that every build is byte-for-byte the same, with the Qwen2 special tokens
added. Weights are random, from a seeded generator; the text they produce
is noise (readable noise: see :func:`.tokenizer.unreadable_ids`), which is
all a test of the plumbing needs.

Builds are idempotent and atomic: everything is written into a temporary
sibling folder that is renamed into place last, with a marker file inside,
so a crashed or concurrent build never leaves a half model that counts.

Command line::

    python -m mlx_magic.testing.tiny_models vlm|llama|sam3|sam3.1 FOLDER [--seed N]

The code, one concern a module: :mod:`.vlm`, :mod:`.llama` and :mod:`.sam3` (the
models' configs and builders), :mod:`.tokenizer` (the shared tokenizer),
:mod:`.weights` (seeded random weights), :mod:`.folders` (atomic,
idempotent folder builds) and :mod:`.cli` (the command line).
"""

from mlx_magic.testing.tiny_models.cli import main
from mlx_magic.testing.tiny_models.folders import MARKER
from mlx_magic.testing.tiny_models.llama import build_tiny_llama
from mlx_magic.testing.tiny_models.sam3 import build_tiny_sam3, build_tiny_sam31
from mlx_magic.testing.tiny_models.vlm import build_tiny_vlm

__all__ = [
    "MARKER",
    "build_tiny_llama",
    "build_tiny_sam3",
    "build_tiny_sam31",
    "build_tiny_vlm",
    "main",
]
