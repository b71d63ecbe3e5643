"""The machine the benchmark runs on: CPU, memory, OS, package versions, and a
probe of how fast MLX multiplies matrices here."""

from __future__ import annotations

import os
import platform
import sys
import time


def machine() -> dict:
    """CPU model, cores, memory, OS."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        if sys.platform == "darwin":
            import subprocess

            try:
                cpu = subprocess.run(
                    ["sysctl", "-n", "machdep.cpu.brand_string"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                pass
    memory = None
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    os_name = platform.platform()
    try:
        with open("/etc/os-release") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    os_name = (
                        f"{line.split('=', 1)[1].strip().strip(chr(34))} ({platform.platform()})"
                    )
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory / 1024**3, 1) if memory else None,
        "os": os_name,
    }


def versions() -> dict:
    """Versions of Python and of the packages measured."""
    from importlib import metadata

    found = {"python": platform.python_version()}
    for package in ("mlx", "mlx-lm", "mlx-vlm", "mlx_magic", "ipykernel", "jupyter_client"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    try:
        import mlx.core as mx

        found["mlx device"] = str(mx.default_device())
    except Exception:  # noqa: BLE001 - informational only
        pass
    return found


def mlx_probe() -> dict:
    """How fast MLX multiplies matrices here: the shapes of one SmolLM2 layer's MLP.

    A prompt of 37 tokens through a 576→1536 projection, in float32 and as a
    4-bit quantized matmul (what the embedded model uses). On a GPU or a fast
    CPU BLAS this takes well under a millisecond.
    """
    import mlx.core as mx

    rows, inner, outer = 37, 576, 1536
    x = mx.random.normal((rows, inner))
    w = mx.random.normal((outer, inner))
    wq, scales, biases = mx.quantize(w, group_size=32, bits=4)
    mx.eval(x, w, wq, scales, biases)

    def best_of(step, repeat=5):
        step()
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            step()
            times.append(time.perf_counter() - began)
        return min(times)

    dense = best_of(lambda: mx.eval(x @ w.T))
    quantized = best_of(
        lambda: mx.eval(
            mx.quantized_matmul(x, wq, scales, biases, transpose=True, group_size=32, bits=4)
        )
    )
    try:
        import numpy as np

        xn, wn = np.asarray(x), np.asarray(w)
        numpy_s = best_of(lambda: xn @ wn.T)
    except ImportError:
        numpy_s = None
    flops = 2 * rows * inner * outer
    if numpy_s:
        extra = {"numpy_ms": numpy_s * 1000, "numpy_gflops": flops / numpy_s / 1e9}
    else:
        extra = {}
    return {
        **extra,
        "shape": f"({rows}×{inner}) · ({inner}×{outer})",
        "float32_ms": dense * 1000,
        "float32_gflops": flops / dense / 1e9,
        "q4_ms": quantized * 1000,
        "q4_gflops": flops / quantized / 1e9,
        "device": str(mx.default_device()),
    }
