"""The harness the benchmark scenarios share (see :mod:`benchmarks`).

* :class:`Context` (:mod:`.context`) - settings, the models (built or converted
  on first use) and fresh images shared by the scenarios.
* :class:`Kernel` (:mod:`.kernel`) - a real IPython kernel started with
  jupyter_client; cells are sent as a frontend sends them, every IOPub message
  is timestamped on arrival, and ``_mlx`` is read through the execute
  request's ``user_expressions`` (no extra cell, no extra output).
* :class:`InProcessText` / :class:`InProcessVision` (:mod:`.baselines`) - the
  baselines: raw ``mlx_lm.stream_generate`` / ``mlx_vlm.stream_generate`` in
  this process, with the very prompt token ids the magic sends (built by
  :func:`mlx_magic.engine.text_generation.prompt_token_ids`) and greedy sampling.
* :func:`cold_process` (:mod:`.processes`) - ``python -m mlx_lm generate`` /
  ``python -m mlx_vlm generate`` in a fresh process, timed from spawn to the
  statistics line that follows the first token, with the prompt token count it
  printed; :class:`MlxLmServer`, a loopback ``mlx_lm.server``.
* :class:`Profile` (:mod:`.profile`) - other models to run the scenarios on
  (random models of real shapes on a GPU: :mod:`benchmarks.gpu`).
* :class:`BenchError` (:mod:`.errors`) - a cell or a process of the benchmark failed.
* :mod:`.texts` - the prompts, paragraph, questions and conversation the
  scenarios send.

The names below are the package's interface, whichever module defines them.
"""

from benchmarks.harness.baselines import InProcessText, InProcessVision
from benchmarks.harness.context import Context
from benchmarks.harness.errors import BenchError
from benchmarks.harness.kernel import (
    JOBS_EXPRESSION,
    OUTPUT_MESSAGES,
    STATS_EXPRESSION,
    Cell,
    Kernel,
    cell,
    traffic_of,
)
from benchmarks.harness.processes import MlxLmServer, cold_process
from benchmarks.harness.profile import Profile, ProfileModel
from benchmarks.harness.texts import (
    CONVERSATION,
    DOCUMENT_QUESTIONS,
    LONG_ANSWER_PROMPT,
    PARAGRAPH,
    QUESTIONS,
    RAW_PROMPT,
    SHORT_QUESTIONS,
    SYSTEM_PROMPT,
    VISION_PROMPTS,
    long_document,
)

__all__ = [
    "CONVERSATION",
    "DOCUMENT_QUESTIONS",
    "JOBS_EXPRESSION",
    "LONG_ANSWER_PROMPT",
    "OUTPUT_MESSAGES",
    "PARAGRAPH",
    "QUESTIONS",
    "RAW_PROMPT",
    "SHORT_QUESTIONS",
    "STATS_EXPRESSION",
    "SYSTEM_PROMPT",
    "VISION_PROMPTS",
    "BenchError",
    "Cell",
    "Context",
    "InProcessText",
    "InProcessVision",
    "Kernel",
    "MlxLmServer",
    "Profile",
    "ProfileModel",
    "cell",
    "cold_process",
    "long_document",
    "traffic_of",
]
