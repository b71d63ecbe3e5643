"""Whether a model fits this machine, known before anything of it loads.

The weights' size is what their files hold (the ``*.safetensors`` of the
folder, or the GGUF file not yet converted); the machine's is what MLX says
its device can give (:func:`machine_room`). A model larger than that is
refused in one line that names both, and a smaller quantization.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from mlx_magic.errors import ModelTooLarge
from mlx_magic.units import gib
from mlx_magic.vocabulary.machine import machine_bytes_override, ram_bytes
from mlx_magic.vocabulary.values import ModelSpec

#: The source of a room that is what is free now (CUDA's), not the whole device.
FREE_MEMORY = "the GPU's free memory"


@dataclass(frozen=True)
class MachineRoom:
    """How many bytes this machine can give a model, and where the number comes from."""

    bytes: int
    source: str


def machine_room(info: Optional[dict[str, Any]] = None) -> Optional[MachineRoom]:
    """What this machine can give a model (``None`` if nothing says).

    In order: ``MLX_MAGIC_MACHINE_BYTES`` (the tests' hook); on Metal, MLX's
    ``max_recommended_working_set_size`` (what macOS lets the GPU keep wired,
    about three quarters of the RAM); on CUDA, the GPU's ``free_memory`` now
    (another process's models count against it), else its ``total_memory``;
    on a CPU, the machine's RAM (the total, see
    :func:`~mlx_magic.vocabulary.machine.ram_bytes`). ``info`` stands in for
    ``mx.device_info()``.
    """
    played = machine_bytes_override()
    if played is not None:
        return MachineRoom(played, "MLX_MAGIC_MACHINE_BYTES")
    if info is None:
        import mlx.core as mx

        info = dict(mx.device_info())
    for key, source in (
        ("max_recommended_working_set_size", "Metal's recommended working set"),
        ("free_memory", FREE_MEMORY),
        ("total_memory", "the device's memory"),
        ("memory_size", "the device's memory"),
    ):
        value = info.get(key)
        if isinstance(value, int) and value > 0:
            return MachineRoom(value, source)
    ram = ram_bytes()
    return MachineRoom(ram, "the RAM") if ram else None


def weights_bytes(spec: ModelSpec) -> Optional[int]:
    """The bytes of ``spec``'s weight files on disk, before loading (``None``
    when there are none to measure yet: the loader says why)."""
    folder = Path(spec.path)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if files:
        return sum(path.stat().st_size for path in files)
    if spec.gguf:
        try:
            return Path(spec.gguf).stat().st_size
        except OSError:
            return None
    return None


def check_fits(spec: ModelSpec, room: Optional[MachineRoom] = None) -> None:
    """Refuse ``spec`` if its weights exceed what the machine can give.

    Raises:
        ModelTooLarge: one line naming both sizes in GiB and a smaller quantization.
    """
    needed = weights_bytes(spec)
    if needed is None:
        return
    room = room if room is not None else machine_room()
    if room is None or needed <= room.bytes:
        return
    raise ModelTooLarge(
        f"'{spec.name}' does not fit this machine: its weights are {gib_text(needed)} GiB "
        f"and the machine can give a model {gib_text(room.bytes)} GiB ({room.source}); "
        f"{_smaller_hint(spec)}"
    )


def _smaller_hint(spec: ModelSpec) -> str:
    if spec.gguf and not any(Path(spec.path).glob("*.safetensors")):
        return "a smaller quantization of it (Q4_0 needs about a quarter of F16) or a smaller model"
    bits = _quantized_bits(Path(spec.path))
    if bits is None:
        return (
            "a 4-bit quantization of it needs about a quarter (mlx_lm.convert -q --q-bits 4), "
            "or pick a smaller model"
        )
    if bits > 4:
        return f"a 4-bit quantization needs about {4 / bits:.0%} of this {bits}-bit one, or pick a smaller model"
    return f"it is already {bits}-bit: pick a smaller model"


def _quantized_bits(folder: Path) -> Optional[int]:
    """The bits per weight of an MLX-quantized folder (``None`` if not quantized)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    quantization = (
        (config.get("quantization") or config.get("quantization_config"))
        if isinstance(config, dict)
        else None
    )
    bits = quantization.get("bits") if isinstance(quantization, dict) else None
    return bits if isinstance(bits, int) and bits > 0 else None


def gib_text(n_bytes: int) -> str:
    """GiB with as many digits as a small model needs (``0.00046``, ``0.50``, ``1.5``, ``70``)."""
    value = gib(n_bytes)
    if value >= 10:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}"
    # Two significant digits, never in scientific notation.
    return f"{value:.{max(2, 1 - math.floor(math.log10(value)))}f}" if value > 0 else "0"
