"""The defaults more than one layer needs, each defined once: the settings
(traits), the values (dataclasses), the flags and the worker read them here."""

#: Most tokens a cell generates without ``--max-tokens`` (``max_tokens``).
MAX_TOKENS = 256
# GiB of warm models kept before the least recently used is evicted
# (``memory_budget_gb``): derived from the machine, see
# :func:`mlx_magic.vocabulary.machine.default_memory_budget_gb`.
#: Prompt states kept per model by the prefix cache, and the GiB they may hold.
PREFIX_CACHE_ENTRIES = 16
PREFIX_CACHE_GB = 1.0
#: Frames per second taken from a video (``--fps``), and the most frames (``--max-frames``).
VIDEO_FPS = 2.0
VIDEO_MAX_FRAMES = 16

#: ``--judge``'s question to the judge model (the ``judge_prompt`` setting's default).
JUDGE_PROMPT = (
    "You grade an answer against the reference answer.\n"
    "Question: {question}\n"
    "Reference answer: {label}\n"
    "Answer to grade: {answer}\n"
    'Reply with JSON: {{"score": 1}} if the answer means the same as the reference, '
    '{{"score": 0}} if it does not, or a fraction for a partly right answer.'
)
#: The prefix cache's tier on disk: the GiB it may hold, and the shortest
#: prompt read from scratch (tokens) whose state is written there.
DISK_CACHE_GB = 8.0
DISK_CACHE_MIN_TOKENS = 1024
#: ``--tools``: most rounds of calls one cell runs (``--max-steps``), and how long
#: one call may run before the cell stops waiting for it (``tool_timeout_s``).
MAX_TOOL_STEPS = 5
TOOL_TIMEOUT_S = 60.0
