"""Experiments behind the "Investigations" section of BENCHMARKS.md.

``widget_segments`` changes one thing *inside a benchmark kernel only* (a
monkeypatch sent as a cell; no file of the package is changed) and measures
the effect with the same harness as ``python -m mlx_magic.bench``::

    python benchmarks/experiments.py widget_segments # -b traffic vs segment size
    python benchmarks/experiments.py blas [--openblas /path/libopenblas.so]

``blas`` runs SmolLM2 in fresh processes with MLX's bundled BLAS, then with an
optimized OpenBLAS preloaded, quantized and dequantized.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import sysconfig

from mlx_magic.bench_scenarios import (
    RAW_PROMPT,
    STATS_EXPRESSION,
    Context,
    Kernel,
    cell,
    traffic_of,
)

SEGMENT_PATCH = """
import mlx_magic.widget_view as _w
_init = _w.WidgetStreamView.__init__
def _patched(self, *args, **kwargs):
    kwargs["segment_chars"] = {segment}
    _init(self, *args, **kwargs)
_w.WidgetStreamView.__init__ = _patched
"""


def widget_segments(context: Context, tokens: int) -> None:
    """Bytes a -b job sends, by the widget view's segment size."""
    variants = [("as is", "")]
    for segment in (2000, 1000, 500, 250):
        variants.append((f"{segment}-char segments", SEGMENT_PATCH.format(segment=segment)))
    for label, patch in variants:
        with Kernel(context.aliases(), "%mlx load tiny-llama") as kernel:
            if patch:
                kernel.execute(patch)
            kernel.generate(cell("mlx", "-m tiny-llama -n 20 --raw", RAW_PROMPT))
            kernel.drain(0.1)
            kernel.others.clear()
            started = kernel.execute(cell("mlx", f"-b -m tiny-llama -n {tokens} --raw",
                                          RAW_PROMPT))
            waited = kernel.execute("%mlx wait all")
            kernel.drain(0.5)
            messages = ([m for _, m in started.messages] + [m for _, m in kernel.others]
                        + [m for _, m in waited.messages if m["msg_type"].startswith("comm")])
            counted = traffic_of(messages)
            text = kernel.execute("pass", expressions={"stats": STATS_EXPRESSION.replace(
                "_mlx", "get_ipython().find_magic('mlx', 'line').__self__.jobs.all()[-1].result")
            }).stats["text_bytes"]
            limit = 3 * text + 512 * counted["messages"]
            print(f"{label:40s} {counted['messages']:4d} messages {counted['bytes'] / 1e3:6.1f} kB "
                  f"for {text / 1e3:.1f} kB of text ({counted['bytes'] / text:.1f}×; target "
                  f"limit {limit / 1e3:.1f} kB: {'pass' if counted['bytes'] < limit else 'MISS'}) "
                  + ", ".join(f"{k} {n}/{b / 1e3:.1f} kB" for k, (n, b) in
                              sorted(counted["by_type"].items())), flush=True)


BLAS_SCRIPT = """
import sys, time, mlx.core as mx
from mlx_lm import load
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.utils import dequantize_model
model, tokenizer = load(sys.argv[1])
if sys.argv[2] == "dequantized":
    model = dequantize_model(model)
ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                    add_generation_prompt=True)
prefill, decode = [], []
for _ in range(3):
    cache = make_prompt_cache(model)
    began = time.perf_counter(); mx.eval(model(mx.array(ids)[None], cache=cache))
    prefill.append(len(ids) / (time.perf_counter() - began))
    began = time.perf_counter()
    for _ in range(8):
        mx.eval(model(mx.array([[ids[-1]]]), cache=cache))
    decode.append(8 / (time.perf_counter() - began))
print(f"prefill {max(prefill):.1f} tok/s, decode {max(decode):.1f} tok/s ({len(ids)}-token prompt)")
"""


def blas(context: Context, openblas: str | None) -> None:
    """SmolLM2 prefill/decode speed with MLX's bundled BLAS and with OpenBLAS preloaded."""
    import mlx.core

    lib = os.path.join(os.path.dirname(mlx.core.__file__), "lib", "libmlx.so")
    linked = subprocess.run(["ldd", lib], capture_output=True, text=True).stdout
    print("libmlx links:", ", ".join(line.split()[0] for line in linked.splitlines()
                                     if "blas" in line or "lapack" in line) or "(no BLAS found)")
    if openblas is None:
        site = sysconfig.get_paths()["purelib"]
        found = [path for path in glob.glob(os.path.join(site, "*", "libopenblas*.so*"))
                 if "scipy_openblas" not in path]  # scipy's has renamed symbols
        openblas = found[0] if found else None
    runs = [("bundled BLAS", None)] + ([("OpenBLAS preloaded", openblas)] if openblas else [])
    for label, preload in runs:
        env = dict(os.environ)
        if preload:
            env["LD_PRELOAD"] = preload
        for variant in ("quantized", "dequantized"):
            out = subprocess.run([sys.executable, "-c", BLAS_SCRIPT, str(context.smollm2), variant],
                                 capture_output=True, text=True, env=env, timeout=900)
            print(f"{label:20s} {variant:12s} {out.stdout.strip() or out.stderr[-300:]}", flush=True)
    if not openblas:
        print("no OpenBLAS with standard symbols found; pass --openblas PATH")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=["widget_segments", "blas"])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--openblas")
    args = parser.parse_args()
    context = Context.create(quick=True, progress=print)
    if args.experiment == "widget_segments":
        widget_segments(context, args.tokens)
    else:
        blas(context, args.openblas)
    return 0


if __name__ == "__main__":
    sys.exit(main())
