"""One unit of memory for every setting, status line and footer: the GiB (1024³ bytes).

Settings keep their ``_gb`` names (``memory_budget_gb``, ``prefix_cache_gb``);
what they count, and what every message shows as "GiB", is 1024³ bytes.
"""

GIB = 1024**3


def gib(n_bytes: float) -> float:
    """``n_bytes`` in GiB."""
    return n_bytes / GIB


def gib_to_bytes(gib_value: float) -> int:
    """A GiB setting as whole bytes."""
    return int(gib_value * GIB)
