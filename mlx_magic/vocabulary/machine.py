"""How much memory this machine has, read from the operating system (no MLX).

The kernel reads it for the default ``memory_budget_gb``; the engine reads it
for the fit check on a CPU (where MLX names no memory of its own). Tests set
``MLX_MAGIC_MACHINE_BYTES`` to play a machine of that size: it overrides what
the machine says, in both places (the kernel, and a worker it starts).
"""

from __future__ import annotations

import os
from typing import Optional

from mlx_magic.units import GIB

#: The environment variable that plays a machine of that many bytes (a test hook).
MACHINE_BYTES_ENV = "MLX_MAGIC_MACHINE_BYTES"
#: The default budget is this share of the machine, and never below ``MIN_BUDGET_GB``.
BUDGET_SHARE = 0.5
MIN_BUDGET_GB = 1.0
#: When the operating system does not say (not Linux nor macOS): the old fixed default.
UNKNOWN_MACHINE_BUDGET_GB = 8.0


def machine_bytes_override() -> Optional[int]:
    """The machine size ``MLX_MAGIC_MACHINE_BYTES`` plays, if set (a positive integer)."""
    text = os.environ.get(MACHINE_BYTES_ENV, "").strip()
    if not text:
        return None
    try:
        value = int(float(text))
    except ValueError:
        return None
    return value if value > 0 else None


def ram_bytes() -> Optional[int]:
    """The machine's physical RAM, or ``None`` where the OS does not say.

    The total, not what is free now: a model that fits in RAM once other
    programs let go of theirs fits, and the answer does not move from one
    cell to the next (Metal's recommended working set, the number MLX gives
    on a Mac, is fixed the same way). A container's memory limit (cgroup v2
    ``memory.max``) counts when it is smaller.
    """
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    if total <= 0:
        return None
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as limit_file:
            limit = limit_file.read().strip()
        if limit.isdigit() and 0 < int(limit) < total:
            return int(limit)
    except OSError:
        pass
    return int(total)


def machine_memory_bytes() -> Optional[int]:
    """The machine's memory as the OS says it (RAM), or as the test hook plays it."""
    return machine_bytes_override() or ram_bytes()


def default_memory_budget_gb() -> float:
    """Half of the machine's memory (RAM; on Apple silicon the GPU's too), at
    least 1 GiB, in GiB rounded to a tenth; 8 GiB where the OS does not say."""
    machine = machine_memory_bytes()
    if machine is None:
        return UNKNOWN_MACHINE_BUDGET_GB
    return max(MIN_BUDGET_GB, round(machine * BUDGET_SHARE / GIB, 1))
