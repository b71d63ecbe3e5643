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
#: ``--tools``: most rounds of calls one cell runs (``--max-steps``), and how long
#: one call may run before the cell stops waiting for it (``tool_timeout_s``).
MAX_TOOL_STEPS = 5
TOOL_TIMEOUT_S = 60.0
