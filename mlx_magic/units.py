"""One unit of memory for every setting, status line and footer: the GiB (1024³ bytes)
(and its binary neighbours for sizes on disk: :func:`human_bytes`).

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


def human_bytes(n_bytes: float) -> str:
    """A size as people read it, in the same binary units: ``534 B``, ``39.8 KiB``,
    ``37.5 MiB``, ``1.23 GiB``."""
    for unit, scale in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n_bytes) >= scale:
            value = n_bytes / scale
            return f"{value:.2f} {unit}" if unit == "GiB" else f"{value:.1f} {unit}"
    return f"{int(n_bytes)} B"
